# Fernet tokens (AES-128-CBC + HMAC-SHA256, the format of the Fernet spec), on both interpreters.
#
# One API everywhere: Fernet(key).encrypt(data) -> token, .decrypt(token, ttl=None) -> data,
# InvalidToken for every bad token. CPython hands the work to cryptography.fernet; MicroPython
# uses PureFernet below, on the token functions of channel.py (cryptolib AES-CBC, hashlib sha256,
# binascii base64), which a session's frames use directly. Tokens made by either side decrypt on
# the other and with cryptography.fernet itself. A device never loads this module for its
# sessions: it is the Fernet API for tools, tests and benchmarks.
#
# The pure decoder is stricter than cryptography's: a token must be the canonical url-safe
# base64 of its bytes (no stray characters, no '+' or '/'), which the spec's invalid vectors ask.
import os
import struct

from sensormesh.device.compat import MICROPYTHON, unix_time
from sensormesh.device.secure.channel import (InvalidToken, b64decode, b64encode, equal, hmac_sha256,  # noqa: F401
                                              open_token, seal)

MAX_CLOCK_SKEW = 60  # seconds a token's timestamp may lie in the future (checked with a ttl)

if not MICROPYTHON:
    from cryptography.fernet import Fernet as _CFernet


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
    """The Fernet format in plain Python on top of an AES-CBC primitive (cryptolib on MicroPython):
    the token functions of channel.py behind cryptography.fernet's API."""

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
        out = bytearray()
        seal(self._sign, self._enc, prefix, data, t, iv, out.extend)
        return bytes(out)

    def decrypt(self, token, ttl=None):
        return self._open(token, ttl, None if ttl is None else int(unix_time()))

    def decrypt_at_time(self, token, ttl, current_time):
        return self._open(token, ttl, current_time)

    def _open(self, token, ttl, now):
        if type(token) is not bytes and type(token) is not str:
            raise TypeError("token must be bytes or str")
        try:
            if ttl is not None:
                _fresh(token, ttl, now)
            return bytes(open_token(self._sign, self._enc, token, 0)[1])
        except (ValueError, UnicodeError):
            raise InvalidToken


def _fresh(token, ttl, now):
    """InvalidToken unless the token was made within `ttl` seconds before `now` (and at most
    MAX_CLOCK_SKEW after it): its timestamp, bytes 1..8, is in its first 12 base64 characters."""
    head = b64decode(token[:12])
    if len(head) != 9:
        raise InvalidToken
    ts = struct.unpack(">Q", head[1:])[0]
    if ts + ttl < now or now + MAX_CLOCK_SKEW < ts:
        raise InvalidToken


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

    def _canonical(token):
        if type(token) is not bytes and type(token) is not str:
            raise TypeError("token must be bytes or str")
        try:
            b64decode(token)
        except (ValueError, UnicodeError):
            raise InvalidToken
