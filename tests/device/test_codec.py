# Codec tests that run on CPython (pytest) and on the MicroPython unix port (tests/mprun.py).
import struct

from sensormesh.device import codec
from sensormesh.device.codec import Decoder, ProtocolError


def frame(payload):
    return struct.pack("!I", len(payload)) + payload


def encode_into(buf, msg, limit):
    # the frames a connection sends for msg: on CPython codec.encode_into's, appended to one
    # buffer; on MicroPython (which has no encode_into) those of codec.payloads
    if hasattr(codec, "encode_into"):
        codec.encode_into(buf, msg, limit)
        return
    for p in codec.payloads(msg, limit):
        buf += frame(bytes(p))


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


def test_buffer_stays_short_when_reads_never_end_on_a_frame_boundary():
    # A reader behind a fast sender: every read ends inside a frame, so the decoder's buffer is
    # never empty. It must still drop what it returned, not grow by every frame read.
    frame = codec.encode([1.5, 2.5, 3.5, "x" * 40])
    data = frame * 2000                      # about 110 KB in all
    d = Decoder()
    got = 0
    longest = 0
    piece = len(frame) * 3 + 7               # never a multiple of the frame's length
    for i in range(0, len(data), piece):
        d.feed(data[i:i + piece])
        while d.next() is not None:
            got += 1
        longest = max(longest, len(d._buf))
    assert got == 2000
    assert longest <= codec._COMPACT_AT + 2 * piece, longest


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
    encode_into(buf, values, 1024)
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
        encode_into(bytearray(), {"x": "y" * 2000}, 1024)
        raise AssertionError("expected ProtocolError")
    except ProtocolError as e:
        assert "control message" in e.args[0]


# -- splitting data messages to a frame limit (both interpreters) ---------------------------------
import random   # noqa: E402  (MicroPython has seed, randint, choice, random)

_TRICKY = ("", "a", ",", "[", "]", "{", "}", "\"", "\\", "a,b", "[1,2]", "{\"k\":1}", "\u00e9", "\u20ac,", "null", "nan", "inf")


def _value(rnd, depth=0):
    k = rnd.randint(0, 9 if depth < 2 else 6)
    if k == 0:
        return rnd.randint(-1000, 1000)
    if k == 1:
        return rnd.randint(-2**62, 2**62)
    if k == 2:
        return rnd.randint(-2**20, 2**20) / 64.0   # exact in binary: the same float on every port
    if k == 3:
        return rnd.choice((None, True, False))
    if k == 4:
        return rnd.choice(_TRICKY) + str(rnd.randint(0, 99))
    if k in (5, 6):
        return rnd.randint(0, 10**6)
    if k == 7:
        return [_value(rnd, depth + 1) for _ in range(rnd.randint(0, 4))]
    d = {}
    for _ in range(rnd.randint(0, 3)):
        d[rnd.choice(_TRICKY) + "k"] = _value(rnd, depth + 1)
    return d


def _frames_of(values, limit):
    """Every frame encode_into makes for values, and payloads() agrees with it."""
    buf = bytearray()
    encode_into(buf, values, limit)
    d = Decoder(limit)
    d.feed(bytes(buf))
    got = []
    sizes = []
    pos = 0
    while pos < len(buf):
        n = struct.unpack_from("!I", buf, pos)[0]
        sizes.append(n)
        pos += 4 + n
    while True:
        m = d.next()
        if m is None:
            break
        got.append(m)
    d.close()
    parts = codec.payloads(values, limit)
    assert [len(p) for p in parts] == sizes, (sizes, [len(p) for p in parts])
    assert [codec.decode_payload(bytes(p)) for p in parts] == got
    return got, sizes


def _largest_value(values):
    n = 0
    for v in values:
        s = len(codec.dumps([v])) - 2
        if s > n:
            n = s
    return n


def test_split_property_frames_within_limit_values_complete_in_order():
    rnd = random.Random(1234) if hasattr(random, "Random") else random
    if not hasattr(random, "Random"):
        random.seed(1234)
    for case in range(150):
        values = [_value(rnd) for _ in range(rnd.randint(0, 60))]
        if case % 3 == 0:   # numbers only: cut in the encoded bytes
            values = [rnd.randint(-10**9, 10**9) if rnd.randint(0, 1) else rnd.randint(0, 4096) / 8.0
                      for _ in range(rnd.randint(1, 400))]
        limit = rnd.randint(8, 700)
        try:
            frames, sizes = _frames_of(values, limit)
        except ProtocolError as e:
            assert "single value" in e.args[0], e.args[0]
            assert _largest_value(values) > limit - 2, (values, limit)
            continue
        assert max(sizes or [0]) <= limit, (sizes, limit)
        out = []
        for f in frames:
            assert type(f) is list and (f or not values)
            out += f
        assert out == values, (values, limit)
        whole = len(codec.dumps(values))
        if whole <= limit:
            assert len(frames) == 1


