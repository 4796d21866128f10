"""Clock sync and the metrics poller with real device processes on loopback.

Every process here reads the same CLOCK_MONOTONIC: a CPython device's tick is
time.monotonic_ns() // 1000 and the MicroPython unix port's ticks_us() is CLOCK_MONOTONIC in
microseconds too, so the true offset of every device is 0 (within a microsecond) and the
estimates can be checked against the truth."""
import json
import os
import sys
import textwrap
import time

import pytest

from procs import Proc, free_port
from sensormesh.controller.clocksync import ClockSync, Estimate, exchange
from sensormesh.controller.metrics_poll import MetricsPoller
from sensormesh.controller.pipeline_file import load_model
from sensormesh.controller.supervisor import Supervisor

WRAP = 2 ** 30


def percentile(sorted_vals, q):
    return sorted_vals[min(len(sorted_vals) - 1, int(round(q * (len(sorted_vals) - 1))))]


class Relays:
    """Shaping relays of the emulated-network lab (sensormesh/netlab/shaping.py), one process:
    specs [(target port, forward delay s, backward delay s)]; .addresses in the same order."""

    def __init__(self, tmp_path, specs):
        cfg = {"parent": os.getpid(), "relays": [
            {"name": "r%d" % i, "listen": "127.0.0.1:0", "target": "127.0.0.1:%d" % port,
             "forward": {"delay": fwd}, "backward": {"delay": back}, "seed": i}
            for i, (port, fwd, back) in enumerate(specs)]}
        path = tmp_path / ("relays-%d.json" % len(list(tmp_path.iterdir())))
        path.write_text(json.dumps(cfg))
        self.proc = Proc([sys.executable, "-m", "sensormesh.netlab.shaping", str(path)])
        self.proc.wait_line("relays ready")
        where = {}
        for line in self.proc.lines:
            if line.startswith("relay ") and " listening on " in line:
                where[line.split()[1]] = line.rsplit(" ", 1)[1].strip()
        self.addresses = [where["r%d" % i] for i in range(len(specs))]

    def stop(self):
        self.proc.stop()


def test_exchange_bound_and_best_of_a_round():
    cs = ClockSync(rounds=3)
    # device clock = controller us + 5000; three exchanges with different (asymmetric) delays
    for t0, fwd, back in ((10.0, 0.004, 0.001), (11.0, 0.0005, 0.0005), (12.0, 0.010, 0.002)):
        tick = int((t0 + fwd) * 1e6) + 5000
        e = cs.add("d", t0, {"tick_us": tick, "period": 0}, t0 + fwd + back)
        assert abs(e.offset_us - 5000) <= e.bound_us
    best = cs.finish_round("d")
    assert best.rtt_us == pytest.approx(1000, abs=1) and abs(best.offset_us - 5000) <= 1 and best.samples == 3
    t, b = cs.to_controller_time("d", int(11.5e6) + 5000, near=11.5)
    assert abs(t - 11.5) <= b and b < 0.001


def test_wrapping_tick_clock_is_unwrapped_near_the_controller_time():
    cs = ClockSync()
    true_off = 123456789        # device tick = (controller us + true_off) mod 2**30
    t0 = 5000.0                  # controller seconds: the device clock has wrapped thousands of times
    tick = int(t0 * 1e6 + 300 + true_off) % WRAP
    cs.add("esp", t0, {"tick_us": tick, "period": WRAP}, t0 + 0.0006)
    cs.finish_round("esp")
    for later in (1.0, 400.0, 530.0):       # up to ~9 minutes (half the period) away from `near`
        t = t0 + later
        tick = int(t * 1e6 + true_off) % WRAP
        got, bound = cs.to_controller_time("esp", tick, near=t + 60)
        assert abs(got - t) <= bound, (later, got - t, bound)
    assert cs.tick_diff_us("esp", 5, WRAP - 5) == 10


