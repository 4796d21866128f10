# The wire format, sans-IO: bytes in, messages out; messages in, bytes out.
#
# A frame is a 4-byte big-endian unsigned length (struct '!I') followed by that many bytes of
# UTF-8 JSON. A JSON object is a control message, a JSON array is a data message; any other
# top-level value is a protocol error. No sockets and no clock here, so everything above this
# module can be tested without a network and the decoder can be fuzzed byte by byte.
import gc
import json
import struct

from sensormesh.device.compat import MICROPYTHON, forget

# The length prefix's size. MicroPython's compiler puts the number in place of the name (const()
# of a name starting with _ costs nothing at run time); CPython runs it.
if not MICROPYTHON:
    const = int
_HEADER_SIZE = const(4)

# Largest payload a receiver buffers. The length prefix is checked against it before a single
# payload byte is stored, so a peer cannot make us allocate more than this per connection.
# MicroPython: an ESP32 has ~100 KB of heap and its largest free block is a few KB once WiFi
# runs; 16 KiB is the most a running board can reliably hold twice (buffer + decoded copy).
# CPython: 4 MiB holds a 10 ms time frame of a million-values-per-second stream many times over.
DEFAULT_MAX_FRAME = 16 * 1024 if MICROPYTHON else 4 * 1024 * 1024

# Every implementation accepts frames at least this large. A sender that does not know its
# peer's limit (the peer did not send "max-frame") keeps each frame within it.
MIN_MAX_FRAME = 16 * 1024

# Values per array at most (a pipe's time frame, a data request's): a larger time frame leaves
# as several consecutive arrays, so that an array and its JSON stay within a board's largest
# free block.
MAX_FRAME_VALUES = 256 if MICROPYTHON else 65536
# Values per array a pipe sends on a new connection until the receiver says how many it takes
# ({"frame-values": N}: a board does, at once) or acknowledges without saying (it takes
# MAX_FRAME_VALUES): a board's own limit, so that a backlog replayed by a PC to a board that
# has just restarted, or is short of heap, comes as arrays a board can decode (a 16 KB array
# of thousands of values needs a block of twice that once decoded).
FIRST_FRAME_VALUES = 256

_SEP = (",", ":")

# Deepest nesting of arrays and objects a frame may hold (a data message with a list value is
# depth 2). A peer that sends thousands of '[' would otherwise run CPython's decoder into its
# recursion limit and fill a board's heap with nested lists; nothing sensormesh sends comes
# near this depth.
MAX_DEPTH = 32

# What one array or object of a frame may take once MicroPython has built it, times four: a
# frame whose containers could take a quarter of the free heap has its depth read from the
# bytes before it is parsed (64 bytes: a 64-bit list with its first item slots).
_CONTAINER_BYTES = const(256)


class ProtocolError(Exception):
    """The peer sent something that is not a valid sensormesh frame. The message says what."""


# -- JSON --------------------------------------------------------------------------------------
# MicroPython's json is the only choice on a board. CPython uses msgspec when it is installed
# (the standard module otherwise): that half of this module is cpython_json.py's, which a board
# never loads. Imported last (the end of this module), it adds its names here: use_json and
# JSON_BACKEND (the implementation in use), dumps and loads, encode_into (whole frames into one
# buffer, as CPython's connections send them) and Decoder.pending; its notes say
# how every path reads and writes the same values. SENSORMESH_JSON=stdlib in the environment (or
# use_json("stdlib")) turns the fast path off. (A branch a board never takes would still be
# loaded with this module: its code and names in a board's heap.)
if MICROPYTHON:
    def _text(msg):
        """A message's JSON text: a str, whose UTF-8 bytes (memoryview(text)) are its payload."""
        t = type(msg)
        if t is not dict and t is not list:
            raise ProtocolError(_refused().not_a_message(msg))
        text = json.dumps(msg, separators=_SEP)
        # MicroPython's json writes nan/inf as bare words, which is not JSON. Only when such a
        # word appears at all do we pay for a full check by parsing the output back.
        if "nan" in text or "inf" in text:
            try:
                json.loads(text)
            except ValueError:
                raise ProtocolError(_refused().not_json(msg))
        return text

    def dumps(msg):
        """Serialise a message to its UTF-8 JSON payload (no length prefix)."""
        return _text(msg).encode()

    def _payload(msg):
        # a view of the text's bytes: a frame's payload without a copy of it
        return memoryview(_text(msg))

    def loads(payload):
        """A frame's payload parsed (the bytes as they are, without a text copy of them)."""
        try:
            return json.loads(payload)
        except (ValueError, RuntimeError, MemoryError) as e:
            # not UTF-8, not JSON, too deep for the parser or for the heap: refused.py says which
            raise ProtocolError(_refused().unreadable(payload, e))


def encode(msg):
    """One whole frame for a message: length prefix plus payload."""
    payload = dumps(msg)
    return struct.pack("!I", len(payload)) + payload


# A data message larger than the peer's frame limit is cut into frames by split.py, loaded
# only for such a message (and forgotten after it on a board running .mpy files).
def payloads(msg, max_frame=MIN_MAX_FRAME):
    """The payload(s) for msg, split like encode_into splits them; a list of bytes-like (on
    MicroPython a frame's payload is a view of its JSON text, not a copy of it)."""
    out = [_payload(msg)]
    if len(out[0]) <= max_frame:
        return out
    out[0] = bytes(out[0])      # (MicroPython: the text's bytes, which split.py searches)
    from sensormesh.device import split   # oversized messages only (split.py)
    out = split.payloads(msg, out, max_frame)   # takes the payload out of the list: freed once cut
    forget(split)
    return out


