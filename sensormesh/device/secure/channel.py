# The frames of an established secure session: Channel wraps each payload into a Fernet token
# (AES-128-CBC + HMAC-SHA256, the Fernet spec's format) with a frame counter inside, and opens
# the peer's. This is all of the secure session a device keeps while its sessions run; the
# handshake's code (keys.py, dialer.py, server.py, admit.py, x25519.py, trust.py) loads for a
# handshake only (secure/__init__.py), and fernet.py (the Fernet API) builds on this module.
#
# Tokens are opened with as few copies of a frame as the format allows, because a board receives
# frames of up to its frame limit (16 KB): the token's base64 is decoded a few hundred characters
# at a time straight into one buffer, laid out so that the payload, decrypted in place, ends up
# at its start; the HMAC runs over views of it. Opening a token takes the token and one buffer
# of 3/4 its size, and the payload comes back as that buffer; making one takes only the token's
# own buffer (seal). The decoder is strict: the token must be the canonical url-safe base64 of
# its bytes (no stray characters, no '+' or '/').
import binascii
import hashlib
import os
import struct

from sensormesh.device.codec import ProtocolError
from sensormesh.device.compat import MICROPYTHON, unix_time

# The token's layout. MicroPython's compiler puts the numbers in place of these names (const() of
# a name starting with _ costs no global and no interned name); CPython runs them.
if not MICROPYTHON:
    const = int
_HDR = const(25)     # version (1) + timestamp (8) + IV (16)
_MAC = const(32)
_COUNTER = const(8)  # the frame counter in front of each payload of a session
_HEAD = const(41)    # the header and the first cipher block (_HDR + 16): decoded into a small buffer of its own
_CHUNK = 512 if MICROPYTHON else 1 << 16   # base64 characters decoded at a time (a multiple of 4)
# Bytes a token's base64 is made of at a time (a multiple of 3): on a board each piece's base64 and
# its url-safe copies are short-lived (128 characters each), not the ~1.5 KB a 384-byte piece needs
# at once, which a reply sent while the heap is nearly full (a stopped pipeline's stats) may lack.
_SEAL_STEP = 96 if MICROPYTHON else 49152

if MICROPYTHON:
    import cryptolib

    # The token is malformed, was not made with this key, was altered, or has expired: on a
    # board a ValueError (a class of its own would stay resident), on CPython cryptography's.
    InvalidToken = ValueError

    def _cbc(key, iv, encrypt):
        # AES-128-CBC: f(src, dst) over memoryviews whose length is a multiple of 16 (in place
        # if dst is src); successive calls continue the chain.
        a = cryptolib.aes(key, 2, iv)
        return a.encrypt if encrypt else a.decrypt
else:
    from cryptography.fernet import InvalidToken
    from sensormesh.device.secure.openssl import cbc as _cbc


def b64encode(data):
    """URL-safe base64 with padding, as bytes (the Fernet key and token alphabet)."""
    return binascii.b2a_base64(data, newline=False).replace(b"+", b"-").replace(b"/", b"_")


def b64decode(text):
    """Strict URL-safe base64: returns bytes, or raises ValueError unless text is canonical (its
    length a multiple of 4, nothing but base64, re-encoded the same). Every caller turns the
    ValueError into its own error, so it carries no text (none kept resident on a board)."""
    if type(text) is str:
        text = text.encode()
    if len(text) % 4:
        raise ValueError
    std = text.replace(b"-", b"+").replace(b"_", b"/")
    try:
        data = binascii.a2b_base64(std)
    except Exception:
        raise ValueError
    # binascii skips characters it does not know; re-encoding shows whether any were there.
    if b64encode(data) != text:
        raise ValueError
    return data


def hmac_sha256(key, msg, more=None):
    """HMAC-SHA256 (RFC 2104) of msg (then `more`, if given): MicroPython has no hmac module."""
    if len(key) > 64:
        key = hashlib.sha256(key).digest()
    # the key XOR the inner and outer pads (0x36, 0x5c bytes), as integers: made for each call,
    # rather than kept as two 64-byte integers a board holds for good
    k = int.from_bytes(key + bytes(64 - len(key)), "big")
    inner = hashlib.sha256((k ^ int.from_bytes(b"\x36" * 64, "big")).to_bytes(64, "big"))
    inner.update(msg)
    if more is not None:
        inner.update(more)
    outer = hashlib.sha256((k ^ int.from_bytes(b"\x5c" * 64, "big")).to_bytes(64, "big"))
    outer.update(inner.digest())
    return outer.digest()


def equal(a, b):
    """Compare two MACs in time that does not depend on where they differ."""
    if len(a) != len(b):
        return False
    r = 0
    for i in range(len(a)):
        r |= a[i] ^ b[i]
    return r == 0


