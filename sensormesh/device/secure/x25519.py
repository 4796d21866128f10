# X25519 (RFC 7748) in plain Python, the device side of the handshake's key agreement.
#
# A key is 32 random bytes; its public half is X25519(key, 9). Two sides that trust each
# other's public keys get the same 32-byte shared secret from their own private key and the
# other's public key, with one scalar multiplication each (a Montgomery ladder over
# GF(2^255 - 19), the algorithm of RFC 7748 section 5). The session caches it per peer, so a
# device pays that once per peer, not once per connection.
#
# Big-integer arithmetic is not constant-time on either interpreter: see docs/security.md. On
# CPython the private half comes from OpenSSL (secure/openssl.py) unless asked not to. A device
# loads this module only to compute a pair key (keys.DeviceKey) and forgets it right after.
from sensormesh.device.compat import MICROPYTHON
from sensormesh.device.secure.pubkey import SIZE, PublicKey, fingerprint  # noqa: F401

P = (1 << 255) - 19
_A24 = 121665
_BASE = b"\x09" + bytes(31)


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


def private_key(raw, pub=None, native=None):
    """The private key object of 32 raw bytes (OpenSSL-backed on CPython unless native=False,
    secure/openssl.py); pub, its public half when known, spares the pure-Python side a scalar
    multiplication."""
    if native is None:
        native = not MICROPYTHON
    if native:
        from sensormesh.device.secure.openssl import NativePrivateKey
        return NativePrivateKey(raw)
    return PrivateKey(raw, pub)
