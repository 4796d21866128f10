# The handshake's pieces both sides use beyond its messages (wire.py), on both interpreters:
# identities, the trust store, the pair-key cache, and a device's keys made into these objects
# for one handshake. Loaded for a handshake only: a device keeps its identity, trust store and
# caches as plain data on its secure.Security between handshakes (device_identity(),
# device_trust() and device_pairs() below make these objects of it for one handshake), and forgets
# this module's code (basics.idle()). A deployment prepares the dials of its pipes here (prepare():
# each peer looked up and its pair key computed while the heap is low), so that a pipe's dial
# loads only the client side (dialer.py, wire.py). The server side is server.py.
from sensormesh.device.compat import MICROPYTHON, collect, unix_time, unload
from sensormesh.device.secure import (DEFAULT_HANDSHAKE_MS, HELLO_MAX_FRAME, PERMISSIONS, admitting,  # noqa: F401
                                      busy)
from sensormesh.device.secure.channel import Channel, b64decode, hmac_sha256  # noqa: F401
from sensormesh.device.secure.welcome import SEND_PLAIN_MAX, plain_limit, wrap_limit  # noqa: F401
from sensormesh.device.secure.pubkey import PublicKey
from sensormesh.device.secure.wire import (_NONCE, VERSION, HandshakeError, _bin, _body,  # noqa: F401
                                           _field, _keys, _transcript, forgets, idle, stamps)

ROLES = ("controller", "device", "reader")
PAIRS_KEPT = 8 if MICROPYTHON else 256     # a device's pair keys kept (device_pairs), ~100 bytes each


def check_permission(role, command):
    """Raise HandshakeError('wrong-role') unless a peer of this role may send this command."""
    from sensormesh.device.secure.admit import denied     # (tools; a device checks with Security.permit)
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


# -- what both sessions share ----------------------------------------------------------------------
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
        self.wrap = None       # payload -> token (the channel's)
        self.unwrap = None     # token -> payload (codec.ProtocolError if bad)

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


def prepare(sec, body, session=None):
    """A deployment arrived (body: the deploy message's): before the runtime and the deployment's
    code load, look up each device its pipes dial or accept ("peer") in the trust store and
    compute the pair key (x25519.py loaded for it and forgotten again), and keep only the result
    per peer, so that the pipe's dial later needs neither this module nor the key agreement
    (dial_hello.dial()), nor the handshake of the connection a sender opens to this device
    (accept.fast, server.py's `known`). The controller that deployed it (`session`'s peer) is
    kept the same way: its next session (a `sensormesh status` while the pipeline runs) is
    checked by accept.fast, without this module and server.py, about 14 KB a busy board may
    not have free. A peer that is not trusted is left to the handshake, which
    refuses it with its error; a malformed assignment is left to the deployment, which refuses it."""
    a = body.get("assignment") if type(body) is dict and "assignment" in body else body
    specs = a.get("steps") if type(a) is dict else None
    known = {}
    try:
        for spec in specs if type(specs) is list else ():
            params = spec.get("params") if type(spec) is dict else None
            if type(params) is not dict:
                continue
            peer = params.get("peer")
            if type(peer) is str and peer not in known and spec.get("type") in ("pipe_out", "pipe_in"):
                ready = prepare_peer(sec, peer)
                if ready is not None:
                    known[peer] = ready
        peer = getattr(session, "peer_name", None)
        if getattr(session, "role", None) == "controller" and type(peer) is str and peer not in known:
            ready = prepare_peer(sec, peer, "controller")
            if ready is not None:
                known[peer] = ready
        sec.prepared = known
    finally:
        idle()


def prepare_peer(sec, peer, as_role="device"):
    """(role, pair key, fingerprint) of a trusted device a pipe dials (the trust store re-read
    first if its files changed, the pair key computed and cached if new: x25519.py is forgotten
    again before the client side, dialer.py, loads, so the two are never in memory at once);
    None if the peer is not trusted as a device (the dial's handshake refuses it then).
    as_role="controller": the controller that deployed, as a client of this device."""
    who = "server" if as_role == "device" else "client"
    try:
        role, key = device_trust(sec).lookup(peer, who)
        _check_role(role, (as_role,), who, peer)
        ready = (role, device_pairs(sec).get(device_identity(sec), key), key.fingerprint())
    except HandshakeError:
        ready = None
    drop("x25519")
    return ready


def device_trust(sec):
    """The device's trust store, re-read first if its file (or the revoked file) changed."""
    now = stamps(sec)
    if sec.trust_state is None or now != sec.stamps:
        from sensormesh.device.secure import trust       # reading the files (forgotten when idle)
        trust.reload_trust(sec, now)
    return TrustStore(*sec.trust_state)


def device_pairs(sec):
    return PairCache(PAIRS_KEPT, sec.pair_state)
