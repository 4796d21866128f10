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
import hashlib
import json
import os
import struct

from sensormesh.device import codec
from sensormesh.device.compat import MICROPYTHON, unix_time
from sensormesh.device.secure import x25519
from sensormesh.device.secure.fernet import b64decode, b64encode, equal, hmac_sha256
from sensormesh.device.secure.keys import (CODES, DEFAULT_REPLAY_SIZE, DEFAULT_WINDOW, PERMISSIONS, ROLES,  # noqa: F401
                                           SEND_PLAIN_MAX, VERSION, Channel, HandshakeError, Identity, PairCache,
                                           ReplayCache, TrustStore, check_permission, plain_limit, wrap_limit)

_NAME_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-"
_NONCE = 16
_COUNTER = 8


def valid_name(name):
    if type(name) is not str or not 0 < len(name) <= 64:
        return False
    for c in name:
        if c not in _NAME_CHARS:
            return False
    return True


def _read_json(src):
    if type(src) is dict:
        return src
    with open(src) as f:
        return json.load(f)


def load_identity(src, native=None):
    """Identity from a dict or a JSON file: {"name", "role", "secret": hex, "x25519": hex}."""
    obj = _read_json(src)
    return Identity(obj["name"], obj["role"], x25519.private_from_json(obj, native))


def load_trust(src):
    """TrustStore from a dict or a JSON file (written by `sensormesh keys`):

    {"keys": {name: {"role", "x25519"}}, "revoked": [{"name", "fingerprint"} or fingerprint]}
    """
    obj = _read_json(src)
    ts = TrustStore()
    for r in obj.get("revoked", ()):
        if type(r) is dict:
            ts.revoke(r["fingerprint"], r.get("name"))
        else:
            ts.revoke(r)
    keys = obj.get("keys", {})
    for name in keys:
        ent = keys[name]
        ts.add(name, ent["role"], x25519.public_from_json(ent))
    return ts


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


# -- the pieces both sides compute ---------------------------------------------------------------
def _field(b):
    if type(b) is str:
        b = b.encode()
    return struct.pack("!H", len(b)) + b


def _transcript(client, server, ts, nonce):
    return b"sensormesh-hello-v2" + _field(client) + _field(server) + _field(str(ts)) + _field(nonce)


def _keys(pair, cnonce, snonce, transcript, mac, server):
    """HKDF-SHA256 (RFC 5869) of the pair key, salted with both nonces, bound to the transcript.

    -> (client->server Fernet key, server->client Fernet key, server proof)
    """
    th = hashlib.sha256(transcript + _field(mac) + _field(server) + _field(snonce)).digest()
    prk = hmac_sha256(cnonce + snonce, pair)
    info = b"sensormesh session v2" + th
    out = []
    t = b""
    for i in (1, 2, 3):
        t = hmac_sha256(prk, t + info + bytes([i]))
        out.append(t)
    return out[0], out[1], hmac_sha256(out[2], b"server")


def _bin(body, field, size):
    v = body.get(field)
    # b64 of size bytes is 4 * ceil(size / 3) characters: check before decoding anything.
    if type(v) is not str or len(v) != (size + 2) // 3 * 4:
        raise HandshakeError("malformed", "%r must be %d bytes in url-safe base64" % (field, size))
    try:
        b = b64decode(v)
    except (ValueError, UnicodeError):
        raise HandshakeError("malformed", "%r is not url-safe base64" % field)
    if len(b) != size:
        raise HandshakeError("malformed", "%r must be %d bytes" % (field, size))
    return b


def _body(msg, key):
    if type(msg) is not dict or key not in msg:
        return None
    body = msg[key]
    if type(body) is not dict:
        raise HandshakeError("malformed", "%r must be an object" % key)
    if not body and key == "hello":
        # the plain control-session hello of a client without keys
        raise HandshakeError("plaintext-refused", "this device only accepts authenticated sessions, and the "
                             "hello carries no credentials: give the client an identity (--identity)")
    if body.get("v") != VERSION or type(body.get("v")) is not int:
        raise HandshakeError("malformed", "unsupported handshake version %r (this side speaks %d)"
                             % (body.get("v"), VERSION))
    return body