def test_offset_keeps_microseconds_with_the_unix_ports_wide_tick_period():
    # the MicroPython unix port on 64 bits wraps ticks_us at 2**62: the estimate must keep the
    # offset to the microsecond, not round it to the float spacing near 2**61 (512 us)
    for true_off in (37, -37, 300, -300, 123456789):
        t0 = 1000.0
        tick = int(t0 * 1e6) + 100 + true_off        # read 100 us after t0, replied 200 us after
        e = exchange(t0, tick % 2 ** 62, t0 + 0.0002, 2 ** 62)
        assert abs(e.offset_us - true_off) <= 1, (true_off, e.offset_us)
        assert abs(e.offset_us - true_off) <= e.bound_us
    # a board's 2**30: an offset near the wrap still comes out nearest to 0
    e = exchange(5.0, (int(5e6) + 100 - 25) % WRAP, 5.0002, WRAP)
    assert abs(e.offset_us - (-25)) <= 1


class _Req:
    def __init__(self, device, reply):
        self.device, self.reply, self.error, self.done, self.t_done = device, reply, None, True, time.monotonic()


class RebootingBoard:
    """A supervisor stand-in with one board whose tick clock (period 2**30) begins again at 0 when
    it restarts, as an ESP32's does; it answers clock and metrics requests at once."""
    timeout = 5.0
    deployed = {"esp"}

    def __init__(self):
        self.tasks, self.paths, self.loop = [], {"esp": None}, None
        self.health = type("H", (), {"busy": False, "down": lambda self, d: False})()
        self.boot = time.monotonic() - 100.0        # ticks count from the board's boot
        self.read = 0                                 # latency samples: read ticks of this boot

    def _watched(self):
        return ["esp"]

    def tick(self):
        return int((time.monotonic() - self.boot) * 1e6) % WRAP

    def _send(self, device, msg, keys):
        if "clock" in msg:
            return _Req(device, {"clock": {"t0": msg["clock"]["t0"], "tick_us": self.tick(), "period": WRAP}})
        now = self.tick()
        read = int((time.monotonic() - 0.020) * 1e6)                  # read on pc (the controller's clock), 20 ms ago
        lat = [["k", "pc", read, now]] if self.read else []
        return _Req(device, {"metrics": {"device": "esp", "tick_us": now, "tick_period": WRAP,
                                          "loop": {"busy_us": 0, "wall_us": now}, "latency": lat}})


def test_a_board_that_restarts_is_measured_again_before_its_ticks_are_converted():
    """After a reboot a board's tick clock begins again at 0: the estimate from before is off by
    its whole uptime. The poller must not date snapshots (and so rates) or latency samples with it:
    it notices the tick cannot have been read while the request was out, measures the clock again,
    and converts the latency samples with the new estimate."""
    sup = RebootingBoard()
    poller = MetricsPoller(sup, every=1.0)
    poller.clock.estimates["pc"] = Estimate(0.0, 100.0, 200.0, time.monotonic(), 0)    # pc: the controller's clock
    got = collect(poller)
    poller.running = True
    poller._ask("esp")
    assert poller.clock.offset("esp") is None            # no clock round yet: arrival time
    poller.sync_now("esp")
    assert abs(poller.clock.to_controller_time("esp", sup.tick())[0] - time.monotonic()) < 0.01
    poller._ask("esp")
    ev = got["metrics"][-1]
    assert abs(ev["t"] - poller.wall - time.monotonic()) < 0.05
    sup.boot = time.monotonic() - 3.0                     # rebooted: uptime 3 s
    sup.read = 1
    poller._ask("esp")
    ev = got["metrics"][-1]
    assert abs(ev["t"] - poller.wall - time.monotonic()) < 0.05, "snapshot dated with the old estimate"
    assert abs(poller.clock.to_controller_time("esp", sup.tick())[0] - time.monotonic()) < 0.01  # measured again
    poller._ask("esp")                                     # the waiting sample is converted now
    assert got["latency"], "latency samples of the rebooted board never converted"
    for lat in got["latency"]:
        assert abs(lat["latency_s"] - 0.020) < 0.005, lat


