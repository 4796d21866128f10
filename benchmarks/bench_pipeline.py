# End-to-end benchmark of a deployed pipeline, with real device processes started
# the way `sensormesh up` starts them and deployed by the controller:
#
#     python benchmarks/bench_pipeline.py [values]
#
# Throughput: source(counter, as fast as read) -> map (shipped code) -> window(100 values,
# mean) -> callback sink, the three parts on three devices a, b, c; pipes batch in 10 ms time
# frames. Values/s = source values / (start .. last window delivered to the controller).
# Latency: source(clock at 1,000 values/s) -> map -> map -> map(latency), the maps on a, b, c,
# pipes with time-frame 0 (every value its own frame); the last map computes now - reading on
# the monotonic microsecond clock all processes share, so the figure is sensor read to sink.
# Baseline, measured in the same run: the same chain as a local chain on one device, so the
# ratio says what going through three processes and two network pipes costs.
# Metrics overhead (docs/observability.md): the 3-device throughput with the devices' metrics off
# (--no-metrics) and on with the controller polling every device each second, as under
# `sensormesh up`; runs alternated, best of 3 each (`--metrics` runs only this part).
import os
import shutil
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from sensormesh.api import Pipeline  # noqa: E402
from sensormesh.controller import runner  # noqa: E402
from sensormesh.controller.local import LocalCluster  # noqa: E402
from sensormesh.device.compat import ticks_us  # noqa: E402,F401  (shipped code imports it on devices)

WINDOW = 100


def scale(v):
    return v * 0.5 + 1.0


def passthrough(t):
    return t


def latency(t):
    from sensormesh.device.compat import ticks_us
    return ticks_us() - t


def build(name, placement, interp_a="cpython", kind="throughput", n=0, batch=10):
    """placement: (device of source+map, device of window/map2, device of sink) names."""
    p = Pipeline(name)
    names = sorted(set(placement))
    for d in names:
        interp = interp_a if d == placement[0] else "cpython"
        p.device(d, interpreter=interp, cpu=8, local=True, sensors=["counter@0", "clock@1000"])
    a, b, c = placement
    if kind == "throughput":
        s = p.source("counter", on=a, rate=0, count=n)
        m = s.map(scale, on=a, batch=batch)
        w = m.window(values=WINDOW, agg="mean", on=b, batch=batch)
        w.callback(lambda v: None, name="sink", on=c)
    else:
        s = p.source("clock", on=a, rate=1000)
        m = s.map(passthrough, on=a, batch=0)
        m2 = m.map(passthrough, on=b, batch=0)
        m2.map(latency, on=c).callback(lambda v: None, name="sink", on=c)
    return p


class Run:
    def __init__(self, p, tcp=False, metrics=True):
        self.model = p.model()
        config = {} if metrics else {d: {"metrics": False} for d in self.model.devices}
        self.cluster = LocalCluster(self.model, config=config)
        self.tcp = tcp

    def __enter__(self):
        self.cluster.start()
        if self.tcp:   # make same-host pipes use TCP: pretend the devices are on other hosts
            for d in self.model.devices.values():
                d.local = False
                d.address = self.cluster.tcp[d.name]
        return self

    def __exit__(self, *exc):
        self.cluster.stop()


