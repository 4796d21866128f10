# CPython only: the private half of sensormesh.x25519 on OpenSSL (via cryptography), with the
# same methods, so CPython sides (the controller, CPython devices) never run the pure-Python
# ladder, which is not constant-time. Never imported on MicroPython.
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from sensormesh.x25519 import PublicKey


class NativePrivateKey:
    def __init__(self, raw):
        self._key = X25519PrivateKey.from_private_bytes(bytes(raw))
        self.public = PublicKey(self._key.public_key().public_bytes_raw())

    def exchange(self, peer):
        try:
            return self._key.exchange(X25519PublicKey.from_public_bytes(peer.pub))
        except ValueError:
            raise ValueError("X25519 shared secret is all zeros: the peer's key is a low-order point")


def generate():
    """A fresh key as the JSON-ready dict the identity file holds: secret and public, hex."""
    key = X25519PrivateKey.generate()
    return {"secret": key.private_bytes_raw().hex(), "x25519": key.public_key().public_bytes_raw().hex()}
