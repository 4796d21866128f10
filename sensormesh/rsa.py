# RSA in plain Python for the device side: the two standard encodings the handshake needs.
#
#   sign / verify      RSASSA-PKCS1-v1_5 with SHA-256 (RFC 8017 section 8.2)
#   encrypt / decrypt  RSAES-OAEP with SHA-256 and MGF1-SHA-256, empty label (RFC 8017 7.1)
#
# Both are what cryptography calls padding.PKCS1v15() / padding.OAEP(MGF1(SHA256()), SHA256(),
# None), so the CPython side (sensormesh/rsa_native.py) uses OpenSSL for its half. Keys are
# plain integers from a JSON file (hex strings): no PEM or ASN.1 parsing on the device.
#
# Private operations use the CRT and multiplicative blinding; each signature is checked with
# the public key before it leaves (a fault in the CRT would otherwise leak a factor of n).
# Big-integer arithmetic is not constant-time on either interpreter: see docs/security.md.
import hashlib
import os

from sensormesh.compat import MICROPYTHON

MIN_BYTES = 256  # 2048-bit moduli at least
_H = 32          # SHA-256 digest size
_DIGEST_INFO = b"\x30\x31\x30\x0d\x06\x09\x60\x86\x48\x01\x65\x03\x04\x02\x01\x05\x00\x04\x20"
_LHASH = hashlib.sha256(b"").digest()


class RSAError(Exception):
    """Decryption failed (one message for every cause, so it tells an attacker nothing)."""


def _os2ip(b):
    return int.from_bytes(b, "big")


def _i2osp(x, k):
    return x.to_bytes(k, "big")


def _xor(a, b):
    return (_os2ip(a) ^ _os2ip(b)).to_bytes(len(a), "big")


def _mgf1(seed, length):
    out = b""
    c = 0
    while len(out) < length:
        out += hashlib.sha256(seed + c.to_bytes(4, "big")).digest()
        c += 1
    return out[:length]


def _pkcs1_sha256(msg, k):
    t = _DIGEST_INFO + hashlib.sha256(msg).digest()
    return b"\x00\x01" + b"\xff" * (k - len(t) - 3) + b"\x00" + t


def _inverse(a, m):
    r0, r1, x0, x1 = m, a % m, 0, 1
    while r1:
        q = r0 // r1
        r0, r1 = r1, r0 - q * r1
        x0, x1 = x1, x0 - q * x1
    if r0 != 1:
        raise ValueError("not invertible")
    return x0 % m


def _size(n):
    return (len("%x" % n) + 1) // 2


def fingerprint(n, e):
    """Short stable name of a public key: hex of the first 16 bytes of SHA-256(n || e)."""
    k = _size(n)
    h = hashlib.sha256(_i2osp(n, k) + e.to_bytes(4, "big")).digest()[:16]
    return "".join("%02x" % b for b in h)


class PublicKey:
    def __init__(self, n, e):
        self.n = n
        self.e = e
        self.k = _size(n)
        if self.k < MIN_BYTES:
            raise ValueError("RSA keys under 2048 bits are refused")
        self._fp = None

    def fingerprint(self):
        if self._fp is None:
            self._fp = fingerprint(self.n, self.e)
        return self._fp

    def verify(self, msg, sig):
        """True if sig is this key's PKCS#1 v1.5 SHA-256 signature of msg."""
        if len(sig) != self.k:
            return False
        s = _os2ip(sig)
        if s >= self.n:
            return False
        return _i2osp(pow(s, self.e, self.n), self.k) == _pkcs1_sha256(msg, self.k)

    def encrypt(self, msg, seed=None):
        """RSAES-OAEP-SHA256 of msg (at most k - 66 bytes)."""
        k = self.k
        if len(msg) > k - 2 * _H - 2:
            raise ValueError("message too long for RSA-OAEP")
        db = _LHASH + bytes(k - len(msg) - 2 * _H - 2) + b"\x01" + msg
        if seed is None:
            seed = os.urandom(_H)
        mdb = _xor(db, _mgf1(seed, k - _H - 1))
        em = b"\x00" + _xor(seed, _mgf1(mdb, _H)) + mdb
        return _i2osp(pow(_os2ip(em), self.e, self.n), k)


class PrivateKey(PublicKey):
    def __init__(self, n, e, d, p, q, dp, dq, qinv):
        PublicKey.__init__(self, n, e)
        self.d = d
        self.p = p
        self.q = q
        self.dp = dp
        self.dq = dq
        self.qinv = qinv
        self._blind = None

    def public(self):
        return PublicKey(self.n, self.e)

    def _private(self, c):
        n = self.n
        b = self._blind
        if b is None:
            # A random r, made once; each use squares it (cheap), so no two operations share it.
            r = _os2ip(os.urandom(self.k)) % n
            b = self._blind = [pow(r, self.e, n), _inverse(r, n)]
        else:
            b[0] = b[0] * b[0] % n
            b[1] = b[1] * b[1] % n
        c = c * b[0] % n
        m1 = pow(c, self.dp, self.p)
        m2 = pow(c, self.dq, self.q)
        m = m2 + (self.qinv * (m1 - m2) % self.p) * self.q
        return m * b[1] % n

    def sign(self, msg):
        """PKCS#1 v1.5 SHA-256 signature of msg (k bytes)."""
        m = _os2ip(_pkcs1_sha256(msg, self.k))
        s = self._private(m)
        if pow(s, self.e, self.n) != m:
            self._blind = None
            raise RSAError("signature self-check failed")
        return _i2osp(s, self.k)

    def decrypt(self, ct):
        """RSAES-OAEP-SHA256 decryption; RSAError on any failure."""
        k = self.k
        if len(ct) != k or k < 2 * _H + 2:
            raise RSAError("decryption error")
        c = _os2ip(ct)
        if c >= self.n:
            raise RSAError("decryption error")
        em = _i2osp(self._private(c), k)
        seed = _xor(em[1:1 + _H], _mgf1(em[1 + _H:], _H))
        db = _xor(em[1 + _H:], _mgf1(seed, k - _H - 1))
        # Check everything before deciding, so each failure takes the same path.
        ok = em[0] == 0 and db[:_H] == _LHASH
        i = _H
        while i < len(db) and db[i] == 0:
            i += 1
        ok = ok and i < len(db) and db[i] == 1
        if not ok:
            raise RSAError("decryption error")
        return db[i + 1:]


def _hex(v):
    if type(v) is int:
        return v
    return int(v, 16)


def public_from_json(obj):
    """{"n": hex, "e": int} -> PublicKey (the pure one: verify and encrypt are cheap anyway)."""
    return PublicKey(_hex(obj["n"]), _hex(obj["e"]))


def private_from_json(obj, native=None):
    """Identity JSON with n, e, d, p, q, dp, dq, qinv -> private key object.

    On CPython the OpenSSL-backed key from rsa_native is used unless native=False.
    """
    if native is None:
        native = not MICROPYTHON
    args = [_hex(obj[f]) for f in ("n", "e", "d", "p", "q", "dp", "dq", "qinv")]
    if native:
        from sensormesh.rsa_native import NativePrivateKey
        return NativePrivateKey(*args)
    return PrivateKey(*args)
