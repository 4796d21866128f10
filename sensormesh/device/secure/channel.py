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
# of 3/4 its size, and the payload comes back as that buffer. A token is made in pieces of a few
# hundred characters (seal), which a connection queues and sends as they are. The decoder is strict: the token must be the canonical url-safe base64 of
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
# A token's bytes made at a time (seal): on a board each piece of base64 is at most 128
# characters (with 256, a keyed board under 96K found no block free for a piece about once in
# four runs of its tests; docs/performance.md); CPython makes a frame in one go.
_SEAL_STEP = 96 if MICROPYTHON else 1 << 16

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


def _hmac(key):
    """HMAC-SHA256 (RFC 2104) started: [the inner hash, to update with the message; the outer
    pad's key], for mac(). MicroPython has no hmac module. The key XOR the pads (0x36, 0x5c
    bytes) is made as integers for each call, rather than kept as two 64-byte integers a board
    holds for good."""
    if len(key) > 64:
        key = hashlib.sha256(key).digest()
    k = int.from_bytes(key + bytes(64 - len(key)), "big")
    return [hashlib.sha256((k ^ int.from_bytes(b"\x36" * 64, "big")).to_bytes(64, "big")),
            (k ^ int.from_bytes(b"\x5c" * 64, "big")).to_bytes(64, "big")]


def _mac(h):
    outer = hashlib.sha256(h[1])
    outer.update(h[0].digest())
    return outer.digest()


def hmac_sha256(key, msg, more=None):
    """HMAC-SHA256 of msg (then `more`, if given)."""
    h = _hmac(key)
    h[0].update(msg)
    if more is not None:
        h[0].update(more)
    return _mac(h)


def equal(a, b):
    """Compare two MACs in time that does not depend on where they differ."""
    if len(a) != len(b):
        return False
    r = 0
    for i in range(len(a)):
        r |= a[i] ^ b[i]
    return r == 0


def seal(sign, enc, prefix, data, t, iv, put, frame=False):
    """Make the token of prefix + data (bytes-like) at Unix time t with this IV, handing its
    base64 to put() a piece at a time; with `frame`, the first piece starts with the token's
    length (4 bytes, big-endian: a wire frame's prefix).

    The token's bytes are made _SEAL_STEP at a time in one small buffer: the plaintext copied
    in, encrypted in place (the CBC chain runs on from one piece to the next), added to the MAC
    and encoded. A board then needs no block the size of the token (a status reply's is about
    600 bytes, which a fragmented heap may lack), only pieces of at most ~140 bytes."""
    lp = len(prefix)
    n = lp + len(data)
    pad = 16 - n % 16
    total = n + pad               # the cipher text's length
    size = _HDR + total + _MAC    # the token's
    w = bytearray(size if size < _SEAL_STEP else _SEAL_STEP)
    v = memoryview(w)
    struct.pack_into(">BQ", w, 0, 0x80, t)
    w[9:_HDR] = iv
    mac = _hmac(sign)
    mac[0].update(v[:_HDR])
    cbc = _cbc(enc, iv, True)
    lead = struct.pack("!I", (size + 2) // 3 * 4) if frame else None
    have = _HDR                   # bytes in w not yet encoded
    p = 0                         # plaintext bytes made
    while True:
        m = (len(w) - have) // 16 * 16
        if m > total - p:
            m = total - p
        if m:
            # the plaintext [p, p + m): the prefix's bytes, the data's, the padding's
            e = p + m
            i = have
            if p < lp:
                k = e if e < lp else lp
                w[i:i + k - p] = prefix[p:k]
                i += k - p
                p = k
            if p < n and p < e:
                k = e if e < n else n
                w[i:i + k - p] = data[p - lp:k - lp]
                i += k - p
                p = k
            while p < e:
                w[i] = pad
                i += 1
                p += 1
            b = v[have:have + m]
            cbc(b, b)
            mac[0].update(b)
            have += m
        last = p == total and have + _MAC <= len(w)
        if last:
            w[have:have + _MAC] = _mac(mac)
            have += _MAC
            k = have
        else:
            k = have // 3 * 3     # whole base64 groups only; the rest moves to the front
        c = b64encode(v[:k])
        if lead is not None:
            c = lead + c
            lead = None
        put(c)
        if last:
            return
        w[0:have - k] = w[k:have]
        have -= k


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

    def wrap(self, payload, put=None):
        """The token of the next frame: handed to put() in pieces, the first with the frame's
        length in front (seal); without put, returned as a bytearray."""
        n = self._sent
        k = self._tx
        out = None
        if put is None:
            out = bytearray()
            put = out.extend
        seal(k[:16], k[16:], struct.pack("!Q", n), payload, int(unix_time()), os.urandom(16), put, out is None)
        self._sent = n + 1     # not before: a token a board had no heap for takes no frame number
        return out

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

