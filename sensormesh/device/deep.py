# Depth of a frame read from its bytes, before a board parses it (codec.decode_payload loads
# this module only for a frame whose arrays and objects could fill a good part of the free
# heap once built, and forgets it after). MicroPython's json has no depth limit: a frame of a
# few thousand '[' would fill the whole heap with nested lists before the depth check could
# refuse it, and that heap would be short for everything else the device does meanwhile.
from sensormesh.device.codec import ProtocolError


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
                raise ProtocolError("frame nests arrays or objects deeper than %d levels" % limit)
        elif c == 93 or c == 125:   # ] }
            d -= 1
        elif c == 34:
            text = True
