# The server side of the handshake, sans-IO: ServerSession checks a hello and answers with a
# welcome (or HandshakeError), and the ReplayCache of the hellos a device accepted. A device
# loads this module when a hello arrives and forgets it right after (secure.idle()); between
# handshakes it keeps the cache's dicts only (Security.replay_state).
import os

from sensormesh.device.secure.channel import b64encode, equal, hmac_sha256
from sensormesh.device.secure.keys import (_NONCE, DEFAULT_REPLAY_SIZE, DEFAULT_WINDOW, VERSION, HandshakeError,
                                           PairCache, _bin, _body, _check_role, _keys, _name, _Side, _transcript)


class ReplayCache:
    """Nonces of accepted hellos, one cache per device (shared by all its connections).

    Bounded: when full of nonces that are still inside the window, the oldest nonce of the key
    that holds the most entries is forgotten, and every later hello of that key at or before its
    timestamp is refused. Each key has its own cut-off, so one key (even a valid reader's) that
    sends many hellos, dated at the edge of the window, only ever evicts its own entries and
    moves its own cut-off: it cannot lock other keys, the controller's included, out with
    "replay". No replay gets through, and memory stays fixed (floors: at most one per key in
    the trust store, forgotten once older than the window).
    """

    def __init__(self, window=DEFAULT_WINDOW, size=DEFAULT_REPLAY_SIZE, state=None):
        self.window = window
        self.size = size
        # a device keeps state = [seen, floors] between handshakes
        self.seen, self.floors = state if state is not None else ({}, {})
        # seen: nonce -> (timestamp, key name); floors: key name -> hellos of that key with
        # ts <= this are refused

    def check(self, nonce, ts, now, who=None):
        if ts <= self.floors.get(who, -1):
            raise HandshakeError("replay", "hello timestamp %d is older than the replay cache remembers "
                                 "for key %r (too many handshakes with this key within %d s); retry"
                                 % (ts, who, self.window))
        if nonce in self.seen:
            raise HandshakeError("replay", "this hello's nonce was already used: replayed message")

    def add(self, nonce, ts, now, who=None):
        seen = self.seen
        if len(seen) >= self.size:
            limit = now - self.window
            for k in list(seen):
                if seen[k][0] < limit:
                    del seen[k]
            floors = self.floors
            for k in list(floors):
                if floors[k] < limit:   # the time check refuses such hellos anyway
                    del floors[k]
            while len(seen) >= self.size:
                self._evict()
        seen[nonce] = (ts, who)

    def _evict(self):
        # the key with the most entries gives up its oldest one
        seen = self.seen
        count = {}
        for k in seen:
            w = seen[k][1]
            count[w] = count.get(w, 0) + 1
        top = None
        for w in count:
            if top is None or count[w] > count[top]:
                top = w
        old = None
        for k in seen:
            if seen[k][1] == top and (old is None or seen[k][0] < seen[old][0]):
                old = k
        ts = seen.pop(old)[0]
        if ts > self.floors.get(top, -1):
            self.floors[top] = ts


class ServerSession(_Side):
    """Accepting side. receive(first message) -> welcome message to send, or HandshakeError.

    replay:  the device's ReplayCache (share one across connections)
    pairs:   the device's PairCache (share one across connections)
    roles:   the client roles this listener accepts (None: any role in the trust store)
    """

    def __init__(self, identity, trust, replay=None, roles=None, window=None, clock=None, pairs=None):
        _Side.__init__(self, identity, trust, roles, clock)
        self.replay = replay if replay is not None else ReplayCache()
        self.window = window if window is not None else self.replay.window
        self.pairs = pairs if pairs is not None else PairCache(1)

    def receive(self, msg):
        self._check_state()
        try:
            return self._hello(msg)
        except HandshakeError as e:
            self._fail(e)

    def _hello(self, msg):
        if type(msg) is dict and msg.get("hello") == {}:
            # the plain control-session hello of a client without keys
            raise HandshakeError("plaintext-refused", "this device only accepts authenticated sessions, and the "
                                 "hello carries no credentials: give the client an identity (--identity)")
        body = _body(msg, "hello")
        if body is None:
            if type(msg) is dict:
                what = "a control message %r" % ",".join(sorted(msg))
            else:
                what = "a data message"
            raise HandshakeError("plaintext-refused", "this side only talks over an authenticated session: "
                                 "the first message must be a hello, got %s" % what)
        me = self.identity.name
        client = _name(body, "from")
        to = _name(body, "to")
        ts = body.get("ts")
        if type(ts) is not int:
            raise HandshakeError("malformed", "'ts' must be an integer (Unix seconds)")
        if to != me:
            raise HandshakeError("unknown-key", "hello is addressed to %r but this is %r" % (to, me))
        now = int(self.clock())
        role, key = self.trust.lookup(client, "client")
        _check_role(role, self.roles, "client", client)
        nonce = _bin(body, "nonce", _NONCE)
        mac = _bin(body, "mac", 32)
        self._check_time(ts, now)
        transcript = _transcript(client, me, ts, nonce)
        pair = self.pairs.get(self.identity, key)
        if not equal(hmac_sha256(pair, transcript), mac):
            raise HandshakeError("bad-signature", "the hello's MAC does not verify with the key this side holds "
                                 "for %r: the client used another key, holds an outdated key for %r, "
                                 "or the hello was altered" % (client, me))
        self.replay.check(nonce, ts, now, client)
        self.replay.add(nonce, ts, now, client)
        snonce = os.urandom(_NONCE)
        c2s, s2c, proof = _keys(pair, nonce, snonce, transcript, mac, me)
        self.peer = client
        self.role = role
        self.peer_fp = key.fingerprint()
        self._finish(s2c, c2s)
        return {"welcome": {"v": VERSION, "from": me, "nonce": b64encode(snonce).decode(),
                            "proof": b64encode(proof).decode()}}

    def _check_time(self, ts, now):
        if ts < now - self.window or ts > now + self.window:
            raise HandshakeError("stale-timestamp", "hello timestamp %d is %d s from this side's clock %d "
                                 "(window %d s): replayed, or a clock is not set" % (ts, ts - now, now, self.window))
