# What a device with keys keeps between handshakes, on both interpreters: its identity, its
# trust store, the replay and pair-key caches, the errors, the roles' permissions, and the
# Channel that wraps every frame of an established session. The handshake itself (the hello and
# welcome state machines, the key files' parsers: handshake.py) is only needed while a connection
# authenticates, so a board forgets its code between handshakes (secure/__init__.py) and keeps
# only this module, the Fernet tokens (fernet.py) and the X25519 keys (x25519.py).
import struct

from sensormesh.device import codec
from sensormesh.device.compat import MICROPYTHON, collect, from_mpy, unload
from sensormesh.device.secure.fernet import Fernet, InvalidToken, b64encode, hmac_sha256
from sensormesh.device.secure.x25519 import PublicKey

VERSION = 2
DEFAULT_WINDOW = 60        # seconds a hello's timestamp may differ from the server's clock
DEFAULT_REPLAY_SIZE = 64   # nonces remembered per device (about 1.5 KB on an ESP32)
ROLES = ("controller", "device", "reader")
CODES = ("unknown-key", "bad-signature", "stale-timestamp", "replay", "revoked", "wrong-role",
         "malformed", "plaintext-refused", "busy", "timeout")

# Control messages each role may send once authenticated; None = all of them.
PERMISSIONS = {
    "controller": None,
    "device": ("pipe", "pull", "info", "ping"),
    "reader": ("data-request", "info", "ping", "status", "metrics", "clock"),
}

_COUNTER = 8
# Largest frame accepted before the handshake: a hello is about 250 bytes.
HELLO_MAX_FRAME = 4096
DEFAULT_HANDSHAKE_MS = 10000 if MICROPYTHON else 5000

# Client handshakes in progress (hello.Dialer), whose sessions live across loop turns.
busy = [0]


def forgets():
    """Does this device forget the handshake's code between handshakes? On MicroPython when it
    runs from precompiled .mpy files (compat.from_mpy)."""
    return from_mpy()


def idle():
    """A handshake ended: forget the handshake's code (see forgets()) and collect its garbage
    (key agreement, JSON). The server side (handshake.py) and the trust store's reader
    (trust.py) run within one call, so they go at once, even while a pipe's own handshake
    (hello.py) is in progress; hello.py goes when no client handshake is in progress (busy)."""
    if forgets():
        unload("sensormesh.device.secure.handshake")
        unload("sensormesh.device.secure.trust")
        if busy[0] == 0:
            unload("sensormesh.device.secure.hello")
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
    allowed = PERMISSIONS.get(role, ())
    if allowed is not None and command not in allowed:
        raise HandshakeError("wrong-role", "a %s key may not send %r (allowed: %s)"
                             % (role, command, ", ".join(allowed) or "nothing"))


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

    def __init__(self, names=None, recs=None, roles=None, revoked=None):
        self._names = bytearray(b"\n") if names is None else names  # "\nNAME\nNAME\n...": name i has key i
        self._recs = bytearray() if recs is None else recs  # per key: its role's index in _roles, its 32 bytes
        self._roles = roles if roles is not None else []
        self.revoked = set(revoked or ())   # fingerprints
        self.revoked_names = set()          # names whose only key was revoked

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


# -- replay protection ---------------------------------------------------------------------------
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

    def __init__(self, window=DEFAULT_WINDOW, size=DEFAULT_REPLAY_SIZE):
        self.window = window
        self.size = size
        self.seen = {}    # nonce -> (timestamp, key name)
        self.floors = {}  # key name -> hellos of that key with ts <= this are refused

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


class PairCache:
    """Pair keys per peer key: the X25519 shared secret with a peer, hashed with both public
    keys. Computing one costs a scalar multiplication (the only expensive step of a
    handshake), so a side keeps the last `size` of them; a changed or revoked peer key never
    reaches the cache (the trust store is checked first, and the key itself is the cache key)."""

    def __init__(self, size=16):
        self.size = size
        self.keys = {}     # peer public key bytes -> pair key
        self.order = []    # oldest first
        self.computed = 0  # scalar multiplications done (for status and tests)

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
        self.computed += 1
        if len(self.order) >= self.size:
            self.keys.pop(self.order.pop(0), None)
        self.keys[peer.pub] = k
        self.order.append(peer.pub)
        return k


# Largest plaintext a sender should wrap at once: on MicroPython a token is built with a few
# copies of its size (buffer, base64, url-safe alphabet), so keep frames small on a board.
SEND_PLAIN_MAX = 3072 if MICROPYTHON else 1 << 30


def plain_limit(max_frame):
    """Largest payload whose token still fits a frame of max_frame bytes."""
    raw = max_frame // 4 * 3 - 57   # base64 of version + time + IV + blocks + HMAC
    raw = raw - raw % 16 - 1 - _COUNTER  # the blocks: counter, payload and 1-16 bytes of padding
    return raw if raw > 0 else 0


def wrap_limit(max_frame):
    """Largest payload a sender wraps into one token for a peer accepting max_frame bytes."""
    n = plain_limit(max_frame)
    return n if n < SEND_PLAIN_MAX else SEND_PLAIN_MAX


class Channel:
    """Payload wrap/unwrap after the handshake: Fernet tokens with a frame counter inside.

    The counter stops an attacker on the path from replaying, reordering or dropping frames
    within the connection; a separate key per direction stops reflecting frames back.
    """

    def __init__(self, send_key, recv_key):
        self._tx = Fernet(b64encode(send_key))
        self._rx = Fernet(b64encode(recv_key))
        self._sent = 0
        self._recv = 0

    def wrap(self, payload):
        n = self._sent
        self._sent = n + 1
        return self._tx.encrypt_prefixed(struct.pack("!Q", n), payload)

    def unwrap(self, token):
        try:
            p = self._rx.decrypt_frame(token)
        except (InvalidToken, TypeError, ValueError):
            raise codec.ProtocolError("frame is not a valid token of this session (plaintext, "
                                      "tampered, or from another connection)")
        if len(p) < _COUNTER or struct.unpack("!Q", p[:_COUNTER])[0] != self._recv:
            raise codec.ProtocolError("frame %d of this session is missing or out of order "
                                      "(replayed, reordered or dropped)" % self._recv)
        self._recv += 1
        return p[_COUNTER:]
