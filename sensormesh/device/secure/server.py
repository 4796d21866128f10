# The server side of the handshake, sans-IO: ServerSession checks a hello and answers with a
# welcome (or HandshakeError), and the ReplayCache of the hellos a device accepted. A device
# loads this module when a hello arrives and forgets it right after (secure.idle()); between
# handshakes it keeps the cache's records only (Security.replay_state). A client its deployment
# prepared (a pipe's sender: keys.prepare looked it up and computed the pair key) is checked with
# this module and wire.py alone (`known`); any other client with the trust store and the pair-key
# cache of keys.py, which the caller loads (accept.py). Why a hello is refused is refused.py's
# (loaded for a refusal).
import os
import struct

from sensormesh.device.compat import unix_time
from sensormesh.device.secure.channel import Channel, b64encode, equal, hmac_sha256
from sensormesh.device.secure import load
from sensormesh.device.secure.basics import (DEFAULT_REPLAY_SIZE, DEFAULT_WINDOW, FREE, REC, replay_at, replay_put,
                                             replay_state)
from sensormesh.device.secure.wire import _NONCE, VERSION, HandshakeError, _bin, _body, _keys, _transcript

_NAME_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-"


def _refused(code, i, *args):
    # the HandshakeError `code` that says refused.py's HELLO[i] % args: a hello's refusal texts
    # load only for a refusal (not in memory with this module while a hello that passes is checked)
    return HandshakeError(code, load("refused").HELLO[i] % args)


def valid_name(name):
    if type(name) is not str or not 0 < len(name) <= 64:
        return False
    for c in name:
        if c not in _NAME_CHARS:
            return False
    return True


def _name(body, field):
    # a hello's names (a client compares its welcome's with the server it dialed: wire.py)
    v = body.get(field)
    if not valid_name(v):
        raise _refused("malformed", 0, field)
    return v



class ReplayCache:
    """Nonces of accepted hellos, one cache per device (shared by all its connections).

    Bounded: when full of nonces that are still inside the window, the oldest nonce of the key
    that holds the most entries is forgotten, and every later hello of that key at or before its
    timestamp is refused. Each key has its own cut-off, so one key (even a valid reader's) that
    sends many hellos, dated at the edge of the window, only ever evicts its own entries and
    moves its own cut-off: it cannot lock other keys, the controller's included, out with
    "replay". No replay gets through, and memory stays fixed: `size` records of 21 bytes
    (basics.py), at most one name per record, and the cut-offs (at most one per key in the trust
    store, forgotten once older than the window).
    """

    def __init__(self, window=DEFAULT_WINDOW, size=DEFAULT_REPLAY_SIZE, state=None):
        self.window = window
        # a device keeps state (basics.replay_state) between handshakes
        self.state = state if state is not None else replay_state(size)
        self.size = self.state[3]
        self.floors = self.state[2]     # key name -> hellos of that key with ts <= this are refused

    def entries(self):
        """{nonce: (timestamp, key name)} of the hellos remembered."""
        recs, names = self.state[0], self.state[1]
        out = {}
        for at in range(0, len(recs), REC):
            slot = recs[at + REC - 1]
            if slot != FREE:
                out[bytes(recs[at:at + _NONCE])] = (struct.unpack_from("!I", recs, at + _NONCE)[0], names[slot])
        return out

    def check(self, nonce, ts, now, who=None):
        if ts <= self.floors.get(who, -1):
            raise _refused("replay", 1, ts, who, self.window)
        if replay_at(self.state, nonce) is not None:
            raise _refused("replay", 2)

    def add(self, nonce, ts, now, who=None):
        state = self.state
        at = replay_at(state, None)
        if at is None:
            recs = state[0]
            limit = now - self.window
            for at in range(0, len(recs), REC):
                if recs[at + REC - 1] != FREE and struct.unpack_from("!I", recs, at + _NONCE)[0] < limit:
                    recs[at + REC - 1] = FREE
            floors = self.floors
            for k in list(floors):
                if floors[k] < limit:   # the time check refuses such hellos anyway
                    del floors[k]
            at = replay_at(state, None)
            if at is None:
                at = self._evict()
        replay_put(state, at, nonce, ts, who)

    def _evict(self):
        # the key with the most entries gives up its oldest one; its record's offset
        recs, names = self.state[0], self.state[1]
        count = {}
        for at in range(REC - 1, len(recs), REC):
            count[recs[at]] = count.get(recs[at], 0) + 1
        top = None
        for slot in count:
            if top is None or count[slot] > count[top]:
                top = slot
        old = None
        oldest = 0
        for at in range(0, len(recs), REC):
            if recs[at + REC - 1] == top:
                ts = struct.unpack_from("!I", recs, at + _NONCE)[0]
                if old is None or ts < oldest:
                    old, oldest = at, ts
        recs[old + REC - 1] = FREE
        who = names[top]
        if oldest > self.floors.get(who, -1):
            self.floors[who] = oldest
        return old


