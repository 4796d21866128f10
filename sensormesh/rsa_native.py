# CPython only: the private half of sensormesh.rsa on OpenSSL (via cryptography), with the
# same methods and the same encodings, so the controller's key never meets pure-Python
# big-integer code (which is not constant-time). Never imported on MicroPython.
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric import rsa as _crsa

from sensormesh.rsa import PublicKey, RSAError

_OAEP = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


class NativePrivateKey(PublicKey):
    def __init__(self, n, e, d, p, q, dp, dq, qinv):
        PublicKey.__init__(self, n, e)
        pub = _crsa.RSAPublicNumbers(e, n)
        self._key = _crsa.RSAPrivateNumbers(p, q, d, dp, dq, qinv, pub).private_key()

    def public(self):
        return PublicKey(self.n, self.e)

    def sign(self, msg):
        return self._key.sign(msg, padding.PKCS1v15(), hashes.SHA256())

    def decrypt(self, ct):
        try:
            return self._key.decrypt(bytes(ct), _OAEP)
        except ValueError:
            raise RSAError("decryption error")


def generate(bits=2048):
    """A fresh key as the JSON-ready dict the device loads (hex strings, e as int)."""
    key = _crsa.generate_private_key(public_exponent=65537, key_size=bits)
    return key_to_json(key)


def key_to_json(key):
    pn = key.private_numbers()
    h = "%x"
    return {"n": h % pn.public_numbers.n, "e": pn.public_numbers.e, "d": h % pn.d,
            "p": h % pn.p, "q": h % pn.q, "dp": h % pn.dmp1, "dq": h % pn.dmq1, "qinv": h % pn.iqmp}
