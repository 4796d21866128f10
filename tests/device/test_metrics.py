# Device metrics on both interpreters: the {"metrics"} and {"clock"} replies, sampled step times,
# pipe counters and round trips, and origin stamps that reach a sink on another device.
from sensormesh.device import transport
from sensormesh.device.compat import MICROPYTHON, ticks_diff, ticks_us
from sensormesh.device.core import Device
from sensormesh.device.runtime import probe_wiring

from loopkit import Collector, listen

BUSY_US = 2000
# busy(x) waits BUSY_US and keeps how long each call really took (a loaded machine preempts it)
# and whether the device's probe was timing it (the test hands the probe in as `probe`; its
# item 5 says so: probe.py, _ACTIVE)
CODE = {"user": "import time\n"
                "took = []\n"
                "probe = None\n"
                "def busy(x):\n"
                "    t0 = time.ticks_us() if hasattr(time, 'ticks_us') else time.monotonic_ns() // 1000\n"
                "    while True:\n"
                "        t = time.ticks_us() if hasattr(time, 'ticks_us') else time.monotonic_ns() // 1000\n"
                "        d = time.ticks_diff(t, t0) if hasattr(time, 'ticks_diff') else t - t0\n"
                "        if d >= %d:\n"
                "            took.append((d, probe is not None and probe[5]))\n"
                "            return x\n"
                "def double(x):\n"
                "    return x * 2\n"
                "marks = []\n"
                "def mark(x):\n"
                "    marks.append((time.ticks_us() if hasattr(time, 'ticks_us') else time.monotonic_ns() // 1000,\n"
                "                  probe is not None and probe[5]))\n"
                "    return x\n" % BUSY_US}


def control(loop, addr):
    c = Collector()
    conn = transport.dial(loop, addr, c)
    conn.send({"hello": {}})
    return c, conn


def ask(loop, c, conn, msg, key):
    n = len(c.replies(key))
    conn.send(msg)
    assert loop.run_until(lambda: len(c.replies(key)) > n, 5000), c.messages[-3:]
    return c.replies(key)[-1]


def pipeline(loop, count, rate=100):
    a = Device("a", ["counter@0"], loop=loop)
    b = Device("b", [], loop=loop)
    aaddr, baddr = listen(a), listen(b)
    asg_b = {"pipeline": "p", "epoch": 1, "code": CODE, "steps": [
        {"id": "in", "type": "pipe_in", "params": {"edge": "e1"}},
        {"id": "busy", "type": "map", "params": {"fn": "user:busy"}, "inputs": ["in"]},
        {"id": "k", "type": "callback", "params": {"name": "out"}, "inputs": ["busy"]}]}
    asg_a = {"pipeline": "p", "epoch": 1, "code": CODE, "steps": [
        {"id": "s", "type": "source", "params": {"sensor": "counter", "count": count, "rate": rate}},
        {"id": "m", "type": "map", "params": {"fn": "user:double"}, "inputs": ["s"]},
        {"id": "o", "type": "pipe_out", "params": {"edge": "e1", "to": baddr, "time-frame": 0, "peer": "b"},
         "inputs": ["m"]}]}
    ctl_a, ctl_b = deploy_and_start(loop, aaddr, asg_a, baddr, asg_b,
                                    lambda: b.runtime.code["user"].__setitem__("probe", b.runtime.probe))
    return a, b, ctl_a, ctl_b


def deploy_and_start(loop, aaddr, asg_a, baddr, asg_b, deployed_b=None):
    """Deploy b (the receiving end) then a, start them in that order; the two control sessions."""
    cb, connb = control(loop, baddr)
    ca, conna = control(loop, aaddr)
    ask(loop, cb, connb, {"deploy": {"assignment": asg_b}}, "deployed")
    if deployed_b is not None:
        deployed_b()
    ask(loop, ca, conna, {"deploy": {"assignment": asg_a}}, "deployed")
    ask(loop, cb, connb, {"start": {}}, "started")
    ask(loop, ca, conna, {"start": {}}, "started")
    return (ca, conna), (cb, connb)


