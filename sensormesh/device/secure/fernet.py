# Fernet tokens (AES-128-CBC + HMAC-SHA256, the format of the Fernet spec), on both interpreters.
#
# One API everywhere: Fernet(key).encrypt(data) -> token, .decrypt(token, ttl=None) -> data,
# InvalidToken for every bad token. CPython hands the work to cryptography.fernet; MicroPython
# uses the pure implementation below (cryptolib AES-CBC, hashlib sha256, binascii base64).
# Tokens made by either side decrypt on the other and with cryptography.fernet itself.
#
# The pure decoder is stricter than cryptography's: a token must be the canonical url-safe
# base64 of its bytes (no stray characters, no '+' or '/'), which the spec's invalid vectors ask.
import binascii
import hashlib
import os
import struct

from sensormesh.device.compat import MICROPYTHON, unix_time

MAX_CLOCK_SKEW = 60  # seconds a token's timestamp may lie in the future (checked with a ttl)
_HDR = 25            # version (1) + timestamp (8) + IV (16)
_MAC = 32

if MICROPYTHON:
    import cryptolib

    class InvalidToken(Exception):
        """The token is malformed, was not made with this key, was altered, or has expired."""

    def _aes_cbc(key, iv, buf, encrypt):
        # In place: buf is a memoryview whose length is a multiple of 16.
        a = cryptolib.aes(key, 2, iv)
        if encrypt:
            a.encrypt(buf, buf)
        else:
            a.decrypt(buf, buf)
else:
    from cryptography.fernet import Fernet as _CFernet
    from cryptography.fernet import InvalidToken
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    def _aes_cbc(key, iv, buf, encrypt):
        c = Cipher(algorithms.AES(bytes(key)), modes.CBC(bytes(iv)))
        op = c.encryptor() if encrypt else c.decryptor()
        buf[:] = op.update(bytes(buf)) + op.finalize()


def b64encode(data):
    """URL-safe base64 with padding, as bytes (the Fernet key and token alphabet)."""
    return binascii.b2a_base64(data)[:-1].replace(b"+", b"-").replace(b"/", b"_")


def b64decode(text):
    """Strict URL-safe base64: returns bytes, or raises ValueError unless text is canonical."""
    if type(text) is str:
        text = text.encode()
    if len(text) % 4:
        raise ValueError("base64 length is not a multiple of 4")
    std = text.replace(b"-", b"+").replace(b"_", b"/")
    try:
        data = binascii.a2b_base64(std)
    except Exception:
        raise ValueError("not base64")
    # binascii skips characters it does not know; re-encoding shows whether any were there.
    if b64encode(data) != text:
        raise ValueError("not canonical url-safe base64")
    return data


def hmac_sha256(key, msg):
    """HMAC-SHA256 (RFC 2104): MicroPython has no hmac module."""
    if len(key) > 64:
        key = hashlib.sha256(key).digest()
    k = int.from_bytes(key + bytes(64 - len(key)), "big")
    inner = hashlib.sha256((k ^ _IPAD).to_bytes(64, "big"))
    inner.update(msg)
    outer = hashlib.sha256((k ^ _OPAD).to_bytes(64, "big"))
    outer.update(inner.digest())
    return outer.digest()


_IPAD = int.from_bytes(b"\x36" * 64, "big")
_OPAD = int.from_bytes(b"\x5c" * 64, "big")


def equal(a, b):
    """Compare two MACs in time that does not depend on where they differ."""
    if len(a) != len(b):
        return False
    r = 0
    for i in range(len(a)):
        r |= a[i] ^ b[i]
    return r == 0


def _raw_key(key):
    try:
        raw = b64decode(key)
    except (ValueError, TypeError, AttributeError):
        raw = b""
    if len(raw) != 32:
        raise ValueError("Fernet key must be 32 url-safe base64-encoded bytes.")
    return raw


def generate_key():
    return b64encode(os.urandom(32))


