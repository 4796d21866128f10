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


@given(st.lists(st.integers(), min_size=1, max_size=400), st.integers(64, 512))
def test_split_data_keeps_every_value_in_order(values, limit):
    buf = bytearray()
    try:
        codec.encode_into(buf, values, limit)
    except ProtocolError:
        return  # a single value larger than the limit: refused, not truncated
    d = Decoder(limit)
    d.feed(bytes(buf))
    out = []
    for m in drain(d):
        out += m
    assert out == values
