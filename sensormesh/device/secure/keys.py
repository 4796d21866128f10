# The handshake's pieces both sides use, on both interpreters: the errors and codes, identities,
# the trust store, the pair-key cache, the transcript and session keys, and the checks of a
# message's fields. Loaded for a handshake only: a device keeps its identity, trust store and
# caches as plain data on its secure.Security between handshakes (device_identity(),
# device_trust() and device_pairs() below make these objects of it for one handshake), and forgets
# this module's code (secure.idle()). The client side is hello.py, the server side server.py.
import hashlib
import os
import struct

from sensormesh.device.compat import collect, from_mpy, unix_time, unload
from sensormesh.device.secure import (DEFAULT_HANDSHAKE_MS, HELLO_MAX_FRAME, PERMISSIONS, admitting,  # noqa: F401
                                      busy, denied)
from sensormesh.device.secure.channel import (SEND_PLAIN_MAX, Channel, b64decode, hmac_sha256,  # noqa: F401
                                              plain_limit, wrap_limit)
from sensormesh.device.secure.pubkey import PublicKey

VERSION = 2
DEFAULT_WINDOW = 60        # seconds a hello's timestamp may differ from the server's clock
DEFAULT_REPLAY_SIZE = 64   # nonces remembered per device (about 1.5 KB on an ESP32)
ROLES = ("controller", "device", "reader")
CODES = ("unknown-key", "bad-signature", "stale-timestamp", "replay", "revoked", "wrong-role",
         "malformed", "plaintext-refused", "busy", "timeout")
_NAME_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-"
_NONCE = 16


def forgets():
    """Does this device forget the handshake's code between handshakes? On MicroPython when it
    runs from precompiled .mpy files (compat.from_mpy)."""
    return from_mpy()


def idle():
    """A handshake ended: forget the handshake's code (on MicroPython from .mpy files: it loads
    again cheaply) and collect its garbage (key agreement, JSON). The server side (server.py)
    the key files' reader (trust.py) and the key agreement (x25519.py) run within one call, so
    they go at once; admit.py goes when no accepted connection waits for its hello, hello.py
    when no dial is in progress, and what both use (this module, pubkey.py) when neither is."""
    if forgets():
        for m in ("server", "trust", "x25519", "handshake"):
            unload("sensormesh.device.secure." + m)
        if admitting[0] == 0:
            unload("sensormesh.device.secure.admit")
        if busy[0] == 0:
            unload("sensormesh.device.secure.hello")
            if admitting[0] == 0:
                unload("sensormesh.device.secure.keys")
                unload("sensormesh.device.secure.pubkey")
    collect()


class HandshakeError(Exception):
    """The handshake failed; code is one of CODES, message says why in words."""

    def __init__(self, code, message):
        super().__init__(code, message)
        self.code = code
        self.message = message

    def __str__(self):
        return "%s: %s" % (self.code, self.message)

    def to_message(self):
        """The control message that tells the peer why (safe to send: no secrets in it)."""
        return {"error": {"code": self.code, "message": self.message}}


def check_permission(role, command):
    """Raise HandshakeError('wrong-role') unless a peer of this role may send this command."""
    why = denied(role, command)
    if why is not None:
        raise HandshakeError("wrong-role", why)


# -- key files ----------------------------------------------------------------------------------
class Identity:
    """This side's name, role and private key."""

    def __init__(self, name, role, key):
        self.name = name
        self.role = role
        self.key = key


class TrustStore:
    """The public keys this side trusts (name -> role, key) and the revoked fingerprints.

    Devices trust nothing else. Replace or update it (e.g. after `sensormesh keys revoke`)
    and the next handshake sees the change.

    Held compactly, because every board of a fleet holds every key of it: the names in one
    bytearray, each key's role and 32 bytes in another (about 40 bytes a key; as objects a key
    cost a board about 270 bytes, 55 KB for 200 devices). A lookup makes its PublicKey.
    Made, changed and listed by secure/trust.py (trust_store, trust_add, trusted_keys), which a
    board loads only while it reads its trust store.
    """

    def __init__(self, names=None, recs=None, roles=None, revoked=None, revoked_names=None):
        self._names = bytearray(b"\n") if names is None else names  # "\nNAME\nNAME\n...": name i has key i
        self._recs = bytearray() if recs is None else recs  # per key: its role's index in _roles, its 32 bytes
        self._roles = roles if roles is not None else []
        self.revoked = revoked if type(revoked) is set else set(revoked or ())   # fingerprints
        self.revoked_names = revoked_names if revoked_names is not None else set()  # names whose only key was revoked

    def state(self):
        """Its data, which TrustStore(*state) takes back (what a device keeps between handshakes)."""
        return (self._names, self._recs, self._roles, self.revoked, self.revoked_names)

    def __len__(self):
        return len(self._recs) // 33

    def index(self, name):
        """The position of name's key, or -1 (only a whole name matches)."""
        if type(name) is not str or "\n" in name:
            return -1
        i = self._names.find(b"\n" + name.encode() + b"\n")
        return -1 if i < 0 else self._names.count(b"\n", 0, i)

    def entry(self, i):
        """(role, PublicKey) of the key at position i."""
        return self._roles[self._recs[33 * i]], PublicKey(self._recs[33 * i + 1:33 * i + 33])

    def revoke(self, fp, name=None):
        self.revoked.add(fp)
        if name is not None:
            self.revoked_names.add(name)

    def lookup(self, name, who):
        """(role, key) of a trusted, unrevoked name, else HandshakeError."""
        i = self.index(name)
        if i < 0:
            if name in self.revoked_names:
                raise HandshakeError("revoked", "the key of %s %r has been revoked" % (who, name))
            raise HandshakeError("unknown-key", "%s %r is not in this side's trust store" % (who, name))
        ent = self.entry(i)
        if ent[1].fingerprint() in self.revoked:
            raise HandshakeError("revoked", "the key of %s %r (%s) has been revoked"
                                 % (who, name, ent[1].fingerprint()))
        return ent


