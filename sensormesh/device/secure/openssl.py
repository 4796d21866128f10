# CPython only: X25519 private keys on OpenSSL (through `cryptography`), with the methods and
# results of x25519.PrivateKey, and AES-CBC for the session's tokens (channel.py; MicroPython
# has cryptolib). CPython sides (the controller, CPython devices) never run the pure-Python
# ladder, which is not constant-time (docs/security.md); MicroPython never loads this module
# (and never imports `cryptography`), so a board's heap holds none of its code.
from sensormesh.device.secure.pubkey import PublicKey


def cbc(key, iv, encrypt):
    """AES-128-CBC: f(src, dst) over buffers whose length is a multiple of 16; successive calls
    continue the chain (channel.py)."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    c = Cipher(algorithms.AES(bytes(key)), modes.CBC(bytes(iv)))
    op = c.encryptor() if encrypt else c.decryptor()

    def run(src, dst):
        dst[:] = op.update(bytes(src))
    return run


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