def _name(body, field):
    v = body.get(field)
    if not valid_name(v):
        raise HandshakeError("malformed", "%r must be a name of 1-64 letters, digits, '.', '_' or '-'" % field)
    return v


def _check_role(role, roles, who, name):
    if roles is not None and role not in roles:
        raise HandshakeError("wrong-role", "%s %r has role %r; this side accepts %s"
                             % (who, name, role, ", ".join(roles)))


class _Side:
    def __init__(self, identity, trust, roles, clock):
        self.identity = identity
        self.trust = trust
        self.roles = roles
        self.clock = clock or unix_time
        self.done = False
        self.failed = None
        self.peer = None       # the authenticated peer's name
        self.role = None       # and its role
        self.peer_fp = None    # and its key's fingerprint
        self.channel = None
        self.wrap = None       # payload -> token, for Connection.wrap
        self.unwrap = None     # token -> payload (codec.ProtocolError if bad), Connection.unwrap

    def _finish(self, send_key, recv_key):
        self.channel = Channel(send_key, recv_key)
        self.wrap = self.channel.wrap
        self.unwrap = self.channel.unwrap
        self.done = True

    def _fail(self, e):
        self.failed = e
        raise e

    def _check_state(self):
        if self.failed is not None:
            raise HandshakeError(self.failed.code, "handshake already failed: " + self.failed.message)
        if self.done:
            raise HandshakeError("malformed", "handshake already complete")


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


class ClientSession(_Side):
    """Connecting side. start() -> hello to send; receive(reply) -> None when done, or HandshakeError.

    server: the name of the side we connect to (its public key must be in our trust store).
    roles:  the server roles we accept (None: any).
    pairs:  a PairCache shared by this process's connections.
    """

    def __init__(self, identity, trust, server, roles=None, clock=None, pairs=None):
        _Side.__init__(self, identity, trust, roles, clock)
        self.server = server
        self.pairs = pairs if pairs is not None else PairCache(1)
        self._pending = None

    def start(self):
        self._check_state()
        if self._pending is not None:
            raise HandshakeError("malformed", "hello already sent")
        try:
            role, key = self.trust.lookup(self.server, "server")
            _check_role(role, self.roles, "server", self.server)
            pair = self.pairs.get(self.identity, key)
        except HandshakeError as e:
            self._fail(e)
        me = self.identity.name
        ts = int(self.clock())
        nonce = os.urandom(_NONCE)
        transcript = _transcript(me, self.server, ts, nonce)
        mac = hmac_sha256(pair, transcript)
        self._pending = (pair, nonce, transcript, mac, role, key.fingerprint())
        return {"hello": {"v": VERSION, "from": me, "to": self.server, "ts": ts,
                          "nonce": b64encode(nonce).decode(), "mac": b64encode(mac).decode()}}

    def receive(self, msg):
        self._check_state()
        try:
            self._welcome(msg)
        except HandshakeError as e:
            self._fail(e)

    def _welcome(self, msg):
        if self._pending is None:
            raise HandshakeError("malformed", "start() the handshake before receiving")
        if type(msg) is dict and "error" in msg:
            err = msg["error"]
            code = err.get("code") if type(err) is dict else None
            text = err.get("message") if type(err) is dict else None
            if code not in CODES:
                code = "malformed"
            raise HandshakeError(code, "refused by %s: %s" % (self.server, text if type(text) is str else err))
        body = _body(msg, "welcome")
        if body is None:
            raise HandshakeError("malformed", "expected a welcome from %r" % self.server)
        if _name(body, "from") != self.server:
            raise HandshakeError("unknown-key", "welcome comes from %r, expected %r" % (body["from"], self.server))
        snonce = _bin(body, "nonce", _NONCE)
        proof = _bin(body, "proof", 32)
        pair, nonce, transcript, mac, role, fp = self._pending
        c2s, s2c, expect = _keys(pair, nonce, snonce, transcript, mac, self.server)
        if not equal(proof, expect):
            raise HandshakeError("bad-signature", "%r could not prove it holds its private key "
                                 "(wrong key-confirmation proof)" % self.server)
        self._pending = None
        self.peer = self.server
        self.role = role
        self.peer_fp = fp
        self._finish(c2s, s2c)