def delivered(c):
    n = 0
    for d in c.replies("deliver"):
        n += len(d["values"])
    return n


def test_clock_reply_is_the_tick_clock_and_echoes_t0():
    loop = transport.Loop()
    d = Device("c", [], loop=loop)
    c, conn = control(loop, listen(d))
    before = ticks_us()
    r = ask(loop, c, conn, {"clock": {"t0": 12345}}, "clock")
    after = ticks_us()
    assert r["t0"] == 12345
    assert ticks_diff(r["tick_us"], before) >= 0 and ticks_diff(after, r["tick_us"]) >= 0, (before, r, after)
    assert r["period"] == (0 if not MICROPYTHON else time_period())
    d.close()


def time_period():
    import time
    return time.ticks_add(0, -1) + 1


def test_every_metric_present_and_latency_crosses_the_pipe():
    loop = transport.Loop()
    old = probe_wiring.RTT_EVERY, probe_wiring.SAMPLE_MS, probe_wiring.MAX_LATENCY
    probe_wiring.RTT_EVERY, probe_wiring.SAMPLE_MS, probe_wiring.MAX_LATENCY = 5, 2, 100      # sample every value (one each 10 ms), probe round trips
    try:
        a, b, (ca, conna), (cb, connb) = pipeline(loop, 60)
        assert loop.run_until(lambda: delivered(cb) >= 60, 20000), delivered(cb)
        ma = ask(loop, ca, conna, {"metrics": {}}, "metrics")
        mb = ask(loop, cb, connb, {"metrics": {}}, "metrics")
    finally:
        probe_wiring.RTT_EVERY, probe_wiring.SAMPLE_MS, probe_wiring.MAX_LATENCY = old
    for m, name in ((ma, "a"), (mb, "b")):
        assert m["device"] == name
        assert m["interp"] == ("micropython" if MICROPYTHON else "cpython")
        assert type(m["tick_us"]) is int
        assert 0 <= m["loop"]["busy_us"] <= m["loop"]["wall_us"] and m["loop"]["wall_us"] > 0
        if MICROPYTHON:
            mem = m["mem"]
            assert mem["heap_free"] > 0 and mem["heap_alloc"] > 0
            assert 0 < mem["heap_largest"] <= mem["heap_free"], mem
        else:
            assert m["mem"]["rss"] > 1000000 and m["mem"]["cpu_s"] > 0
        assert type(m["latency"]) is list and m["latency_dropped"] == 0
    sa, sb = ma["steps"], mb["steps"]
    assert sa["s"]["out"] == 60 and sa["m"]["in"] == 60 and sa["m"]["out"] == 60 and sa["o"]["in"] == 60
    assert sa["m"]["timed"] > 0 and sa["m"]["time_us"] >= 0
    assert sb["in"]["out"] == 60 and sb["busy"]["in"] == 60 and sb["k"]["in"] == 60
    # the busy map: its own time per value is the time it busy-waited (not the callback's below it)
    took = b.runtime.resolve("user:took")
    assert len(took) == 60 and min(t[0] for t in took) >= BUSY_US
    timed = [t[0] for t in took if t[1]]
    assert len(timed) == sb["busy"]["timed"] >= 5, (len(timed), sb["busy"])   # each value read on time is sampled
    truth = sum(timed) / len(timed)       # what the timed calls really took
    per = sb["busy"]["time_us"] / sb["busy"]["timed"]
    # within 20%, plus one preemption of up to 20 ms between the probe's clock and the map's own
    # spread over the timed calls (a loaded machine may preempt either)
    assert truth * 0.8 <= per <= truth * 1.2 + 20000 / len(timed), (per, truth, sb["busy"])
    # the loop of b was busy at least for the busy-waits
    assert mb["loop"]["busy_us"] >= 60 * BUSY_US * 0.9, mb["loop"]
    po, pi = ma["pipes"]["e1"], mb["pipes"]["e1"]
    assert po["dir"] == "out" and po["peer"] == "b" and po["values"] == 60 and po["frames"] == 60
    assert po["bytes"] > 60 * 4 and po["reconnects"] == 0 and po["queue"] == 0
    assert type(po["rtt_us"]) is int and 0 < po["rtt_us"] < 1000000, po
    assert pi["dir"] == "in" and pi["values"] == 60 and pi["frames"] == 60 and pi["bytes"] >= po["bytes"] - 200
    # latency samples at b's sink, stamped at a's source read
    lat = mb["latency"]
    assert lat, mb
    for sink, origin, t0, t1 in lat:
        assert sink == "k" and origin == "a"
        d = ticks_diff(t1, t0)
        assert BUSY_US <= d < 1000000, (d, lat)   # read -> sink includes the busy map
    assert ma["latency"] == []
    again = ask(loop, cb, connb, {"metrics": {}}, "metrics")
    assert again["latency"] == [] or again["latency"][0] != lat[0]     # drained by the poll
    a.close()
    b.close()


