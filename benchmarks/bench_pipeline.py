# End-to-end benchmark of a deployed pipeline, with real device processes started
# the way `sensormesh up` starts them and deployed by the controller:
#
#     python benchmarks/bench_pipeline.py [values] [--repeat 3] [--throughput | --metrics]
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
import argparse
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
TARGET = 1_000_000    # values/s the 3-device chains should reach on the 2-core project machine


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


def _cpu_s(pid):
    """CPU seconds (user + system) process pid has used so far (Linux /proc)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def throughput(label, placement, n, interp_a="cpython", tcp=False, metrics=True, poll=False, seconds=None):
    """Values/s until n values arrived (or, with `seconds`, over that long: values that arrived).
    Returns (label, values/s or a reason, {device: CPU microseconds per value in that time})."""
    p = build("tp", placement, interp_a, "throughput", n)
    with Run(p, tcp, metrics) as r:
        got = []
        _, _, dep = runner.deploy(r.model, "optimal", local=r.cluster.addresses)
        if poll:
            from sensormesh.controller.metrics_poll import MetricsPoller
            MetricsPoller(dep, every=1.0).start()
        pids = {name: lp.proc.pid for name, lp in r.cluster.procs.items()}
        cpu0 = {name: _cpu_s(pid) for name, pid in pids.items()}
        t0 = time.perf_counter()
        try:
            dep.watch(lambda dev, step, vals: got.extend(vals), lambda: len(got) >= n // WINDOW,
                      timeout=seconds or 120)
            t1 = time.perf_counter()
            cpu1 = {name: _cpu_s(pid) for name, pid in pids.items()}
            dep.stop()
        finally:
            dep.close()
    arrived = len(got) * WINDOW
    cost = {}
    for name in pids:
        if cpu0[name] is not None and cpu1[name] is not None and arrived:
            cost[name] = (cpu1[name] - cpu0[name]) * 1e6 / arrived
    if seconds:
        return (label, arrived / (t1 - t0), cost)
    if len(got) < n // WINDOW:
        return (label, "incomplete: %d of %d windows" % (len(got), n // WINDOW), None)
    return (label, n / (t1 - t0), cost)


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


def median(xs):
    s = sorted(xs)
    k = len(s)
    return s[k // 2] if k % 2 else (s[k // 2 - 1] + s[k // 2]) / 2


def _m(v):
    return "%.2fM" % (v / 1e6) if v >= 1e6 else "%.0fk" % (v / 1e3)


def throughput_table(n, repeat, have_mp):
    """Every chain once per repeat, in the same order, so each repeat's ratios compare runs made
    under the same load; the table gives the median, the range and the median ratio."""
    a, b, c = ("bench%d%s" % (os.getpid(), x) for x in "abc")
    one, three = (a, a, a), (a, b, c)
    chains = [("baseline: one device, local chain", one, n, "cpython", False, None),
              ("3 CPython devices, Unix sockets", three, n, "cpython", False, TARGET),
              ("3 CPython devices, TCP", three, n, "cpython", True, TARGET)]
    if have_mp:
        chains.append(("source+map on MicroPython, Unix sockets", three, n // 10, "micropython", False, None))
    runs = {ch[0]: [] for ch in chains}
    ratios = {ch[0]: [] for ch in chains}
    costs = {ch[0]: [] for ch in chains}
    for rep in range(repeat):
        base = None
        for label, placement, count, interp, tcp, _ in chains:
            _, v, cost = throughput(label, placement, count, interp_a=interp, tcp=tcp)
            if isinstance(v, str):
                print("  [%d/%d] %-45s %s" % (rep + 1, repeat, label, v), flush=True)
                continue
            if base is None and placement == one:
                base = v
            runs[label].append(v)
            if base:
                ratios[label].append(v / base)
            if cost and placement == three:
                costs[label].append((cost.get(a, 0), cost.get(b, 0)))
            print("  [%d/%d] %-45s %12s values/s" % (rep + 1, repeat, label, format(int(v), ",")), flush=True)
    print()
    print("| chain | values/s (median) | min-max | vs baseline | target | vs target | CPU us/value a / b |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for label, placement, count, interp, tcp, target in chains:
        vs = runs[label]
        if not vs:
            print("| %s | failed | | | | | |" % label)
            continue
        med = median(vs)
        cs = costs[label]
        cost = "%.2f / %.2f" % (median([x[0] for x in cs]), median([x[1] for x in cs])) if cs else "-"
        print("| %s | %s | %s-%s | %.2f | %s | %s | %s |" % (
            label, format(int(med), ","), _m(min(vs)), _m(max(vs)), median(ratios[label]) if ratios[label] else 0,
            format(target, ",") if target else "-", "%.2f" % (med / target) if target else "-", cost))
    print("%d repeats of %s values (the MicroPython row: a tenth of that); vs baseline: median of each repeat's "
          "ratio; CPU us/value: CPU time of device a (source, map) and b (window) per value, which sets the "
          "rate once each device has a core to itself" % (repeat, format(n, ",")))


def main():
    ap = argparse.ArgumentParser(description="End-to-end benchmark of deployed 3-device pipelines.")
    ap.add_argument("values", nargs="?", type=int, default=2_000_000)
    ap.add_argument("--repeat", type=int, default=3, help="runs of every throughput chain (default 3)")
    ap.add_argument("--throughput", action="store_true", help="only the throughput table")
    ap.add_argument("--metrics", action="store_true", help="only the metrics on/off comparison")
    args = ap.parse_args()
    n = args.values
    if args.metrics:
        metrics_overhead(n)
        return
    have_mp = shutil.which("micropython") is not None
    # device names unique to this run: local devices listen on /tmp/sensormesh-<name>.sock, and
    # another run on the same machine must not meet ours
    a, b, c = ("bench%d%s" % (os.getpid(), x) for x in "abc")
    one = (a, a, a)
    three = (a, b, c)
    print("end-to-end throughput, %s values, windows of %d, time frames 10 ms; %s, %d cores, load %s" % (
        format(n, ","), WINDOW, time.strftime("%Y-%m-%d %H:%M"), os.cpu_count(),
        "/".join("%.1f" % x for x in os.getloadavg())))
    throughput_table(n, args.repeat, have_mp)
    if args.throughput:
        return
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