def test_split_packs_frames_full():
    # greedy packing: no two neighbouring frames would have fitted in one
    values = list(range(5000))
    _, sizes = _frames_of(values, 1000)
    for i in range(len(sizes) - 1):
        assert sizes[i] + sizes[i + 1] - 1 > 1000, sizes
    values = [{"t": i, "s": "a,]" * (i % 5)} for i in range(500)]
    _, sizes = _frames_of(values, 700)
    for i in range(len(sizes) - 1):
        assert sizes[i] + sizes[i + 1] - 1 > 700, sizes


def test_split_single_value_too_large():
    for values in (["x" * 100, "y"], [10**30, 1], [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12], 1]):
        try:
            encode_into(bytearray(), values, 20)
            raise AssertionError("no ProtocolError for %r" % (values,))
        except ProtocolError as e:
            assert "single value" in e.args[0] and "20" in e.args[0], e.args[0]


# -- NaN and infinity: the same on every path -----------------------------------------------------
def test_nan_and_infinity_refused_when_encoding():
    nan = float("nan")
    inf = float("inf")
    for msg in ([nan], [1, inf], [-inf], {"v": nan}, [{"a": [1, inf]}], [None, nan], {"x": None, "y": [-inf]}):
        for f in (codec.encode, codec.dumps, lambda m: encode_into(bytearray(), m, 1 << 20),
                  lambda m: codec.payloads(m, 1 << 20)):
            try:
                f(msg)
                raise AssertionError("encoded %r" % (msg,))
            except ProtocolError as e:
                assert "NaN" in e.args[0] or "serialisable" in e.args[0], e.args[0]
    # words that look like them are plain strings
    msg = ["nan", "inf", {"nan": "Infinity"}, None]
    assert codec.decode_payload(codec.dumps(msg)) == msg


def test_nan_and_infinity_literals_refused_when_decoding():
    for text in (b"[NaN]", b"[Infinity]", b"[-Infinity]", b"[1,NaN]", b'{"a":Infinity}', b"[nan]", b"[inf]"):
        try:
            codec.decode_payload(text)
            raise AssertionError("decoded %r" % (text,))
        except ProtocolError as e:
            assert "not valid JSON" in e.args[0], e.args[0]


def test_number_beyond_double_range_reads_as_infinity():
    got = codec.decode_payload(b"[1e400,-1e400,1.5]")
    assert got[0] > 1e308 and got[1] < -1e308 and got[2] == 1.5
    try:
        codec.dumps(got)
        raise AssertionError("re-encoded infinity")
    except ProtocolError:
        pass


def test_a_deep_frame_is_refused_from_its_bytes_before_a_board_builds_it():
    # On a board, a frame whose containers could fill a good part of the heap has its depth read
    # from the bytes first (under a board's heap: tests/test_heap.py). CPython parses and then
    # checks; both name the depth.
    from sensormesh.device import refused
    for payload in (b"[" * 4000, b"[" * 2000 + b"]" * 2000, b'{"hello":' * 400 + b"1" + b"}" * 400):
        try:
            codec.decode_payload(payload)
            raise AssertionError("decoded a frame %d levels deep" % payload.count(b"["))
        except ProtocolError as e:
            m = e.args[0]
        # (a roomy MicroPython heap parses the unbalanced one to its end: not valid JSON)
        assert "deeper than %d levels" % codec.MAX_DEPTH in m or (payload[-1] == 91 and "not valid JSON" in m), m
    # the byte reading itself: strings (with escaped quotes) do not count, depth 32 passes
    ok = codec.MAX_DEPTH
    refused.check(b"[" * ok + b"]" * ok, ok)
    tricky = ["[[[[\\", "\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\"", {"k": "{{{{\\\""}]
    refused.check(codec.dumps(tricky), 2)      # strings with escaped quotes and backslashes
    for bad in (b"[" * (ok + 1), b'{"a":' * (ok + 1), codec.dumps(["\\\"", 1])[:-1] + b"," + b"[" * ok):
        try:
            refused.check(bad, ok)
            raise AssertionError("passed %r" % bad[:40])
        except ProtocolError as e:
            assert "deeper than %d levels" % ok in e.args[0]


def test_nesting_is_bounded():
    # thousands of '[' (unbalanced and balanced) are a protocol error, not a crash
    m = expect_error(frame(b"[" * 4000), "", max_frame=16384)   # MicroPython: cut off, not valid JSON
    assert "deeper than" in m or "not valid JSON" in m, m
    expect_error(frame(b"[" * 4000 + b"]" * 4000), "deeper than", max_frame=16384)
    deep = codec.MAX_DEPTH + 1
    expect_error(frame(b"[" * deep + b"]" * deep), "deeper than %d levels" % codec.MAX_DEPTH)
    expect_error(frame(b'{"a":' * deep + b"1" + b"}" * deep), "deeper than")
    # exactly MAX_DEPTH levels is fine, and brackets inside strings do not count
    ok = codec.MAX_DEPTH
    d = Decoder()
    d.feed(frame(b"[" * ok + b"]" * ok))
    d.feed(codec.encode(["[" * 100, {"k": "{" * 100}]))
    d.feed(codec.encode([[i, [i]] for i in range(200)]))   # many shallow lists: no error
    v = d.next()
    for _ in range(ok - 1):
        v = v[0]
    assert v == []
    assert d.next() == ["[" * 100, {"k": "{" * 100}]
    assert len(d.next()) == 200