def test_the_sample_timer_runs_only_between_start_and_teardown():
    # a deployment torn down before it started (replaced, then stopped) never starts the
    # probe's timer; a started one's timer stops at its teardown (probe.py: run(probe, None, ...))
    loop = transport.Loop()
    a = Device("a", ["counter@0"], loop=loop)
    c, conn = control(loop, listen(a))

    def asg(epoch):
        return {"pipeline": "p", "epoch": epoch, "code": CODE, "steps": [
            {"id": "s", "type": "source", "params": {"sensor": "counter", "count": 5, "rate": 100}},
            {"id": "m", "type": "map", "params": {"fn": "user:double"}, "inputs": ["s"]},
            {"id": "k", "type": "callback", "params": {"name": "out"}, "inputs": ["m"]}]}
    ask(loop, c, conn, {"deploy": {"assignment": asg(1)}}, "deployed")
    first = a.runtime.probe
    ask(loop, c, conn, {"deploy": {"assignment": asg(2)}}, "deployed")    # replaces it unstarted
    second = a.runtime.probe
    assert first is not None and second is not None and first is not second
    assert first[9] is None and second[9] is None
    assert [s for s in a.runtime.sources if s.emit is not s.wired] == []   # none armed
    ask(loop, c, conn, {"start": {}}, "started")
    assert second[9] is not None and first[9] is None
    assert loop.run_until(lambda: delivered(c) >= 5, 10000)
    ask(loop, c, conn, {"stop": {}}, "stopped")
    assert second[9] is None and first[9] is None
    a.close()


def test_a_stopped_device_answers_metrics():
    # `top` after `stop`, or a re-route whose new deployment failed after the stop: the device
    # runs no steps, and its metrics reply says so (its probe went with the steps it timed;
    # before, the reply named steps that were gone and the request got no answer, an error
    # inside the device, while a dashboard or an experiment polled on)
    loop = transport.Loop()
    a = Device("a", ["counter@0"], loop=loop)
    c, conn = control(loop, listen(a))
    asg = {"pipeline": "p", "epoch": 1, "code": CODE, "steps": [
        {"id": "s", "type": "source", "params": {"sensor": "counter", "count": 5, "rate": 100}},
        {"id": "m", "type": "map", "params": {"fn": "user:double"}, "inputs": ["s"]},
        {"id": "k", "type": "callback", "params": {"name": "out"}, "inputs": ["m"]}]}
    for stop in ({}, {"keep": True}):
        ask(loop, c, conn, {"deploy": {"assignment": asg}}, "deployed")
        ask(loop, c, conn, {"start": {}}, "started")
        assert loop.run_until(lambda: delivered(c) >= 5, 10000)
        m = ask(loop, c, conn, {"metrics": {}}, "metrics")["steps"]["m"]
        assert m["in"] == 5 and m["out"] == 5, m
        ask(loop, c, conn, {"stop": stop}, "stopped")
        m = ask(loop, c, conn, {"metrics": {}}, "metrics")
        assert m["steps"] == {} and m["pipes"] == {} and m["latency"] == [], m
        assert m["pipeline"] == "p" and m["epoch"] == 1 and m["device"] == "a", m
        assert m["loop"]["wall_us"] > 0
        c.messages = []
    ask(loop, c, conn, {"undeploy": {}}, "stopped")
    assert ask(loop, c, conn, {"metrics": {}}, "metrics")["device"] == "a"
    assert c.closed is None
    a.close()