def _refused():
    """refused.py, which says why a frame or message is refused and checks rare frames; forgotten
    at once (its code is freed once the caller is done with it)."""
    from sensormesh.device import refused
    forget(refused)
    return refused


def decode_payload(payload):
    """Parse one frame payload (bytes) into a dict or list, or raise ProtocolError."""
    if type(payload) is memoryview:
        payload = bytes(payload)
    # Only a frame with more than MAX_DEPTH brackets can be too deep: others skip the walk.
    # (Every path: msgspec, the standard module and MicroPython's json accept deeper frames.)
    opens = payload.count(b"[") + payload.count(b"{")
    if MICROPYTHON and opens > MAX_DEPTH and opens * _CONTAINER_BYTES > gc.mem_free():
        # Built, its arrays and objects could take a quarter of the free heap or more: read
        # the depth from the bytes first (refused.check), so a deep frame never fills the heap.
        # (The free heap is asked only then: gc.mem_free() walks the heap's whole allocation
        # table.)
        _refused().check(payload, MAX_DEPTH)
    msg = loads(payload)
    if opens > MAX_DEPTH:
        check_depth(msg)
    t = type(msg)
    if t is not dict and t is not list:
        raise ProtocolError(_refused().not_a_container(msg))
    return msg


def check_depth(msg, limit=MAX_DEPTH):
    """Raise ProtocolError if msg nests lists/dicts deeper than limit (iterative: no recursion).
    (Data messages of many values pass here often: it stays resident.)"""
    todo = [(msg, 1)]
    while todo:
        v, d = todo.pop()
        if d > limit:
            raise ProtocolError(_refused().too_deep(limit))
        if type(v) is dict:
            v = v.values()
        elif type(v) is not list:
            continue
        for x in v:
            t = type(x)
            if t is list or t is dict:
                todo.append((x, d + 1))


# A decoder drops the frames it has returned from the front of its buffer once they take more
# than this. A board keeps the buffer short: a reader that stays behind a fast sender never ends a
# read on a frame boundary, and its buffer would otherwise grow by every frame read.
_COMPACT_AT = 2048 if MICROPYTHON else 65536


class Decoder:
    """Turns a byte stream into messages.

    feed(data) stores bytes; next() returns the next complete message or None when more bytes
    are needed. A frame whose length exceeds max_frame raises ProtocolError as soon as its
    header is seen, before its payload is buffered. After a ProtocolError the stream is out of
    step and the connection should be closed; the decoder stays broken.
    """

    _error = None    # the ProtocolError once broken (set on the decoder only then)

    def __init__(self, max_frame=DEFAULT_MAX_FRAME):
        self.max_frame = max_frame
        self._buf = bytearray()
        self._pos = 0
        self._need = -1  # payload length of the frame being read, -1 while reading a header

    def feed(self, data):
        if self._error:
            raise self._error
        self._buf += data
        # Reject an oversized length the moment its header is complete: we never store more
        # than one header's worth past the limit.
        if self._need < 0 and len(self._buf) - self._pos >= _HEADER_SIZE:
            self._read_header()

    def _read_header(self):
        n = struct.unpack_from("!I", self._buf, self._pos)[0]
        if n > self.max_frame:
            raise self.broken(_refused().too_large(n, self.max_frame))
        self._need = n
        self._pos += _HEADER_SIZE

    def broken(self, text):
        """Drop what is buffered and stay broken (the stream is out of step): the error."""
        self._error = ProtocolError(text)
        self._buf = bytearray()
        self._pos = 0
        return self._error

    def next_payload(self, view=False):
        """The next complete frame's payload bytes, or None if more bytes are needed. view: a
        memoryview of them in the decoder's buffer instead of a copy, to be read before the
        next feed()."""
        if self._error:
            raise self._error
        buf = self._buf
        if self._need < 0:
            if len(buf) - self._pos < _HEADER_SIZE:
                return None
            self._read_header()
        end = self._pos + self._need
        if len(buf) < end:
            return None
        payload = memoryview(buf)[self._pos:end]
        if not view:
            payload = bytes(payload)   # one copy (a bytearray slice would be a second)
        self._need = -1
        if end == len(buf):
            self._buf = bytearray()
            self._pos = 0
        elif end > _COMPACT_AT:
            self._buf = buf[end:]
            self._pos = 0
        else:
            self._pos = end
        return payload

    def next(self):
        """The next complete message, or None if more bytes are needed."""
        payload = self.next_payload()
        if payload is None:
            return None
        try:
            return decode_payload(payload)
        except ProtocolError as e:
            raise self.broken(e.args[0])

    def close(self):
        """Call at end of stream: raises ProtocolError if a frame was cut off."""
        left = len(self._buf) - self._pos
        if left or self._need >= 0:
            raise self.broken(_refused().cut_off(left, self._need))


if not MICROPYTHON:
    from sensormesh.device import cpython_json   # CPython's half of this module (see "JSON" above)
    cpython_json.add_to(globals())
