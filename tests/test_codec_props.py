"""Property tests for the codec: round trips, and arbitrary bytes never raise anything else."""
import struct

from hypothesis import given, settings, strategies as st

from sensormesh.device import codec
from sensormesh.device.codec import Decoder, ProtocolError

json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-2**53, 2**53),
                      st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20))
json_value = st.recursive(json_leaf, lambda inner: st.one_of(
    st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=8), inner, max_size=5)), max_leaves=20)
message = st.one_of(st.lists(json_value, max_size=8), st.dictionaries(st.text(max_size=8), json_value, max_size=5))


def drain(d):
    out = []
    while True:
        m = d.next()
        if m is None:
            return out
        out.append(m)


@given(st.lists(message, max_size=6), st.data())
def test_round_trip_with_arbitrary_splits(msgs, data):
    stream = b"".join(codec.encode(m) for m in msgs)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    d = Decoder()
    got = []
    prev = 0
    for c in cuts + [len(stream)]:
        d.feed(stream[prev:c])
        got += drain(d)
        prev = c
    d.close()
    assert got == msgs


@settings(max_examples=400)
@given(st.binary(max_size=300), st.integers(1, 64))
def test_arbitrary_bytes_raise_only_protocol_error(blob, chunk):
    d = Decoder(256)
    try:
        for i in range(0, len(blob), chunk):
            d.feed(blob[i:i + chunk])
            drain(d)
        d.close()
    except ProtocolError:
        pass


@settings(max_examples=300)
@given(message, st.integers(0, 200), st.binary(min_size=1, max_size=4))
def test_mutated_frames_raise_only_protocol_error(msg, pos, junk):
    b = bytearray(codec.encode(msg))
    pos = pos % (len(b) + 1)
    b[pos:pos + len(junk)] = junk
    d = Decoder(4096)
    try:
        d.feed(bytes(b))
        drain(d)
        d.close()
    except ProtocolError:
        pass


@given(st.integers(257, 2**32 - 1))
def test_length_over_limit_refused_from_header_alone(n):
    d = Decoder(256)
    try:
        d.feed(struct.pack("!I", n))
    except ProtocolError as e:
        assert str(n) in str(e)
    else:
        raise AssertionError("accepted length %d" % n)


# -- the fast JSON path (msgspec) and the standard library: same values, same refusals -----------
import contextlib  # noqa: E402
import math  # noqa: E402

import pytest  # noqa: E402

BACKENDS = ["stdlib", "msgspec"]


@contextlib.contextmanager
def backend(name):
    old = codec.use_json(name)
    try:
        yield
    finally:
        codec.use_json(old)


def test_msgspec_is_the_default_on_cpython():
    pytest.importorskip("msgspec")
    import os
    if os.environ.get("SENSORMESH_JSON") != "stdlib":
        assert codec.JSON_BACKEND == "msgspec"


any_int = st.integers()   # beyond 64 bits too: msgspec hands those to the standard library
any_float = st.floats()   # NaN and infinities included
wide_leaf = st.one_of(st.none(), st.booleans(), any_int, any_float, st.text(max_size=12))
wide_value = st.recursive(wide_leaf, lambda inner: st.one_of(
    st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=6), inner, max_size=4)), max_leaves=25)
wide_message = st.one_of(st.lists(wide_value, max_size=10), st.dictionaries(st.text(max_size=6), wide_value, max_size=5))


def _has_nonfinite(v):
    if type(v) is float:
        return not math.isfinite(v)
    if type(v) is list:
        return any(_has_nonfinite(x) for x in v)
    if type(v) is dict:
        return any(_has_nonfinite(x) for x in v.values())
    return False


def _outcome(f, *args):
    try:
        return ("ok", f(*args))
    except ProtocolError as e:
        return ("error", type(e))


def _on_both(f, arg):
    """f(arg) with each JSON path: {path: ("ok", result) or ("error", ProtocolError)}."""
    got = {}
    for name in BACKENDS:
        with backend(name):
            got[name] = _outcome(f, arg)
    assert got["stdlib"][0] == got["msgspec"][0], (arg, got)
    return got


def _same(a, b):
    # NaN != NaN: compare through repr of the structure where floats are involved
    return a == b or repr(a) == repr(b)