class ServerSession:
    """Accepting side. receive(first message) -> welcome message to send, or HandshakeError.

    trust:   the TrustStore clients are looked up in (keys.py)
    replay:  the device's ReplayCache (share one across connections)
    pairs:   the device's keys.PairCache (share one across connections; None: one for this session)
    roles:   the client roles this listener accepts (None: any role in the trust store)
    known:   {client name: (role, pair key, key fingerprint)} of clients already looked up in
             the trust store, their pair keys computed (a device's pipe senders, keys.prepare):
             for these, trust and pairs are not used
    After a welcome: peer, role and peer_fp name the client; channel is the session's (what a
    connection takes: Connection.channel), wrap/unwrap its methods.
    """

    def __init__(self, identity, trust, replay=None, roles=None, window=None, clock=None, pairs=None, known=None):
        self.identity = identity
        self.trust = trust
        self.roles = roles
        self.clock = clock or unix_time
        self.replay = replay if replay is not None else ReplayCache()
        self.window = window if window is not None else self.replay.window
        self.pairs = pairs
        self.known = known
        self.failed = None
        self.done = False
        self.peer = None       # the authenticated client's name
        self.role = None       # and its role
        self.peer_fp = None    # and its key's fingerprint
        self.channel = None
        self.wrap = None       # payload -> token (the channel's)
        self.unwrap = None     # token -> payload (codec.ProtocolError if bad)

    def receive(self, msg):
        if self.failed is not None:
            raise _refused(self.failed.code, 3, self.failed.message)
        if self.done:
            raise _refused("malformed", 4)
        try:
            return self._hello(msg)
        except HandshakeError as e:
            self.failed = e
            raise

    def _hello(self, msg):
        if type(msg) is dict and msg.get("hello") == {}:
            # the plain control-session hello of a client without keys
            raise _refused("plaintext-refused", 5)
        body = _body(msg, "hello")
        if body is None:
            if type(msg) is dict:
                raise _refused("plaintext-refused", 6, ",".join(sorted(msg)))
            raise _refused("plaintext-refused", 7)
        me = self.identity.name
        client = _name(body, "from")
        to = _name(body, "to")
        ts = body.get("ts")
        if type(ts) is not int:
            raise _refused("malformed", 8)
        if to != me:
            raise _refused("unknown-key", 9, to, me)
        now = int(self.clock())
        known = self.known.get(client) if self.known else None
        if known is None:
            role, key = self.trust.lookup(client, "client")
        else:
            role = known[0]
        if self.roles is not None:
            from sensormesh.device.secure.keys import _check_role
            _check_role(role, self.roles, "client", client)
        nonce = _bin(body, "nonce", _NONCE)
        mac = _bin(body, "mac", 32)
        self._check_time(ts, now)
        transcript = _transcript(client, me, ts, nonce)
        # the pair key (its key agreement, the only costly step) only for a fresh hello of a
        # trusted client in an accepted role
        pair = known[1] if known is not None else self._pair(key)
        if not equal(hmac_sha256(pair, transcript), mac):
            raise _refused("bad-signature", 10, client, me)
        self.replay.check(nonce, ts, now, client)
        self.replay.add(nonce, ts, now, client)
        snonce = os.urandom(_NONCE)
        c2s, s2c, proof = _keys(pair, nonce, snonce, transcript, mac, me)
        self.peer = client
        self.role = role
        self.peer_fp = known[2] if known is not None else key.fingerprint()
        self.channel = Channel(s2c, c2s)
        self.wrap = self.channel.wrap
        self.unwrap = self.channel.unwrap
        self.done = True
        return {"welcome": {"v": VERSION, "from": me, "nonce": b64encode(snonce).decode(),
                            "proof": b64encode(proof).decode()}}

    def _check_time(self, ts, now):
        if ts < now - self.window or ts > now + self.window:
            raise _refused("stale-timestamp", 11, ts, ts - now, now, self.window)

    def _pair(self, key):
        pairs = self.pairs
        if pairs is None:
            from sensormesh.device.secure.keys import PairCache
            pairs = self.pairs = PairCache(1)
        return pairs.get(self.identity, key)