class PureFernet:
    """The Fernet format in plain Python on top of an AES-CBC primitive (cryptolib on MicroPython)."""

    def __init__(self, key):
        raw = _raw_key(key)
        self._sign = raw[:16]
        self._enc = raw[16:]

    def encrypt(self, data):
        return self._seal(b"", data, int(unix_time()), os.urandom(16))

    def encrypt_at_time(self, data, current_time):
        return self._seal(b"", data, current_time, os.urandom(16))

    def _encrypt_from_parts(self, data, current_time, iv):
        return self._seal(b"", data, current_time, iv)

    def encrypt_prefixed(self, prefix, data):
        """encrypt(prefix + data) without building the joined copy first."""
        return self._seal(prefix, data, int(unix_time()), os.urandom(16))

    def _seal(self, prefix, data, t, iv):
        # plaintext = prefix + data; one buffer, encrypted in place, to keep the heap small.
        n = len(prefix) + len(data)
        pad = 16 - n % 16
        end = _HDR + n + pad
        buf = bytearray(end + _MAC)
        struct.pack_into(">BQ", buf, 0, 0x80, t)
        buf[9:_HDR] = iv
        buf[_HDR:_HDR + len(prefix)] = prefix
        buf[_HDR + len(prefix):_HDR + n] = data
        for i in range(_HDR + n, end):
            buf[i] = pad
        mv = memoryview(buf)
        _aes_cbc(self._enc, iv, mv[_HDR:end], True)
        buf[end:] = hmac_sha256(self._sign, mv[:end])
        return b64encode(buf)

    def decrypt(self, token, ttl=None):
        return self._open(token, ttl, None if ttl is None else int(unix_time()))

    def decrypt_at_time(self, token, ttl, current_time):
        return self._open(token, ttl, current_time)

    decrypt_frame = decrypt

    def _open(self, token, ttl, now):
        if type(token) is not bytes and type(token) is not str:
            raise TypeError("token must be bytes or str")
        try:
            data = b64decode(token)
        except (ValueError, UnicodeError):
            raise InvalidToken
        n = len(data)
        if n < _HDR + 16 + _MAC or (n - _HDR - _MAC) % 16 or data[0] != 0x80:
            raise InvalidToken
        ts = struct.unpack(">Q", data[1:9])[0]
        if ttl is not None:
            if ts + ttl < now or now + MAX_CLOCK_SKEW < ts:
                raise InvalidToken
        mv = memoryview(data)
        end = n - _MAC
        if not equal(hmac_sha256(self._sign, mv[:end]), mv[end:]):
            raise InvalidToken
        buf = bytearray(mv[_HDR:end])
        _aes_cbc(self._enc, bytes(mv[9:_HDR]), memoryview(buf), False)
        pad = buf[-1]
        if pad < 1 or pad > 16:
            raise InvalidToken
        for i in range(len(buf) - pad, len(buf)):
            if buf[i] != pad:
                raise InvalidToken
        return bytes(buf[:len(buf) - pad])


if MICROPYTHON:
    Fernet = PureFernet
else:
    class Fernet:
        """cryptography.fernet behind the device-side API (same tokens, same InvalidToken)."""

        def __init__(self, key):
            self._key = key
            self._f = _CFernet(key)

        def encrypt(self, data):
            return self._f.encrypt(data)

        def encrypt_at_time(self, data, current_time):
            return self._f.encrypt_at_time(data, current_time)

        def _encrypt_from_parts(self, data, current_time, iv):
            return PureFernet(self._key)._encrypt_from_parts(data, current_time, iv)

        def encrypt_prefixed(self, prefix, data):
            return self._f.encrypt(prefix + data)

        # cryptography ignores characters after the base64 padding, which the spec's
        # invalid.json refuses: check the token is canonical first (C speed, microseconds).
        def decrypt(self, token, ttl=None):
            _canonical(token)
            return self._f.decrypt(token, ttl)

        def decrypt_at_time(self, token, ttl, current_time):
            _canonical(token)
            return self._f.decrypt_at_time(token, ttl, current_time)

        def decrypt_frame(self, token):
            """decrypt() for a session's frames, where large tokens are the common case: the
            token must consist of the url-safe alphabet (one C-speed pass) instead of being
            re-encoded to prove it canonical; the HMAC still covers every decoded byte."""
            if type(token) is not bytes or token.translate(None, _ALPHABET) or len(token) % 4:
                raise InvalidToken
            return self._f.decrypt(token)

    _ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_="

    def _canonical(token):
        if type(token) is not bytes and type(token) is not str:
            raise TypeError("token must be bytes or str")
        try:
            b64decode(token)
        except (ValueError, UnicodeError):
            raise InvalidToken