@settings(max_examples=400)
@given(wide_message)
def test_fast_path_and_fallback_encode_the_same_values_and_refuse_the_same(msg):
    pytest.importorskip("msgspec")
    got = _on_both(codec.dumps, msg)
    if _has_nonfinite(msg):
        assert got["stdlib"][0] == "error"
        return
    assert got["stdlib"][0] == "ok"
    # bytes may differ (1e20 vs 1e+20), values may not: each side reads both the same
    for name in BACKENDS:
        with backend(name):
            a = codec.decode_payload(got["stdlib"][1])
            b = codec.decode_payload(got["msgspec"][1])
        assert _same(a, msg) and _same(b, msg), (name, msg, a, b)


json_text = st.one_of(
    st.builds(lambda m: codec.encode(m)[4:].decode(), message),
    st.text(alphabet='[]{},:"\\0123456789.eE+-truefalsnNaIiy \u00e9', max_size=40),
    st.sampled_from(["[NaN]", "[Infinity]", "[-Infinity]", "[1e400]", "[-1e400]", "[1" + "0" * 400 + ".0]",
                     "[18446744073709551616]", "[-9223372036854775809]", '["\\ud800"]', '{"a":1,"a":2}',
                     "[1,]", "[01]", "[.5]", " [1] ", "[1]\n", "\ufeff[1]", "[-0]", "[-0.0]", "[1E5]"]))


@settings(max_examples=500)
@given(json_text)
def test_fast_path_and_fallback_decode_the_same(text):
    pytest.importorskip("msgspec")
    data = text.encode("utf-8", "surrogatepass")
    got = _on_both(codec.decode_payload, data)
    if got["stdlib"][0] == "ok":
        a, b = got["stdlib"][1], got["msgspec"][1]
        assert _same(a, b) and repr(a) == repr(b), (text, a, b)


@settings(max_examples=60)
@given(st.binary(max_size=200))
def test_fast_path_and_fallback_agree_on_arbitrary_bytes(blob):
    pytest.importorskip("msgspec")
    got = _on_both(codec.decode_payload, blob)
    if got["stdlib"][0] == "ok":
        assert repr(got["stdlib"][1]) == repr(got["msgspec"][1])


@pytest.mark.parametrize("name", BACKENDS)
@settings(max_examples=150)
@given(st.lists(json_value, min_size=1, max_size=120), st.integers(16, 600))
def test_split_once_within_limit_on_both_paths(name, values, limit):
    pytest.importorskip("msgspec")
    with backend(name):
        buf = bytearray()
        try:
            codec.encode_into(buf, values, limit)
        except ProtocolError as e:
            assert "single value" in str(e)
            # the value as the whole message was written: a message holding null is written by
            # the standard module (see codec.dumps), whose floats can be longer (1e+38, not 1e38)
            with backend("stdlib"):
                longest = max(len(codec.dumps([v])) - 2 for v in values)
            assert longest > limit - 2, (longest, limit)
            return
        parts = codec.payloads(values, limit)
    pos = 0
    sizes = []
    while pos < len(buf):
        n = struct.unpack_from("!I", buf, pos)[0]
        sizes.append(n)
        pos += 4 + n
    assert sizes == [len(p) for p in parts] and max(sizes) <= limit
    d = Decoder(limit)
    d.feed(bytes(buf))
    out = []
    for m in drain(d):
        out += m
    assert out == values


odd_leaf = st.one_of(st.builds(set, st.lists(st.integers(-1000, 1000), max_size=4)),
                     st.builds(frozenset, st.lists(st.integers(-1000, 1000), max_size=4)),
                     st.binary(max_size=12), st.builds(bytearray, st.binary(max_size=6)))


@settings(max_examples=200)
@given(st.lists(st.one_of(odd_leaf, json_leaf), min_size=1, max_size=8))
def test_sets_and_bytes_are_written_alike_on_both_paths_with_null_beside_them(values):
    # msgspec writes a set as an array and bytes as base64 text; a message holding a null goes
    # the standard module's way, which must write them the same, not refuse the whole array.
    pytest.importorskip("msgspec")
    for msg in (values, values + [None]):
        got = _on_both(codec.dumps, msg)
        assert got["stdlib"] == got["msgspec"] or _same(
            codec.decode_payload(got["stdlib"][1]), codec.decode_payload(got["msgspec"][1])), (msg, got)
        assert got["stdlib"][0] == "ok", (msg, got)