def model_of(tmp_path, text, ports):
    f = tmp_path / "p.yaml"
    f.write_text(textwrap.dedent(text % ports))
    return load_model(str(f))


GATEWAY = """
pipeline: mg
devices:
  esp: {interpreter: micropython, sensors: [counter], address: "127.0.0.1:%(esp)d"}
  gw:  {address: "127.0.0.1:%(gw)d"}
  pc:  {address: "127.0.0.1:%(pc)d"}
network:
  controller: [office]
  domains:
    field: [esp, gw]
    office: [gw, pc]
steps:
  s: {type: source, sensor: counter, rate: 200, on: esp}
  d: {type: map, fn: "steps.py:double", input: s, on: pc}
sinks:
  k: {type: callback, input: d, on: pc, name: out}
"""


def collect(poller):
    got = {"metrics": [], "latency": []}
    poller.subscribe(lambda ev: got[ev["kind"]].append(ev))
    return got


def watch_until(sup, pred, timeout=20.0):
    deadline = time.monotonic() + timeout
    sup.watch(lambda *a: None, lambda: pred() or time.monotonic() > deadline)
    assert pred()


def test_clock_and_metrics_through_a_gateway_on_both_interpreters(devices, tmp_path):
    (tmp_path / "steps.py").write_text("def double(x):\n    return 2 * x\n")
    ports = {n: free_port() for n in ("esp", "gw", "pc")}
    devices("micropython", ["--port", str(ports["esp"]), "--name", "esp", "--sensors", "counter@0"], cwd=str(tmp_path))
    for n in ("gw", "pc"):
        devices("cpython", ["--port", str(ports[n]), "--name", n, "--sensors", "counter@0"], cwd=str(tmp_path))
    sup = Supervisor(model_of(tmp_path, GATEWAY, ports), "optimal", timeout=5.0)
    try:
        sup.deploy()
        assert sup.paths["esp"].targets, "esp is controlled through the gateway"
        poller = MetricsPoller(sup, every=0.3)
        got = collect(poller)
        for d in ("esp", "gw", "pc"):
            e = poller.sync_now(d)
            assert e is not None and e.samples == poller.clock.rounds, (d, poller.errors)
            # the truth is 0: every process reads CLOCK_MONOTONIC; within 1 ms on a direct loopback
            # session, within its bound through the gateway (two relayed hops on a loaded machine)
            assert abs(e.offset_us) <= e.bound_us, (d, e.as_dict())
            if d != "esp":
                assert abs(e.offset_us) <= 1000, (d, e.as_dict())
        poller.start()
        watch_until(sup, lambda: len({ev["device"] for ev in got["metrics"]}) == 3 and len(got["latency"]) >= 5)
        poller.stop()
    finally:
        sup.stop()
        sup.close()
    last = {ev["device"]: ev for ev in got["metrics"]}
    esp, pc = last["esp"]["metrics"], last["pc"]["metrics"]
    assert esp["interp"] == "micropython" and pc["interp"] == "cpython"
    assert set(esp["mem"]) == {"heap_free", "heap_alloc", "heap_largest"} and set(pc["mem"]) == {"rss", "cpu_s"}
    for ev in last.values():
        assert abs(ev["offset"]) <= ev["offset_bound"] < 0.05
        assert abs(ev["t"] - time.time()) < 30
    assert esp["steps"]["s"]["out"] > 0 and pc["steps"]["k"]["in"] > 0
    assert any(p["dir"] == "out" for p in esp["pipes"].values()) and any(p["dir"] == "in" for p in pc["pipes"].values())
    gw_pipes = last["gw"]["metrics"]["pipes"]
    assert {p["dir"] for p in gw_pipes.values()} == {"in", "out"}, gw_pipes     # the relay's two ends
    for lat in got["latency"]:
        assert lat["sink"] == "k" and lat["origin"] == "esp" and lat["device"] == "pc"
        assert 0 < lat["latency_s"] < 1.0 and lat["bound_s"] < 0.05


