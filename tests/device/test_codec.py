# Codec tests that run on CPython (pytest) and on the MicroPython unix port (tests/mprun.py).
import struct

from sensormesh.device import codec
from sensormesh.device.codec import Decoder, ProtocolError


def frame(payload):
    return struct.pack("!I", len(payload)) + payload


def expect_error(data, words, max_frame=1024):
    d = Decoder(max_frame)
    try:
        d.feed(data)
        while d.next() is not None:
            pass
        d.close()
    except ProtocolError as e:
        assert words in e.args[0], (words, e.args[0])
        return e.args[0]
    raise AssertionError("no ProtocolError for %r" % (data,))


def test_round_trip_control_and_data():
    msgs = [{"data-request": {"sensor": "dht11", "time-frame": 1000}}, [1, 2.5, "x", None, True, {"a": [1]}], [], {}]
    d = Decoder()
    for m in msgs:
        d.feed(codec.encode(m))
    for m in msgs:
        assert d.next() == m
    assert d.next() is None
    d.close()


def test_layout_is_length_then_utf8_json():
    b = codec.encode({"a": "\u00e9"})
    assert b[:4] == struct.pack("!I", len(b) - 4)
    assert b[4:].decode() == '{"a":"\u00e9"}'


def test_split_reads_at_every_byte_boundary():
    data = codec.encode({"hello": {}}) + codec.encode([1, 2, 3]) + codec.encode([{"t": 21}])
    for cut in range(len(data) + 1):
        d = Decoder()
        got = []
        for part in (data[:cut], data[cut:]):
            d.feed(part)
            while True:
                m = d.next()
                if m is None:
                    break
                got.append(m)
        assert got == [{"hello": {}}, [1, 2, 3], [{"t": 21}]], cut


def test_byte_by_byte():
    data = codec.encode([1, 2]) * 3
    d = Decoder()
    got = []
    for i in range(len(data)):
        d.feed(data[i:i + 1])
        m = d.next()
        if m is not None:
            got.append(m)
    assert got == [[1, 2]] * 3


def test_oversized_length_rejected_before_payload():
    # Only the header arrives: the decoder must refuse at once, without waiting for the payload.
    msg = expect_error(struct.pack("!I", 5000), "exceeds the limit", max_frame=1024)
    assert "5000" in msg and "1024" in msg


def test_truncated_frame_at_end_of_stream():
    expect_error(frame(b"[1,2,3]")[:-2], "stream ended inside a frame")
    expect_error(b"\x00\x00", "inside a frame header")


def test_invalid_utf8():
    expect_error(frame(b"[\"\xff\xfe\"]"), "not valid UTF-8")


def test_invalid_json():
    expect_error(frame(b"[1,"), "not valid JSON")
    expect_error(frame(b""), "not valid JSON")


def test_top_level_must_be_object_or_array():
    for payload, kind in ((b"42", "number"), (b'"x"', "string"), (b"null", "null"), (b"true", "boolean")):
        m = expect_error(frame(payload), "a message must be an object")
        assert kind in m, m


def test_decoder_stays_broken_after_error():
    d = Decoder(16)
    try:
        d.feed(struct.pack("!I", 100))
        raise AssertionError("expected ProtocolError")
    except ProtocolError:
        pass
    try:
        d.feed(codec.encode([1]))
        raise AssertionError("a broken decoder accepted more bytes")
    except ProtocolError:
        pass


def test_encode_rejects_what_is_not_json():
    for bad in (42, "x", None):
        try:
            codec.encode(bad)
            raise AssertionError("encoded %r" % (bad,))
        except ProtocolError:
            pass
    try:
        codec.encode([float("nan")])
        raise AssertionError("encoded NaN")
    except ProtocolError as e:
        assert "NaN" in e.args[0] or "serialisable" in e.args[0]


def test_large_data_split_to_peer_limit():
    values = list(range(3000))
    buf = bytearray()
    codec.encode_into(buf, values, 1024)
    d = Decoder(1024)
    d.feed(bytes(buf))
    out = []
    frames = 0
    while True:
        m = d.next()
        if m is None:
            break
        frames += 1
        out += m
    assert out == values
    assert frames > 1
    parts = codec.payloads(values, 1024)
    assert len(parts) == frames and all(len(p) <= 1024 for p in parts)


def test_control_message_too_large_for_peer():
    try:
        codec.encode_into(bytearray(), {"x": "y" * 2000}, 1024)
        raise AssertionError("expected ProtocolError")
    except ProtocolError as e:
        assert "control message" in e.args[0]