def seal(sign, enc, prefix, data, t, iv, room=0):
    """The token of prefix + data (bytes-like), made at Unix time t with this IV, in one buffer:
    the token's bytes are laid out at the end of the buffer of its base64, encrypted in place,
    and encoded a chunk at a time to the buffer's front. Each chunk's base64 ends before the
    next chunk's bytes begin (the bytes take 3/4 of the buffer), so a token costs a board its
    base64's size besides the payload, not that and a copy of the payload too. With `room`, the
    buffer starts with that many bytes left free in front of the token (a frame's length prefix:
    the frame leaves as this one buffer, without a copy of the token)."""
    n = len(prefix) + len(data)
    pad = 16 - n % 16
    end = _HDR + n + pad
    size = end + _MAC
    out = bytearray(room + (size + 2) // 3 * 4)
    at = len(out) - size
    buf = memoryview(out)[at:]          # the token's bytes
    struct.pack_into(">BQ", out, at, 0x80, t)
    buf[9:_HDR] = iv
    buf[_HDR:_HDR + len(prefix)] = prefix
    buf[_HDR + len(prefix):_HDR + n] = data
    for i in range(_HDR + n, end):
        buf[i] = pad
    _cbc(enc, iv, True)(buf[_HDR:end], buf[_HDR:end])
    buf[end:] = hmac_sha256(sign, buf[:end])
    step = _SEAL_STEP
    j = room
    for i in range(0, size, step):
        c = b64encode(buf[i:i + step])
        out[j:j + len(c)] = c
        j += len(c)
    return out


def _decoded_size(token):
    n = len(token)
    if n < 4 or n % 4:
        raise InvalidToken
    return n // 4 * 3 - (token[n - 1] == 61) - (token[n - 2] == 61)   # 61: "="


def _decode_into(token, size, head, body, tail):
    # The token's bytes, decoded a chunk at a time: bytes [0, _HEAD) into head, the rest of
    # the cipher text into body (from index 16 - skip on: see open_token), the HMAC into tail.
    n = len(token)
    at = 0                        # offset of the chunk's first decoded byte in the token's bytes
    mac_at = size - _MAC
    for i in range(0, n, _CHUNK):
        c = token[i:i + _CHUNK]
        if type(c) is not bytes:
            c = bytes(c)
        if i + _CHUNK < n and b"=" in c:
            raise InvalidToken        # padding inside the token
        try:
            d = b64decode(c)
        except (ValueError, UnicodeError):
            raise InvalidToken
        e = at + len(d)
        a = at
        while a < e:              # split the chunk over the three regions it may span
            if a < _HEAD:
                b = e if e < _HEAD else _HEAD
                head[a:b] = d[a - at:b - at]
            elif a < mac_at:
                b = e if e < mac_at else mac_at
                body[len(body) - (mac_at - a):len(body) - (mac_at - b)] = d[a - at:b - at]
            else:
                b = e
                tail[a - mac_at:b - mac_at] = d[a - at:b - at]
            a = b
        at = e


def open_token(sign, enc, token, skip):
    """(first `skip` bytes of the plaintext, the rest as a bytearray) of a token, or InvalidToken
    (its age is not checked: a session's frames carry a counter instead; fernet.py checks a ttl).

    The plaintext's first block is decrypted into a small buffer and its bytes past `skip` are
    copied in front of the rest of the cipher text, decoded into a buffer of the plaintext's
    size less `skip`; the rest is decrypted there in place, and the padding cut off its end."""
    if type(token) is str:
        token = token.encode()
    size = _decoded_size(token)
    if size < _HEAD + _MAC or (size - _HDR - _MAC) % 16:
        raise InvalidToken
    head = bytearray(_HEAD)
    tail = bytearray(_MAC)
    body = bytearray(size - _HDR - _MAC - skip)     # the plaintext less its first `skip` bytes
    _decode_into(token, size, head, body, tail)
    if head[0] != 0x80:
        raise InvalidToken
    rest = memoryview(body)[16 - skip:]         # cipher blocks 2.. (already in place)
    if not equal(hmac_sha256(sign, head, rest), tail):
        raise InvalidToken
    cbc = _cbc(enc, head[9:_HDR], False)
    first = bytearray(16)
    cbc(memoryview(head)[_HDR:], first)
    body[0:16 - skip] = first[skip:]
    if len(rest):
        cbc(rest, rest)
    rest = None                   # (CPython: a bytearray with a view on it cannot shrink)
    pad = body[-1]
    if pad < 1 or pad > 16 or pad > len(body):
        raise InvalidToken
    k = len(body)
    for i in range(k - pad, k):
        if body[i] != pad:
            raise InvalidToken
    body[k - pad:] = b""          # shrinks in place (no copy)
    return first[:skip], body


class Channel:
    """Payload wrap/unwrap after the handshake: Fernet tokens with a frame counter inside.

    The counter stops an attacker on the path from replaying, reordering or dropping frames
    within the connection; a separate key per direction stops reflecting frames back.
    """

    def __init__(self, send_key, recv_key):
        self._tx = send_key
        self._rx = recv_key
        self._sent = 0
        self._recv = 0

    def wrap(self, payload, room=0):
        """The token of the next frame (a bytearray; `room` bytes left free in front of it)."""
        n = self._sent
        k = self._tx
        token = seal(k[:16], k[16:], struct.pack("!Q", n), payload, int(unix_time()), os.urandom(16), room)
        self._sent = n + 1     # not before: a token a board had no heap for takes no frame number
        return token

    def unwrap(self, token):
        k = self._rx
        try:
            ctr, p = open_token(k[:16], k[16:], token, _COUNTER)
        except (InvalidToken, TypeError, ValueError):
            raise ProtocolError(_refused().NOT_A_TOKEN)
        if struct.unpack("!Q", ctr)[0] != self._recv:
            raise ProtocolError(_refused().OUT_OF_ORDER % self._recv)
        self._recv += 1
        return p


def _refused():
    """refused.py: the texts of a refused frame, loaded for one and forgotten after it (on a
    board running .mpy files)."""
    from sensormesh.device.compat import forget
    from sensormesh.device.secure import refused
    forget(refused)
    return refused

