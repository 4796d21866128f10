# Cutting a data message larger than the peer's frame limit into frames (codec.encode_into and
# codec.payloads load this module for such a message only; a board running .mpy files forgets
# it after each).
#
# A data message is encoded once. When its payload exceeds the peer's frame limit, it is cut at
# value boundaries into consecutive arrays, each within the limit, without encoding the values
# again where the boundaries can be found in the bytes: an array of numbers, true, false and
# null (sensor readings) holds no comma but its separators, and on CPython msgspec lists the
# items of any array. Otherwise (strings, objects or arrays as values, on MicroPython or without
# msgspec) each value is encoded on its own and the frames are packed from those pieces; on
# MicroPython each frame is one buffer of its exact size, filled in place.
import json
import struct

from sensormesh.device.codec import _SEP, ProtocolError
from sensormesh.device.compat import MICROPYTHON

if not MICROPYTHON:
    from sensormesh.device import cpython_json   # msgspec lists an array's items (raw_items)


def _too_big(n, max_frame):
    return ProtocolError("a single value of %d bytes exceeds the frame limit of %d" % (n, max_frame))


def _cuts(msg, payload, max_frame):
    """Frames for an oversized payload: (payload, [start, end, ...]) where each pair bounds the
    values of one frame in payload, or (None, [frame payload, ...])."""
    if type(msg) is not list:
        raise ProtocolError("control message of %d bytes exceeds the frame limit of %d" % (len(payload), max_frame))
    if len(msg) < 2:
        raise _too_big(len(payload) - 2, max_frame)
    room = max_frame - 2   # bytes of values between the brackets
    end = len(payload) - 1
    if payload.find(b'"') < 0 and payload.find(b"{") < 0 and payload.count(b"[") == 1:
        cuts = []
        pos = 1
        while end - pos > room:
            c = payload.rfind(b",", pos, pos + room + 1)
            if c < 0:
                c = payload.find(b",", pos)
                raise _too_big((c if c > 0 else end) - pos, max_frame)
            cuts.append(pos)
            cuts.append(c)
            pos = c + 1
        cuts.append(pos)
        cuts.append(end)
        return payload, cuts
    raw_items = None if MICROPYTHON else cpython_json.raw_items
    if raw_items is not None:
        try:
            items = raw_items(payload)
        except Exception:
            items = None
        if items is not None and len(items) == len(msg):
            cuts = []
            start = pos = 1
            for r in items:
                n = len(r)
                if n > room:
                    raise _too_big(n, max_frame)
                if pos + n - start > room:
                    cuts.append(start)
                    cuts.append(pos - 1)
                    start = pos
                pos += n + 1
            cuts.append(start)
            cuts.append(pos - 1)
            return payload, cuts
    payload = None
    frames = []
    parts = []
    size = 0
    for v in msg:
        p = _value_bytes(v)
        n = len(p)
        if n > room:
            raise _too_big(n, max_frame)
        if parts and size + 1 + n > room:
            frames.append(_join(parts, size))
            parts = []
            size = 0
        size += n + 1 if parts else n
        parts.append(p)
    frames.append(_join(parts, size))
    return None, frames


def _value_bytes(v):
    # the whole message was encoded (and checked) already: this only re-encodes a valid value
    if MICROPYTHON:
        return json.dumps(v, separators=_SEP).encode()
    return cpython_json.std_encode(v).encode()


def _join(parts, size):
    """One frame payload '[p0,p1,...]' of exact size, filled in place."""
    b = bytearray(size + 2)
    b[0] = 91   # [
    i = 1
    for p in parts:
        if i > 1:
            b[i] = 44   # ,
            i += 1
        n = len(p)
        b[i:i + n] = p
        i += n
    b[i] = 93   # ]
    return b


def _frame(mv, a, b):
    n = b - a
    f = bytearray(n + 2)
    f[0] = 91
    f[1:n + 1] = mv[a:b]
    f[n + 1] = 93
    return f


def into(buf, msg, payload, max_frame):
    """Append the frames of an oversized payload (msg encoded) to the bytearray buf."""
    src, cuts = _cuts(msg, payload, max_frame)
    if src is None:
        for p in cuts:
            buf += struct.pack("!I", len(p))
            buf += p
        return
    mv = memoryview(src)
    for i in range(0, len(cuts), 2):
        a = cuts[i]
        b = cuts[i + 1]
        buf += struct.pack("!I", b - a + 2)
        buf += b"["
        buf += mv[a:b]
        buf += b"]"


def payloads(msg, box, max_frame):
    """The frame payloads of an oversized payload, the one item of `box` (taken out of it, so
    that it is freed once cut when the values are encoded one by one)."""
    src, cuts = _cuts(msg, box.pop(), max_frame)
    if src is None:
        return cuts
    mv = memoryview(src)
    out = []
    for i in range(0, len(cuts), 2):
        out.append(_frame(mv, cuts[i], cuts[i + 1]))
    return out
