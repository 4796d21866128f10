# The secure session of one connection, sans-IO: handshake state machines fed with control
# messages (dicts), returning the messages to send; no sockets, no clock of their own.
#
#   client -> server  {"hello": {"v": 2, "from": C, "to": S, "ts": T, "nonce": Nc,
#                                "mac": HMAC(pair key of C and S, transcript)}}
#   server -> client  {"welcome": {"v": 2, "from": S, "nonce": Ns, "proof": HMAC(kc, "server")}}
#                  or {"error": {"code": CODE, "message": TEXT}}
#
# Every side has an X25519 key pair and trusts the public keys in its trust store. The pair key
# of C and S comes from the X25519 shared secret of their static keys: only C's or S's private
# key can make it. The client proves itself with the MAC over both names, the time and its
# nonce; the server proves itself with the key-confirmation proof. Session keys come from the
# pair key and both nonces (HKDF-SHA256), one Fernet key per direction; every later frame
# payload is a Fernet token of an 8-byte frame counter plus the payload. The only costly step,
# the scalar multiplication, happens once per peer: the pair key is cached (PairCache).
# docs/security.md explains the choices (and why not the original design's RSA sketch: ESP32 cost).
import os

from sensormesh.device.secure import x25519
from sensormesh.device.secure.fernet import b64encode, equal, hmac_sha256
from sensormesh.device.secure.hello import (_NONCE, ClientSession, _Side, _bin, _body,  # noqa: F401
                                            _check_role, _field, _keys, _name, _transcript, valid_name)
from sensormesh.device.secure.keys import (CODES, DEFAULT_REPLAY_SIZE, DEFAULT_WINDOW, PERMISSIONS, ROLES,  # noqa: F401
                                           SEND_PLAIN_MAX, VERSION, Channel, HandshakeError, Identity, PairCache,
                                           ReplayCache, TrustStore, check_permission, plain_limit, wrap_limit)



def load_identity(src, native=None):
    """Identity from a dict or a JSON file: {"name", "role", "secret": hex, "x25519": hex}."""
    from sensormesh.device.secure.trust import read_json
    obj = read_json(src)
    return Identity(obj["name"], obj["role"], x25519.private_from_json(obj, native))


def load_trust(src):
    """TrustStore from a dict or a JSON file (secure/trust.py, loaded only to read one)."""
    from sensormesh.device.secure.trust import load_trust
    return load_trust(src)


class Credentials:
    """What a client side needs to open sessions: its identity, its trust store, and its cache
    of pair keys (so only the first connection to each server does the X25519 step)."""

    def __init__(self, identity, trust, pairs=None):
        self.identity = identity
        self.trust = trust
        self.pairs = pairs if pairs is not None else PairCache(256)

    def client(self, server, roles=None):
        """A ClientSession to the server of that name."""
        return ClientSession(self.identity, self.trust, server, roles=roles, pairs=self.pairs)


def load_credentials(identity, trust=None, native=None):
    """Credentials from an identity file (or dict) and a trust file (or dict).

    identity may also be a directory as `sensormesh keys export` writes it (identity.json and
    trust.json); trust defaults to trust.json next to the identity file.
    """
    if type(identity) is str:
        if identity.endswith(".json"):
            d = identity.rpartition("/")[0] or "."
        else:
            d = identity.rstrip("/") or "/"
            identity = d + "/identity.json"
        if trust is None:
            trust = d + "/trust.json"
    if trust is None:
        raise ValueError("a trust store is needed with an identity given as a dict")
    return Credentials(load_identity(identity, native), load_trust(trust))


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
