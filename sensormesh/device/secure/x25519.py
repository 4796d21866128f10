# X25519 (RFC 7748) in plain Python, the device side of the handshake's key agreement.
#
# A key is 32 random bytes; its public half is X25519(key, 9). Two sides that trust each
# other's public keys get the same 32-byte shared secret from their own private key and the
# other's public key, with one scalar multiplication each (a Montgomery ladder over
# GF(2^255 - 19), the algorithm of RFC 7748 section 5). The session caches it per peer, so a
# device pays that once per peer, not once per connection.
#
# Big-integer arithmetic is not constant-time on either interpreter: see docs/security.md. On
# CPython the private half comes from OpenSSL (NativePrivateKey, at the end) unless asked not to.
import binascii
import hashlib

from sensormesh.device.compat import MICROPYTHON

P = (1 << 255) - 19
_A24 = 121665
_BASE = b"\x09" + bytes(31)
SIZE = 32


def _clamp(k):
    k = bytearray(k)
    k[0] &= 248
    k[31] &= 127
    k[31] |= 64
    return int.from_bytes(k, "little")


def scalarmult(k, u):
    """X25519(k, u) of RFC 7748: 32-byte scalar and u-coordinate -> 32-byte u-coordinate."""
    if len(k) != SIZE or len(u) != SIZE:
        raise ValueError("X25519 takes 32-byte scalars and points")
    k = _clamp(k)
    x1 = int.from_bytes(u, "little") & ((1 << 255) - 1)
    p = P
    x2, z2, x3, z3 = 1, 0, x1, 1
    swap = 0
    t = 254
    while t >= 0:
        bit = (k >> t) & 1
        if swap ^ bit:
            x2, x3 = x3, x2
            z2, z3 = z3, z2
        swap = bit
        a = x2 + z2
        aa = a * a % p
        b = x2 - z2
        bb = b * b % p
        e = aa - bb
        da = (x3 - z3) * a % p
        cb = (x3 + z3) * b % p
        x3 = da + cb
        x3 = x3 * x3 % p
        z3 = da - cb
        z3 = x1 * (z3 * z3 % p) % p
        x2 = aa * bb % p
        z2 = e * (aa + _A24 * e) % p
        t -= 1
    if swap:
        x2, z2 = x3, z3
    return (x2 * pow(z2, p - 2, p) % p).to_bytes(SIZE, "little")


def fingerprint(pub):
    """Short stable name of a public key: hex of the first 16 bytes of SHA-256(key)."""
    return "".join("%02x" % b for b in hashlib.sha256(pub).digest()[:16])


def _unhex(v, what):
    if type(v) is not str or len(v) != 2 * SIZE:
        raise ValueError("%s must be %d hex digits" % (what, 2 * SIZE))
    return binascii.unhexlify(v)   # bytes.fromhex is not in every MicroPython build


class PublicKey:
    def __init__(self, pub):
        if len(pub) != SIZE:
            raise ValueError("an X25519 public key is 32 bytes")
        self.pub = bytes(pub)
        self._fp = None

    def fingerprint(self):
        if self._fp is None:
            self._fp = fingerprint(self.pub)
        return self._fp


class PrivateKey:
    def __init__(self, raw, pub=None):
        # pub: its public half when already known (computing it takes a scalar multiplication)
        if len(raw) != SIZE:
            raise ValueError("an X25519 private key is 32 bytes")
        self._raw = bytes(raw)
        self.public = PublicKey(pub if pub is not None else scalarmult(self._raw, _BASE))

    def exchange(self, peer):
        """The shared secret with a peer's PublicKey; ValueError if it is all zeros (a
        low-order point: RFC 7748 section 6.1)."""
        s = scalarmult(self._raw, peer.pub)
        if s == bytes(SIZE):
            raise ValueError("X25519 shared secret is all zeros: the peer's key is a low-order point")
        return s


def public_from_json(obj):
    """{"x25519": hex of the public key} -> PublicKey."""
    if "x25519" not in obj and "n" in obj:
        raise ValueError("this is an RSA key from an older sensormesh; re-issue it "
                         "(sensormesh keys issue NAME --force) and re-provision")
    return PublicKey(_unhex(obj["x25519"], "x25519"))


def private_from_json(obj, native=None):
    """Identity JSON {"secret": hex private key, ...} -> private key object (OpenSSL-backed on
    CPython unless native=False)."""
    if "secret" not in obj and "n" in obj:
        raise ValueError("this identity holds an RSA key from an older sensormesh; re-issue it "
                         "(sensormesh keys issue NAME --force) and re-provision")
    return private_key(_unhex(obj["secret"], "secret"), None, native)


def private_key(raw, pub=None, native=None):
    """The private key object of 32 raw bytes (OpenSSL-backed on CPython unless native=False);
    pub, its public half when known, spares the pure-Python side a scalar multiplication."""
    if native is None:
        native = not MICROPYTHON
    if native:
        return NativePrivateKey(raw)
    return PrivateKey(raw, pub)


# -- CPython only: the private half on OpenSSL --------------------------------------------------
# CPython sides (the controller, CPython devices) never run the pure-Python ladder above, which
# is not constant-time: their private keys live in OpenSSL through `cryptography`, with the same
# methods and results. MicroPython never defines these (and never imports `cryptography`).
if not MICROPYTHON:
    class NativePrivateKey:
        def __init__(self, raw):
            from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
            self._raw = bytes(raw)
            self._key = X25519PrivateKey.from_private_bytes(self._raw)
            self.public = PublicKey(self._key.public_key().public_bytes_raw())

        def exchange(self, peer):
            from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
            try:
                return self._key.exchange(X25519PublicKey.from_public_bytes(peer.pub))
            except ValueError:
                raise ValueError("X25519 shared secret is all zeros: the peer's key is a low-order point")

    def generate():
        """A fresh key as the JSON-ready dict the identity file holds: secret and public, hex."""
        from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
        key = X25519PrivateKey.generate()
        return {"secret": key.private_bytes_raw().hex(), "x25519": key.public_key().public_bytes_raw().hex()}
