# The sender's side of an assignment larger than one frame (parts.py has the protocol and the
# device's side): split() cuts its JSON text into deploy-part messages. The controller uses it
# (supervisor/control.py), and tests on both interpreters; a device never loads it.
from sensormesh.device import codec

# Bytes of a part message besides the JSON of its text (keys, numbers, an id of up to 64 chars).
_OVERHEAD = 160


def split(text, room, ident):
    """The deploy-part messages carrying text, each at most room bytes of JSON."""
    if len(ident) > 64:
        raise ValueError("a part id has at most 64 characters")
    if room < _OVERHEAD + 64:
        raise ValueError("%d bytes per message leave no room for parts" % room)
    room -= _OVERHEAD
    chunks = []
    pos = 0
    n = len(text)
    while pos < n:
        k = room
        while True:
            size = len(codec.dumps([text[pos:pos + k]])) - 2   # the escaped, quoted slice
            if size <= room:
                break
            k = max(1, min(k - 1, k * room // size))
        chunks.append(text[pos:pos + k])
        pos += k
    of = len(chunks)
    return [{"deploy-part": {"id": ident, "part": i, "of": of, "size": n, "text": chunks[i]}}
            for i in range(of)]
