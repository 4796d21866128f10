"""A live worker process (CPython or MicroPython) against a CPython client on real sockets.

Frame timing is checked against the clock with tolerances: the machine running CI is shared,
so intervals are compared by their median, and counts within a margin.
"""
import socket
import statistics
import struct
import time

import pytest

from sensormesh.device import codec
from sensormesh.client import Client, DeviceError

INTERPS = ["cpython", "micropython"]


def frames(addr, body, n, timeout=20.0):
    """Receive n data messages; returns [(arrival seconds, message)]."""
    c = Client(addr, timeout=timeout)
    body = dict(body)
    body.setdefault("max-frame", codec.DEFAULT_MAX_FRAME)
    c.send({"data-request": body})
    out = []
    for msg in c.messages():
        out.append((time.monotonic(), msg))
        if len(out) >= n:
            break
    c.close()
    return out


def intervals(got):
    return [b[0] - a[0] for a, b in zip(got, got[1:])]


@pytest.fixture(params=INTERPS)
def worker(request, devices, port):
    interp = request.param
    devices(interp, ["--port", str(port), "--name", "w", "--sensors",
                     "counter@0,slow=counter@10,c100=counter@100,clk=clock@1000,co2@20,dht11"])
    return "127.0.0.1:%d" % port


def test_time_frame_zero_sends_each_value_alone(worker):
    got = frames(worker, {"sensor": "slow"}, 8)
    assert all(len(m) == 1 for _, m in got)
    vals = [m[0] for _, m in got]
    assert vals == list(range(vals[0], vals[0] + 8))
    med = statistics.median(intervals(got))
    assert 0.06 < med < 0.14, med  # 10 Hz sensor: one value every 100 ms


def test_time_frame_gathers_what_the_sensor_gives(worker):
    got = frames(worker, {"sensor": "c100", "time-frame": 200}, 6)
    sizes = [len(m) for _, m in got[1:]]
    assert 14 <= statistics.median(sizes) <= 26, sizes  # 100 Hz * 200 ms = 20
    med = statistics.median(intervals(got))
    assert 0.15 < med < 0.25, med
    allv = [v for _, m in got for v in m]
    assert allv == list(range(allv[0], allv[0] + len(allv)))  # nothing lost, nothing repeated


def test_values_per_frame_exact_and_evenly_spaced(worker):
    got = frames(worker, {"sensor": "clk", "time-frame": 200, "values-per-time-frame": 5}, 6)
    assert all(len(m) == 5 for _, m in got), [len(m) for _, m in got]
    # evenly spaced: the clock sensor reads the device's microsecond clock; one sample every 40 ms
    gaps = [b - a for _, m in got[1:] for a, b in zip(m, m[1:])]
    assert 30000 <= statistics.median(gaps) <= 50000, gaps
    med = statistics.median(intervals(got))
    assert 0.15 < med < 0.25, med


def test_time_frame_has_precedence_over_value_count(worker):
    # co2 gives 20 values/s; asking 10 per 200 ms frame gets ~4 and the frame still leaves on time
    got = frames(worker, {"sensor": "co2", "time-frame": 200, "values-per-time-frame": 10}, 6)
    sizes = [len(m) for _, m in got[1:]]
    assert all(len(m) < 10 for _, m in got), sizes
    assert 2 <= statistics.median(sizes) <= 6, sizes
    med = statistics.median(intervals(got))
    assert 0.15 < med < 0.25, med


def test_batched_free_running_stream_is_complete(worker):
    got = frames(worker, {"sensor": "counter", "time-frame": 10}, 50)
    allv = [v for _, m in got for v in m]
    assert len(allv) > 1000
    assert allv == list(range(allv[0], allv[0] + len(allv)))


def test_simulated_dht11_format(worker):
    got = frames(worker, {"sensor": "dht11"}, 1, timeout=10)
    v = got[0][1][0]
    assert set(v) == {"temperature", "humidity"}
    assert isinstance(v["temperature"], int) and 0 <= v["humidity"] <= 100