def test_metrics_off_no_sampling_counters_still_count():
    loop = transport.Loop()
    a = Device("a", ["counter@0"], loop=loop)
    from sensormesh.device import boot
    boot.set_metrics(a, False)
    c, conn = control(loop, listen(a))
    asg = {"pipeline": "p", "epoch": 1, "code": CODE, "steps": [
        {"id": "s", "type": "source", "params": {"sensor": "counter", "count": 30, "rate": 300}},
        {"id": "m", "type": "map", "params": {"fn": "user:double"}, "inputs": ["s"]},
        {"id": "k", "type": "callback", "params": {"name": "out"}, "inputs": ["m"]}]}
    ask(loop, c, conn, {"deploy": {"assignment": asg}}, "deployed")
    ask(loop, c, conn, {"start": {}}, "started")
    assert loop.run_until(lambda: delivered(c) >= 30, 10000)
    m = ask(loop, c, conn, {"metrics": {}}, "metrics")
    assert m["enabled"] is False and m["steps"]["m"]["in"] == 30 and "time_us" not in m["steps"]["m"]
    assert m["latency"] == [] and m["loop"]["busy_us"] == m["loop"]["wall_us"]
    a.close()


def test_a_free_running_source_reading_runs_is_sampled_and_loses_nothing():
    # rate 0: the source reads runs of values (the counter has get_many) that map and pipe_out
    # take as lists; a sampled value still goes through the chain alone, timed and stamped
    from sensormesh.device.runtime.free_running import BURST
    loop = transport.Loop()
    # tens of milliseconds of reading at least (one loop turn per run): the 2 ms sample timer fires
    n = (50 if MICROPYTHON else 200) * BURST
    old = probe_wiring.SAMPLE_MS
    probe_wiring.SAMPLE_MS = 2
    try:
        a = Device("a", ["counter@0"], loop=loop)
        b = Device("b", [], loop=loop)
        aaddr, baddr = listen(a), listen(b)
        asg_b = {"pipeline": "p", "epoch": 1, "steps": [
            {"id": "in", "type": "pipe_in", "params": {"edge": "e1"}},
            {"id": "k", "type": "callback", "params": {"name": "out"}, "inputs": ["in"]}]}
        asg_a = {"pipeline": "p", "epoch": 1, "code": CODE, "steps": [
            {"id": "s", "type": "source", "params": {"sensor": "counter", "count": n, "rate": 0}},
            {"id": "m", "type": "map", "params": {"fn": "user:double"}, "inputs": ["s"]},
            {"id": "o", "type": "pipe_out", "params": {"edge": "e1", "to": baddr, "time-frame": 10, "peer": "b"},
             "inputs": ["m"]}]}
        (ca, conna), (cb, connb) = deploy_and_start(loop, aaddr, asg_a, baddr, asg_b)
        assert loop.run_until(lambda: delivered(cb) >= n, 60000), delivered(cb)
        ma = ask(loop, ca, conna, {"metrics": {}}, "metrics")
        mb = ask(loop, cb, connb, {"metrics": {}}, "metrics")
    finally:
        probe_wiring.SAMPLE_MS = old
    got = []
    for d in cb.replies("deliver"):
        got += d["values"]
    assert len(got) == n
    for i in range(n):
        assert got[i] == 2 * i, (i, got[i - 2:i + 2])
    sa = ma["steps"]
    assert sa["s"]["out"] == n and sa["m"]["in"] == n and sa["m"]["out"] == n and sa["o"]["in"] == n
    assert sa["m"]["timed"] >= 1 and sa["o"]["timed"] >= 1, sa
    assert mb["latency"], mb       # sampled values carried their origin across the pipe
    a.close()
    b.close()