def throughput(label, placement, n, interp_a="cpython", tcp=False, metrics=True, poll=False, seconds=None):
    """Values/s until n values arrived (or, with `seconds`, over that long: values that arrived)."""
    p = build("tp", placement, interp_a, "throughput", n)
    with Run(p, tcp, metrics) as r:
        got = []
        _, _, dep = runner.deploy(r.model, "optimal", local=r.cluster.addresses)
        if poll:
            from sensormesh.controller.metrics_poll import MetricsPoller
            MetricsPoller(dep, every=1.0).start()
        t0 = time.perf_counter()
        try:
            dep.watch(lambda dev, step, vals: got.extend(vals), lambda: len(got) >= n // WINDOW,
                      timeout=seconds or 120)
            t1 = time.perf_counter()
            dep.stop()
        finally:
            dep.close()
    if seconds:
        return (label, len(got) * WINDOW / (t1 - t0), None)
    if len(got) < n // WINDOW:
        return (label, "incomplete: %d of %d windows" % (len(got), n // WINDOW), None)
    return (label, n / (t1 - t0), None)


def latencies(label, placement, count, interp_a="cpython", tcp=False):
    p = build("lat", placement, interp_a, "latency")
    with Run(p, tcp) as r:
        got = []
        _, _, dep = runner.deploy(r.model, "optimal", local=r.cluster.addresses)
        try:
            dep.watch(lambda dev, step, vals: got.extend(vals), lambda: len(got) >= count + 200, timeout=60)
            dep.stop()
        finally:
            dep.close()
    got = sorted(got[200:])      # the first values include connection setup
    if not got:
        return (label, None, "no values")
    pick = lambda q: got[min(len(got) - 1, int(q * len(got)))] / 1000.0  # noqa: E731
    return (label, pick(0.5), pick(0.99))


def metrics_overhead(n):
    three = ("a", "b", "c")
    best = {False: None, True: None}
    for _ in range(3):
        for on in (False, True):
            label, v, _ = throughput("", three, n, metrics=on, poll=on, seconds=20)
            if isinstance(v, str):
                print("metrics %s: %s" % ("on" if on else "off", v))
                continue
            print("  run: metrics %s %s values/s" % ("on " if on else "off", format(int(v), ",")))
            if best[on] is None or v > best[on]:
                best[on] = v
    print("metrics overhead: 3 CPython devices, Unix sockets, values that arrive in 20 s, runs alternated, best of 3")
    print("| metrics | values/s | on/off |")
    print("|---|---:|---:|")
    if best[False] and best[True]:
        print("| off (--no-metrics) | %s | 1.00 |" % format(int(best[False]), ","))
        print("| on, controller polling every 1 s | %s | %.3f |" % (format(int(best[True]), ","), best[True] / best[False]))


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    n = int(args[0]) if args else 2_000_000
    if "--metrics" in sys.argv:
        metrics_overhead(n)
        return
    have_mp = shutil.which("micropython") is not None
    # device names unique to this run: local devices listen on /tmp/sensormesh-<name>.sock, and
    # another run on the same machine must not meet ours
    a, b, c = ("bench%d%s" % (os.getpid(), x) for x in "abc")
    one = (a, a, a)
    three = (a, b, c)
    rows = []
    print("end-to-end throughput, %d values, windows of %d, time frames 10 ms" % (n, WINDOW))
    base = throughput("baseline: one device, local chain", one, n)
    rows.append(base)
    rows.append(throughput("3 CPython devices, Unix sockets", three, n))
    rows.append(throughput("3 CPython devices, TCP", three, n, tcp=True))
    if have_mp:
        rows.append(throughput("source+map on MicroPython, Unix sockets", three, n // 10, interp_a="micropython"))
    print("| chain | values/s | vs baseline |")
    print("|---|---:|---:|")
    for label, v, _ in rows:
        if isinstance(v, str):
            print("| %s | %s | - |" % (label, v))
        else:
            print("| %s | %s | %.2f |" % (label, format(int(v), ","), v / base[1]))
    print()
    print("latency, sensor read to sink, clock source at 1,000 values/s, time-frame 0")
    lrows = [latencies("baseline: one device, local chain", one, 3000),
             latencies("3 CPython devices, Unix sockets", three, 3000),
             latencies("3 CPython devices, TCP", three, 3000, tcp=True)]
    if have_mp:
        lrows.append(latencies("source+map on MicroPython, Unix sockets", three, 3000, interp_a="micropython"))
    print("| chain | p50 ms | p99 ms | p99 vs baseline |")
    print("|---|---:|---:|---:|")
    for label, p50, p99 in lrows:
        if p50 is None:
            print("| %s | %s | | |" % (label, p99))
        else:
            print("| %s | %.3f | %.3f | %.1f |" % (label, p50, p99, p99 / lrows[0][2] if lrows[0][2] else 0))
    print()
    metrics_overhead(n)


if __name__ == "__main__":
    main()