PAIR = """
pipeline: mp
devices:
  a: {interpreter: %(interp)s, sensors: [counter], address: "127.0.0.1:%(a)d"}
  b: {address: "%(b_addr)s"}
steps:
  s: {type: source, sensor: counter, rate: 100, batch: 0, on: a}   # every value on its own
sinks:
  k: {type: callback, input: s, on: b, name: out}
"""


def pair(devices, tmp_path, interp, delay):
    """a -> b over a direct pipe, or over a relay holding each chunk `delay` s each way; the
    controller's own control session with b is direct (its clock estimate is not blurred)."""
    ports = {"a": free_port(), "b": free_port()}
    devices(interp, ["--port", str(ports["a"]), "--name", "a", "--sensors", "counter@0"])
    devices("cpython", ["--port", str(ports["b"]), "--name", "b", "--sensors", ""])
    relay = Relays(tmp_path, [(ports["b"], delay, delay)]) if delay else None
    b_addr = relay.addresses[0] if relay else "127.0.0.1:%d" % ports["b"]
    model = model_of(tmp_path, PAIR, dict(ports, interp=interp, b_addr=b_addr))
    sup = Supervisor(model, "optimal", addresses={"b": "127.0.0.1:%d" % ports["b"]}, timeout=5.0)
    return sup, relay


def latencies(devices, tmp_path, interp, delay, n=20):
    """Deploy the pair, poll until n latency samples came; (sorted latencies, every event)."""
    sup, relay = pair(devices, tmp_path, interp, delay)
    try:
        sup.deploy()
        poller = MetricsPoller(sup, every=0.25)
        got = collect(poller)
        poller.start()
        watch_until(sup, lambda: len(got["latency"]) >= n, timeout=60)
        poller.stop()
    finally:
        sup.stop()
        sup.close()
        if relay is not None:
            relay.stop()
    return sorted(ev["latency_s"] for ev in got["latency"]), got


@pytest.mark.parametrize("interp", ["cpython", "micropython"])
def test_latency_across_a_pipe_without_delay_is_under_5_ms(devices, tmp_path, interp):
    # a board samples once a second (a CPython device ten times): fewer samples from it
    lat, got = latencies(devices, tmp_path, interp, 0, n=20 if interp == "cpython" else 8)
    assert percentile(lat, 0.5) < 0.005, lat
    assert all(ev["bound_s"] < 0.005 for ev in got["latency"])


def test_latency_across_a_50ms_link_is_50ms_plus_processing(devices, tmp_path):
    lat, got = latencies(devices, tmp_path, "cpython", 0.050)
    p50 = percentile(lat, 0.5)
    assert 0.050 <= p50 <= 0.060, lat
    # per-hop delay from the pipe's round-trip probe: about 2 x 50 ms
    rtt = [ev["metrics"]["pipes"] for ev in got["metrics"] if ev["device"] == "a"]
    rtts = [p["rtt_us"] for ps in rtt for p in ps.values() if p["rtt_us"]]
    assert rtts and 0.095 <= min(rtts) / 1e6 <= 0.2, rtts


@pytest.mark.parametrize("interp", ["cpython", "micropython"])
def test_clock_estimate_over_an_asymmetric_link_stays_within_its_bound(devices, tmp_path, interp):
    port = free_port()
    devices(interp, ["--port", str(port), "--name", "a", "--sensors", "counter@0"])
    relays = Relays(tmp_path, [(port, 0.030, 0.002), (port, 0.001, 0.020)])
    try:
        for address in relays.addresses:
            model = model_of(tmp_path, PAIR, {"interp": interp, "a": port, "b_addr": "127.0.0.1:1"})
            sup = Supervisor(model, "optimal", addresses={"a": address}, timeout=5.0)
            try:
                e = MetricsPoller(sup).sync_now("a")
            finally:
                sup.close()
            assert e is not None and e.samples >= 3
            # the truth is 0; the asymmetry shifts the estimate by about (fwd - back) / 2
            assert abs(e.offset_us) <= e.bound_us, e.as_dict()
            assert abs(e.offset_us) > 5000, e.as_dict()      # the link really was asymmetric
    finally:
        relays.stop()