def test_a_window_output_carries_the_origin_of_the_oldest_sampled_value_it_held():
    # source -> mark (keeps its call tick and whether the value was sampled) -> window of 5 ->
    # callback: each window's latency sample starts at the read of its oldest sampled value,
    # whether the window's last value was sampled (the window passes it on at once) or not (its
    # output is processed sampled later, with the origin it held)
    loop = transport.Loop()
    old = probe_wiring.SAMPLE_MS, probe_wiring.MAX_LATENCY
    probe_wiring.SAMPLE_MS, probe_wiring.MAX_LATENCY = 20, 100    # about every other value sampled (one each 10 ms)
    try:
        a = Device("a", ["counter@0"], loop=loop)
        c, conn = control(loop, listen(a))
        asg = {"pipeline": "p", "epoch": 1, "code": CODE, "steps": [
            {"id": "s", "type": "source", "params": {"sensor": "counter", "count": 60, "rate": 100}},
            {"id": "m", "type": "map", "params": {"fn": "user:mark"}, "inputs": ["s"]},
            {"id": "w", "type": "window", "params": {"values": 5, "agg": "list"}, "inputs": ["m"]},
            {"id": "k", "type": "callback", "params": {"name": "out"}, "inputs": ["w"]}]}
        ask(loop, c, conn, {"deploy": {"assignment": asg}}, "deployed")
        a.runtime.code["user"]["probe"] = a.runtime.probe
        ask(loop, c, conn, {"start": {}}, "started")
        assert loop.run_until(lambda: delivered(c) >= 12, 20000), delivered(c)
        m = ask(loop, c, conn, {"metrics": {}}, "metrics")
    finally:
        probe_wiring.SAMPLE_MS, probe_wiring.MAX_LATENCY = old
    marks = a.runtime.resolve("user:marks")
    assert len(marks) == 60
    expected = []      # per window with a sampled value: (the mark before its oldest, that oldest)
    for w in range(12):
        for j in range(5 * w, 5 * w + 5):
            if marks[j][1]:
                expected.append((marks[j - 1][0] if j else None, marks[j][0]))
                break
    lat = m["latency"]
    assert 3 <= len(expected) == len(lat), (expected, lat)
    for (before, first), (sink, origin, t0, t1) in zip(expected, lat):
        assert sink == "k" and origin == "a"
        # the origin is the read of that value: after the value before it went through, before its mark
        assert ticks_diff(first, t0) >= 0 and (before is None or ticks_diff(t0, before) >= 0), (before, t0, first)
        assert ticks_diff(t1, first) >= 0
    assert m["steps"]["m"]["timed"] > 0 and m["steps"]["w"]["timed"] > 0
    a.close()


class _NoHeapConn:
    """A pipe's connection with no heap free to seal anything."""
    connecting = False
    closed = False

    def __init__(self):
        self.tries = 0

    def send(self, msg):
        self.tries += 1
        raise MemoryError("memory allocation failed, allocating 320 bytes")


class _TimerLoop:
    def __init__(self):
        self.due = []

    def call_later(self, ms, fn):
        t = (ms, fn)
        self.due.append(t)
        return t


class _Out:
    def __init__(self, conn):
        self.conn = conn


class _TimerRuntime:
    def __init__(self, conn):
        self.loop = _TimerLoop()
        self.sources = []
        self.pipe_outs = {"e": _Out(conn)}


def test_a_round_trip_probe_with_no_heap_is_left_out_and_the_sample_timer_comes_again():
    """A board's heap is full for a moment when the sample timer probes a pipe's round trip:
    that probe is left out, and the timer's next turn is set all the same (before, the
    MemoryError left the timer unset, and the board sampled nothing for the rest of its run)."""
    conn = _NoHeapConn()
    rt = _TimerRuntime(conn)
    p = [rt, (), probe_wiring.RTT_EVERY - 1, [], 0, False, None, 0, {}, None]
    probe_wiring.timer(p)
    assert conn.tries == 1                     # the round trip was probed, and found no heap
    assert len(rt.loop.due) == 1 and p[9] is rt.loop.due[0]
    assert rt.loop.due[0][0] == probe_wiring.SAMPLE_MS