class PairCache:
    """Pair keys per peer key: the X25519 shared secret with a peer, hashed with both public
    keys. Computing one costs a scalar multiplication (the only expensive step of a
    handshake), so a side keeps the last `size` of them; a changed or revoked peer key never
    reaches the cache (the trust store is checked first, and the key itself is the cache key)."""

    def __init__(self, size=16, state=None):
        self.size = size
        # peer public key bytes -> pair key; those keys, oldest first; scalar multiplications
        # done (for status and tests). A device keeps this list between handshakes.
        self.state = state if state is not None else [{}, [], 0]
        self.keys = self.state[0]
        self.order = self.state[1]

    @property
    def computed(self):
        return self.state[2]

    def get(self, identity, peer):
        k = self.keys.get(peer.pub)
        if k is not None:
            return k
        try:
            ss = identity.key.exchange(peer)
        except ValueError as e:
            raise HandshakeError("unknown-key", "cannot agree on a key with this peer: %s" % e)
        mine = identity.key.public.pub
        lo, hi = (mine, peer.pub) if mine < peer.pub else (peer.pub, mine)
        k = hmac_sha256(b"sensormesh-pair-v2" + lo + hi, ss)
        self.state[2] += 1
        if len(self.order) >= self.size:
            self.keys.pop(self.order.pop(0), None)
        self.keys[peer.pub] = k
        self.order.append(peer.pub)
        return k


# -- the pieces both sides compute ---------------------------------------------------------------
def valid_name(name):
    if type(name) is not str or not 0 < len(name) <= 64:
        return False
    for c in name:
        if c not in _NAME_CHARS:
            return False
    return True


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


# -- a device's keys as the objects above, for one handshake -----------------------------------
# secure.Security keeps them as plain data (bytes, bytearrays, lists, sets, dicts), so that
# between handshakes nothing of this module's (or x25519.py's) code stays referenced.
def device_identity(sec, defer=False):
    i = sec.identity
    return Identity(i.name, i.role, DeviceKey(i.secret, i.pub, defer))


class PairNeeded(Exception):
    """A deferred key agreement (DeviceKey(defer=True)): args[0] is the peer's PublicKey."""


class DeviceKey:
    """A device's private key for one handshake: its public half at hand, the key agreement
    (x25519.py, OpenSSL on CPython) loaded only when a pair key must be computed; with
    `defer`, exchange() raises PairNeeded instead, so the caller can make room for it first."""

    def __init__(self, secret, pub, defer=False):
        self._secret = secret
        self.public = PublicKey(pub)
        self._defer = defer

    def exchange(self, peer):
        if self._defer:
            raise PairNeeded(peer)
        from sensormesh.device.secure.x25519 import private_key
        return private_key(self._secret, self.public.pub).exchange(peer)


def pair_now(sec, peer):
    """Compute and cache the pair key with a peer key, then forget x25519.py again."""
    device_pairs(sec).get(device_identity(sec), peer)
    drop("x25519")


def drop(name):
    """Forget module secure.`name` (see forgets()) and collect."""
    if forgets():
        unload("sensormesh.device.secure." + name)
    collect()


def pair_ahead(sec, peer, roles):
    """Compute (and cache) the pair key with a trusted peer before a dial's handshake, so the key
    agreement's code (x25519.py) is forgotten again before the client side (hello.py) loads:
    the two are never in memory at once. A peer that is not trusted is left to the handshake,
    which refuses it with its error."""
    try:
        role, key = device_trust(sec).lookup(peer, "server")
        _check_role(role, roles, "server", peer)
        pair_now(sec, key)
    except HandshakeError:
        drop("x25519")


def device_trust(sec):
    """The device's trust store, re-read first if its file (or the revoked file) changed."""
    stamps = (_stamp(sec.trust_src), _stamp(sec.revoked_src))
    if sec.trust_state is None or stamps != sec.stamps:
        from sensormesh.device.secure import trust       # reading the files (forgotten when idle)
        trust.reload_trust(sec, stamps)
    return TrustStore(*sec.trust_state)


def device_pairs(sec):
    return PairCache(sec.pairs_size, sec.pair_state)


def _stamp(src):
    if type(src) is not str:
        return None
    try:
        st = os.stat(src)
    except OSError:
        return None
    return (st[6], getattr(st, "st_mtime_ns", st[8]))

