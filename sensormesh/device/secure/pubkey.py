# An X25519 public key and its fingerprint: what a trust store hands out for each name. Kept apart
# from the key agreement itself (x25519.py), which a handshake loads only to compute a pair key.
import hashlib

SIZE = 32


def fingerprint(pub):
    """Short stable name of a public key: hex of the first 16 bytes of SHA-256(key)."""
    return "".join("%02x" % b for b in hashlib.sha256(pub).digest()[:16])


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
