# The wire format, sans-IO: bytes in, messages out; messages in, bytes out.
#
# A frame is a 4-byte big-endian unsigned length (struct '!I') followed by that many bytes of
# UTF-8 JSON. A JSON object is a control message, a JSON array is a data message; any other
# top-level value is a protocol error. No sockets and no clock here, so everything above this
# module can be tested without a network and the decoder can be fuzzed byte by byte.
import json
import struct

from sensormesh.device.compat import MICROPYTHON

HEADER_SIZE = 4

# Largest payload a receiver buffers. The length prefix is checked against it before a single
# payload byte is stored, so a peer cannot make us allocate more than this per connection.
# MicroPython: an ESP32 has ~100 KB of heap and its largest free block is a few KB once WiFi
# runs; 16 KiB is the most a running board can reliably hold twice (buffer + decoded copy).
# CPython: 4 MiB holds a 10 ms time frame of a million-values-per-second stream many times over.
DEFAULT_MAX_FRAME = 16 * 1024 if MICROPYTHON else 4 * 1024 * 1024

# Every implementation accepts frames at least this large. A sender that does not know its
# peer's limit (the peer did not send "max-frame") keeps each frame within it.
MIN_MAX_FRAME = 16 * 1024

_SEP = (",", ":")


class ProtocolError(Exception):
    """The peer sent something that is not a valid sensormesh frame. The message says what."""


def _check_finite(payload, msg):
    # MicroPython's json writes nan/inf as bare words, which is not JSON. Only when such a
    # word appears at all do we pay for a full check by parsing the output back.
    if b"nan" in payload or b"inf" in payload:
        try:
            json.loads(payload)
        except ValueError:
            raise ProtocolError("value is not JSON-serialisable (NaN or infinity): %r" % (msg,))


def dumps(msg):
    """Serialise a message to its UTF-8 JSON payload (no length prefix)."""
    if MICROPYTHON:
        t = type(msg)
        if t is not dict and t is not list:
            raise ProtocolError("a message must be a dict (control) or list (data), not %s" % t.__name__)
        payload = json.dumps(msg, separators=_SEP).encode()
        _check_finite(payload, msg)
        return payload
    if not isinstance(msg, (dict, list)):
        raise ProtocolError("a message must be a dict (control) or list (data), not %s" % type(msg).__name__)
    try:
        return json.dumps(msg, separators=_SEP, allow_nan=False, ensure_ascii=False).encode()
    except (TypeError, ValueError) as e:
        raise ProtocolError("message is not JSON-serialisable: %s" % e)


def encode(msg):
    """One whole frame for a message: length prefix plus payload."""
    payload = dumps(msg)
    return struct.pack("!I", len(payload)) + payload


def encode_into(buf, msg, max_frame=MIN_MAX_FRAME):
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
    if type(msg) is not list:
        raise ProtocolError("control message of %d bytes exceeds the frame limit of %d" % (n, max_frame))
    if len(msg) < 2:
        raise ProtocolError("a single value of %d bytes exceeds the frame limit of %d" % (n, max_frame))
    half = len(msg) // 2
    encode_into(buf, msg[:half], max_frame)
    encode_into(buf, msg[half:], max_frame)


def payloads(msg, max_frame=MIN_MAX_FRAME):
    """The payload(s) for msg, split like encode_into splits them; a list of bytes."""
    payload = dumps(msg)
    n = len(payload)
    if n <= max_frame:
        return [payload]
    if type(msg) is not list:
        raise ProtocolError("control message of %d bytes exceeds the frame limit of %d" % (n, max_frame))
    if len(msg) < 2:
        raise ProtocolError("a single value of %d bytes exceeds the frame limit of %d" % (n, max_frame))
    payload = None
    half = len(msg) // 2
    return payloads(msg[:half], max_frame) + payloads(msg[half:], max_frame)


def decode_payload(payload):
    """Parse one frame payload (bytes) into a dict or list, or raise ProtocolError."""
    try:
        text = payload.decode()
    except UnicodeError:
        raise ProtocolError("frame payload is not valid UTF-8")
    try:
        msg = json.loads(text)
    except ValueError as e:
        raise ProtocolError("frame payload is not valid JSON: %s" % (e.args[0] if e.args else e))
    t = type(msg)
    if t is not dict and t is not list:
        raise ProtocolError("frame holds a JSON %s; a message must be an object (control) or an array (data)"
                            % _json_kind(msg))
    return msg


def _json_kind(v):
    if v is None:
        return "null"
    if v is True or v is False:
        return "boolean"
    if type(v) is str:
        return "string"
    return "number"


class Decoder:
    """Turns a byte stream into messages.

    feed(data) stores bytes; next() returns the next complete message or None when more bytes
    are needed. A frame whose length exceeds max_frame raises ProtocolError as soon as its
    header is seen, before its payload is buffered. After a ProtocolError the stream is out of
    step and the connection should be closed; the decoder stays broken.
    """

    def __init__(self, max_frame=DEFAULT_MAX_FRAME):
        self.max_frame = max_frame
        self._buf = bytearray()
        self._pos = 0
        self._need = -1  # payload length of the frame being read, -1 while reading a header
        self._error = None

    def feed(self, data):
        if self._error:
            raise self._error
        self._buf += data
        # Reject an oversized length the moment its header is complete: we never store more
        # than one header's worth past the limit.
        if self._need < 0 and len(self._buf) - self._pos >= HEADER_SIZE:
            self._read_header()

    def _read_header(self):
        n = struct.unpack_from("!I", self._buf, self._pos)[0]
        if n > self.max_frame:
            self._fail("frame of %d bytes exceeds the limit of %d bytes" % (n, self.max_frame))
        self._need = n
        self._pos += HEADER_SIZE

    def _fail(self, text):
        self._error = ProtocolError(text)
        self._buf = bytearray()
        self._pos = 0
        raise self._error

    def next_payload(self):
        """The next complete frame's payload bytes, or None if more bytes are needed."""
        if self._error:
            raise self._error
        buf = self._buf
        if self._need < 0:
            if len(buf) - self._pos < HEADER_SIZE:
                return None
            self._read_header()
        end = self._pos + self._need
        if len(buf) < end:
            return None
        payload = bytes(buf[self._pos:end])
        self._need = -1
        if end == len(buf):
            self._buf = bytearray()
            self._pos = 0
        elif end > 65536:
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
            self._fail(e.args[0])

    def pending(self):
        """Bytes received but not yet returned as a message (a truncated frame at EOF)."""
        return len(self._buf) - self._pos + (HEADER_SIZE if self._need >= 0 else 0)

    def close(self):
        """Call at end of stream: raises ProtocolError if a frame was cut off."""
        left = len(self._buf) - self._pos
        if self._need >= 0:
            self._fail("stream ended inside a frame: %d of %d payload bytes received" % (left, self._need))
        if left:
            self._fail("stream ended inside a frame header: %d of 4 bytes received" % left)
