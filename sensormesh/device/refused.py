# Why codec.py refuses a frame or a message: the texts of its ProtocolErrors and the checks of
# rare frames, loaded only when one is needed (and forgotten after it on a board running .mpy
# files), so a board keeps none of them resident with codec.py. Each function that returns a
# text returns what the ProtocolError says (codec raises it).
#
# check(): a frame's depth read from its bytes, before a board parses it (codec.decode_payload
# calls it only for a frame whose arrays and objects could fill a good part of the free heap
# once built). MicroPython's json has no depth limit: a frame of a few thousand '[' would fill
# the whole heap with nested lists before the depth check could refuse it, and that heap would
# be short for everything else the device does meanwhile.
from sensormesh.device.codec import MAX_DEPTH, ProtocolError


def check(payload, limit):
    """Raise ProtocolError if payload (JSON bytes) nests arrays or objects deeper than limit.
    Brackets inside strings do not count; anything else malformed is left to the parser."""
    d = 0
    text = False
    esc = False
    for c in payload:
        if text:
            if esc:
                esc = False
            elif c == 92:           # backslash
                esc = True
            elif c == 34:           # closing quote
                text = False
        elif c == 91 or c == 123:   # [ {
            d += 1
            if d > limit:
                raise ProtocolError(too_deep(limit))
        elif c == 93 or c == 125:   # ] }
            d -= 1
        elif c == 34:
            text = True


def too_deep(limit):
    return "frame nests arrays or objects deeper than %d levels" % limit


def unreadable(payload, e):
    """A frame's payload the JSON parser refused with e."""
    if isinstance(e, ValueError):       # (CPython: a UnicodeError is one)
        try:
            bytes(payload).decode()
        except UnicodeError:
            return "frame payload is not valid UTF-8"
        return "frame payload is not valid JSON: %s" % (e.args[0] if e.args else e)
    # CPython: RecursionError (a RuntimeError) from a deeply nested frame; MicroPython: a heap
    # full of nested lists. Either way the frame is refused, not the process.
    return ("frame nests arrays or objects deeper than %d levels, or does not fit this device's "
            "memory once decoded" % MAX_DEPTH)


def not_a_container(msg):
    """A frame whose JSON is a single value, not an object or an array."""
    if msg is None:
        kind = "null"
    elif msg is True or msg is False:
        kind = "boolean"
    elif type(msg) is str:
        kind = "string"
    else:
        kind = "number"
    return "frame holds a JSON %s; a message must be an object (control) or an array (data)" % kind


def not_a_message(msg):
    """Something to send that is neither a dict nor a list."""
    return "a message must be a dict (control) or list (data), not %s" % type(msg).__name__


def not_json(msg):
    """A message holding NaN or infinity (MicroPython's json writes them as bare words)."""
    return "value is not JSON-serialisable (NaN or infinity): %r" % (msg,)


def too_large(n, limit):
    return "frame of %d bytes exceeds the limit of %d bytes" % (n, limit)


def cut_off(left, need):
    """A stream that ended inside a frame (need: the payload's length, or -1 inside its header)."""
    if need >= 0:
        return "stream ended inside a frame: %d of %d payload bytes received" % (left, need)
    return "stream ended inside a frame header: %d of 4 bytes received" % left