@pytest.mark.parametrize("interp", INTERPS)
def test_unix_socket(devices, port, tmp_path, interp):
    path = str(tmp_path / "dev.sock")
    p = devices(interp, ["--port", str(port), "--unix", path, "--sensors", "counter@0"])
    p.wait_line("listening on unix")
    got = frames("unix:" + path, {"sensor": "counter", "time-frame": 10}, 5)
    allv = [v for _, m in got for v in m]
    assert allv == list(range(allv[0], allv[0] + len(allv))) and len(allv) > 100


# -- bad input against a live worker --------------------------------------------------------

def raw_exchange(addr, data, timeout=10.0):
    """Send raw bytes; return the messages the device sends before it closes."""
    host, port = addr.split(":")
    s = socket.create_connection((host, int(port)), timeout=timeout)
    s.sendall(data)
    dec = codec.Decoder()
    out = []
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        dec.feed(chunk)
        while True:
            m = dec.next()
            if m is None:
                break
            out.append(m)
    s.close()
    return out


def frame(payload):
    return struct.pack("!I", len(payload)) + payload


BAD = [
    ("invalid json", frame(b"{\"data-request\":"), "protocol", "not valid JSON"),
    ("invalid utf-8", frame(b"[\"\xff\"]"), "protocol", "UTF-8"),
    ("top-level number", frame(b"7"), "protocol", "must be an object"),
    ("oversized length", struct.pack("!I", 0x7FFFFFF0) + b"xx", "protocol", "exceeds the limit"),
    ("unknown sensor", codec.encode({"data-request": {"sensor": "lava"}}), "unknown-sensor", "co2"),
    ("bad type", codec.encode({"data-request": {"sensor": "co2", "time-frame": "fast"}}), "bad-field", "time-frame"),
    ("negative", codec.encode({"data-request": {"sensor": "co2", "values-per-time-frame": -3}}), "bad-field",
     "negative"),
    ("data first", codec.encode([1, 2, 3]), "unexpected-data", "before any request"),
    ("unknown control", codec.encode({"launch": {}}), "unknown-message", "'launch'"),
    ("two keys", codec.encode({"info": {}, "status": {}}), "bad-request", "exactly one key"),
]


@pytest.mark.parametrize("interp", INTERPS)
def test_bad_input_gets_named_error_and_other_stream_continues(devices, port, interp):
    devices(interp, ["--port", str(port), "--sensors", "c100=counter@100,co2"])
    addr = "127.0.0.1:%d" % port
    good = Client(addr, timeout=10)
    good.request_data("c100", 50)
    seen = []
    it = good.messages()
    for _ in range(3):
        seen += next(it)
    for name, data, code, words in BAD:
        got = raw_exchange(addr, data)
        assert got, name
        err = got[-1].get("error") if isinstance(got[-1], dict) else None
        assert err and err["code"] == code, (name, got)
        assert words in err["message"], (name, err)
        # the good stream is still flowing, without gaps
        seen += next(it)
    for _ in range(3):
        seen += next(it)
    assert seen == list(range(seen[0], seen[0] + len(seen)))
    good.close()


@pytest.mark.parametrize("interp", INTERPS)
def test_truncated_frame_then_close_does_not_hurt(devices, port, interp):
    devices(interp, ["--port", str(port), "--sensors", "co2"])
    addr = "127.0.0.1:%d" % port
    host, p = addr.split(":")
    s = socket.create_connection((host, int(p)), timeout=5)
    s.sendall(codec.encode({"info": {}})[:-3])
    s.close()
    c = Client(addr, timeout=10)
    info = c.call({"info": {}})["info"]
    assert "co2" in info["sensors"]
    c.close()


def test_client_sees_device_error():
    with pytest.raises(DeviceError):
        raise DeviceError({"code": "x", "message": "y"})
