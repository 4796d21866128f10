# codec.py's CPython half: the JSON implementation a CPython process encodes and decodes frames
# with, and the whole frames a CPython connection appends to its one output buffer
# (encode_into) or a client asks about (Decoder.pending). A board never loads this module, so it
# pays neither for this code nor for its names and texts (a branch codec.py never takes on
# MicroPython would still be loaded with it). codec.py imports it last, once its own names are
# defined, and has this module add its own there (add_to).
#
# CPython uses msgspec when it is installed (a dependency of the package): it encodes a
# 5000-value array about 6x and decodes it about 3x faster than the standard json module
# (benchmarks/bench_json.py has the figures and the comparison with orjson). The standard module
# stays the fallback. Every path reads and writes the same values (codec.py's notes):
#   - bytes on the wire are compact UTF-8 JSON; msgspec writes some floats differently
#     (1e20, not 1e+20), never a different value;
#   - NaN and infinity are not JSON: encoding them raises ProtocolError on every path (msgspec
#     would write null: a payload of its holding "null" is re-encoded by the standard module,
#     which refuses them or writes the same values); decoding refuses the literals NaN,
#     Infinity and -Infinity on every path, while a valid number beyond the double range (1e400)
#     reads as infinity on every path, as the standard module and MicroPython read it;
#   - whatever msgspec refuses or reads differently (integers beyond 64 bits it encodes
#     exactly; invalid text) goes to the standard module, which decides and says what is wrong.
# SENSORMESH_JSON=stdlib in the environment (or codec.use_json("stdlib")) turns the fast path off.
#
# codec.py imports this module as it loads, so this one imports codec.py only inside the functions
# that need it (the error a refusal raises): no import circle.
import json
import os
import struct
import sys

JSON_BACKEND = "stdlib"
fast_encode = None   # msg -> bytes (msgspec.json.Encoder.encode)
fast_decode = None   # bytes-like -> msg
raw_items = None     # encoded array -> its items as msgspec.Raw (split.py cuts at value boundaries)


def _not_json(name):
    raise ValueError("%s is not JSON" % name)


def _as_msgspec_writes(obj):
    """The standard module's default hook: the values msgspec writes that the standard module has
    no form for, written as msgspec writes them (sets as arrays, bytes as base64 text, dates,
    times, decimals and UUIDs as text), so a value travels alike on both paths, whichever a
    message takes (one null in it sends it the standard module's way)."""
    if isinstance(obj, (set, frozenset)):
        return list(obj)
    if isinstance(obj, (bytes, bytearray, memoryview)):
        import binascii
        return binascii.b2a_base64(bytes(obj), newline=False).decode()
    if hasattr(obj, "isoformat"):
        return obj.isoformat()
    name = type(obj).__name__
    if name in ("Decimal", "UUID"):
        return str(obj)
    raise TypeError("Object of type %s is not JSON serializable" % name)


# the standard module's encoder and decoder as the wire wants them (MicroPython's json has
# neither class: there this module imports all the same, as every module of the folder does)
if hasattr(json, "JSONEncoder"):
    std_encode = json.JSONEncoder(separators=(",", ":"), allow_nan=False, ensure_ascii=False,
                                  default=_as_msgspec_writes).encode
    std_decode = json.JSONDecoder(parse_constant=_not_json).decode


def use_json(name):
    """Choose the JSON implementation: "msgspec" (if installed) or "stdlib". Returns the name in
    use before (codec.use_json; codec.JSON_BACKEND says which is in use)."""
    global JSON_BACKEND, fast_encode, fast_decode, raw_items
    old = JSON_BACKEND
    if name == "stdlib":
        JSON_BACKEND, fast_encode, fast_decode, raw_items = "stdlib", None, None, None
    elif name != "msgspec":
        raise ValueError("unknown JSON implementation %r (msgspec or stdlib)" % (name,))
    else:
        import msgspec
        fast_encode = msgspec.json.Encoder().encode
        fast_decode = msgspec.json.Decoder().decode
        raw_items = msgspec.json.Decoder(list[msgspec.Raw]).decode
        JSON_BACKEND = "msgspec"
    codec = sys.modules.get("sensormesh.device.codec")
    if codec is not None:
        codec.JSON_BACKEND = JSON_BACKEND
    return old


def _std_dumps(msg):
    try:
        return std_encode(msg).encode()
    except (TypeError, ValueError) as e:
        from sensormesh.device.codec import ProtocolError
        raise ProtocolError("message is not JSON-serialisable: %s" % e)


def dumps(msg):
    """Serialise a message to its UTF-8 JSON payload (no length prefix)."""
    if not isinstance(msg, (dict, list)):
        from sensormesh.device.codec import ProtocolError
        raise ProtocolError("a message must be a dict (control) or list (data), not %s" % type(msg).__name__)
    enc = fast_encode
    if enc is None:
        return _std_dumps(msg)
    try:
        payload = enc(msg)
    except Exception:   # msgspec refused it: the standard module decides and says why
        return _std_dumps(msg)
    if b"null" in payload:
        # msgspec writes NaN and infinity as null; the standard module refuses them
        return _std_dumps(msg)
    return payload


def loads(payload):
    """A frame's payload (bytes) parsed: msgspec's reading, or the standard module's (which says
    what is wrong) for what msgspec refuses or when it is off."""
    dec = fast_decode
    if dec is not None:
        try:
            return dec(payload)
        except Exception:   # msgspec refused it: the standard module decides and says why
            pass
    try:
        return std_decode(bytes(payload).decode() if type(payload) is memoryview else payload.decode())
    except (ValueError, RuntimeError, MemoryError) as e:
        # not UTF-8, not JSON, too deep for the parser: refused.py says which
        from sensormesh.device import refused
        from sensormesh.device.codec import ProtocolError
        raise ProtocolError(refused.unreadable(payload, e))


def encode_into(buf, msg, max_frame):
    """Append the frame(s) for msg to the bytearray buf.

    A data message whose payload exceeds max_frame is split into consecutive data messages,
    in order, each within the limit, so a receiver with a small buffer still gets every value.
    A control message that exceeds it is an error: control messages cannot be split.
    """
    payload = dumps(msg)
    n = len(payload)
    if n <= max_frame:
        buf += struct.pack("!I", n)
        buf += payload
        return
    from sensormesh.device import split   # oversized messages only (split.py)
    split.into(buf, msg, payload, max_frame)


def pending(dec):
    """Decoder.pending: bytes received but not yet returned as a message (a truncated frame at
    EOF)."""
    return len(dec._buf) - dec._pos + (4 if dec._need >= 0 else 0)


def add_to(names):
    """codec.py's CPython names from this half, added to its globals() `names` (codec.py calls it
    once its own are defined)."""
    names["use_json"] = use_json
    names["dumps"] = names["_payload"] = dumps
    names["loads"] = loads
    names["encode_into"] = encode_into
    names["Decoder"].pending = pending
    names["JSON_BACKEND"] = JSON_BACKEND


if os.getenv("SENSORMESH_JSON") != "stdlib":
    try:
        use_json("msgspec")
    except ImportError:
        pass
