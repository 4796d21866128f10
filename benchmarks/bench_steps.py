# Micro-benchmark of step chains (sensormesh/device/steps/), on CPython and MicroPython alike:
#     python3 benchmarks/bench_steps.py [values] [--metrics]
#     micropython benchmarks/bench_steps.py [values] [--metrics]
# A loop pushes 0, 1, 2... into map -> <step> -> callback, the map being shipped user code
# (v * 0.5 + 1.0). The baseline is a plain Python loop doing the same arithmetic inline,
# measured in the same run; the ratio says what the step machinery costs on top of the work.
# Prints one table; best of 3 runs per row.
# Then the metrics overhead (docs/observability.md): the same kind of chain deployed on a device
# runtime in this process (source counter as fast as read -> map -> window(100, mean) -> callback),
# its metrics on (sampled step times and origins, loop busy time) vs off, runs alternated, best
# of 5 each; the ratio on/off is the overhead (target: at most 5% slower). --metrics runs only this.
import gc
import sys

HERE = __file__.rpartition("/")[0] or "."
ROOT = HERE + "/.."
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from sensormesh.device.runtime import shipped  # noqa: E402
from sensormesh.device.steps import make  # noqa: E402
from sensormesh.device.compat import MICROPYTHON, ticks_diff, ticks_us  # noqa: E402

USER = "def scale(v):\n    return v * 0.5 + 1.0\n"


class Ctx:
    def __init__(self, registry):
        self.registry = registry
        self.delivered = 0

    def now(self):
        return 0

    def call_later(self, ms, fn):
        raise RuntimeError("no timers in this benchmark")

    def resolve(self, ref):
        return shipped.resolve(self.registry, ref)

    def deliver(self, step_id, value):
        self.delivered += 1

    def log(self, text):
        print("log:", text)


def chain(middle_type, middle_params):
    ctx = Ctx(shipped.load_code({"user": USER}))
    m = make.build({"id": "m", "type": "map", "params": {"fn": "user:scale"},
                     "inputs": ["src"]}, ctx)
    last = m
    if middle_type:
        mid = make.build({"id": "w", "type": middle_type, "params": middle_params,
                           "inputs": ["m"]}, ctx)
        m.connect(mid)
        last = mid
    cb = make.build({"id": "cb", "type": "callback", "params": {"name": "out"},
                      "inputs": [last.id]}, ctx)
    last.connect(cb)
    return m.inlet(0), ctx


def run_chain(n, middle_type, middle_params):
    push, ctx = chain(middle_type, middle_params)
    t0 = ticks_us()
    for i in range(n):
        push(i)
    return ticks_diff(ticks_us(), t0), ctx.delivered


def run_baseline(n, size):
    # the same arithmetic as map(scale) -> window(values=size, agg=mean) -> deliver, inline
    out = []
    deliver = out.append
    acc = 0
    k = 0
    t0 = ticks_us()
    for i in range(n):
        x = i * 0.5 + 1.0
        acc += x
        k += 1
        if k == size:
            deliver(acc / k)
            acc = 0
            k = 0
    return ticks_diff(ticks_us(), t0), len(out)


CASES = [
    ("map -> window(values=100, mean) -> callback", "window", {"values": 100, "agg": "mean"}),
    ("map -> window(values=100, max) -> callback", "window", {"values": 100, "agg": "max"}),
    ("map -> window(values=100, list) -> callback", "window", {"values": 100, "agg": "list"}),
    ("map -> sliding(size=10, slide=10, sum) -> callback", "sliding",
     {"size": 10, "slide": 10, "agg": "sum"}),
    ("map -> changes -> callback (all change)", "changes", {}),
    ("map -> callback (every value)", None, None),
]


def best(fn, *args):
    t = None
    for _ in range(3):
        gc.collect()
        us, count = fn(*args)
        if t is None or us < t:
            t = us
    return max(t, 1), count


class _Conn:
    closed = False

    def __init__(self):
        self.sent = 0

    def send(self, msg):
        self.sent += 1


class _Session:
    def __init__(self):
        self.conn = _Conn()


def run_runtime(n, metrics):
    """Values/s of a deployed source -> map -> window -> callback chain on a device runtime."""
    from sensormesh.device.core import Device
    dev = Device("bench", ["counter@0"])
    from sensormesh.device import boot
    boot.set_metrics(dev, metrics)
    s = _Session()
    asg = {"pipeline": "bench", "epoch": 1, "code": {"user": USER}, "steps": [
        {"id": "s", "type": "source", "params": {"sensor": "counter", "rate": 0, "count": n}},
        {"id": "m", "type": "map", "params": {"fn": "user:scale"}, "inputs": ["s"]},
        {"id": "w", "type": "window", "params": {"values": 100, "agg": "mean"}, "inputs": ["m"]},
        {"id": "k", "type": "callback", "params": {"name": "out"}, "inputs": ["w"]}]}
    dev.runtime_handler("deploy")(s, {"assignment": asg})
    rt = dev.runtime
    src = rt.sources[0]
    gc.collect()
    t0 = ticks_us()
    dev.runtime_handler("start")(s, {})
    dev.loop.run_until(lambda: src.n_out >= n, 600000)
    us = ticks_diff(ticks_us(), t0)
    from sensormesh.device import metrics
    timed = metrics.report(dev)["steps"]["m"].get("timed", 0)
    dev.close()
    return us, src.n_out, timed


def metrics_overhead(n):
    best_on = best_off = None
    timed = 0
    for _ in range(5):
        for on in (False, True):
            us, got, t = run_runtime(n, on)
            if on:
                timed = t
                best_on = us if best_on is None or us < best_on else best_on
            else:
                best_off = us if best_off is None or us < best_off else best_off
    r_off = n * 1000000 // best_off
    r_on = n * 1000000 // best_on
    print()
    print("metrics overhead, device runtime: source(counter, rate 0) -> map -> window(100, mean) -> callback,")
    print("%d values per run, runs alternated, best of 5" % n)
    print("%-52s %12s %9s" % ("metrics", "values/s", "on/off"))
    print("%-52s %12d %9s" % ("off (--no-metrics)", r_off, "1.00"))
    from sensormesh.device.runtime.probe_wiring import SAMPLE_MS
    print("%-52s %12d %8.3fx" % ("on (sampled every %d ms; %d values of map timed)" % (SAMPLE_MS, timed), r_on, r_on / r_off))


def main(argv):
    only_metrics = "--metrics" in argv
    argv = [a for a in argv if a != "--metrics"]
    n = int(argv[0]) if argv else (30000 if MICROPYTHON else 300000)
    if only_metrics:
        metrics_overhead(n * 3)
        return
    print("sensormesh step chains, %s %s, %d values per run, best of 3"
          % (sys.implementation.name, ".".join([str(x) for x in sys.implementation.version[:3]]), n))
    base_us, base_out = best(run_baseline, n, 100)
    base_rate = n * 1000000 // base_us
    print("%-52s %12s %9s" % ("chain", "values/s", "vs base"))
    print("%-52s %12d %9s" % ("baseline: inline loop, same math as window mean", base_rate,
                              "1.00"))
    for name, kind, params in CASES:
        us, delivered = best(run_chain, n, kind, params)
        rate = n * 1000000 // us
        print("%-52s %12d %8.2fx" % (name, rate, base_us / us))
    # A hot method whose frame the VM puts on the heap (see the note in steps.py) shows up
    # as a rate that falls as the run gets longer: compare a short run with the full one.
    short, _ = best(run_chain, n // 10, "window", {"values": 100, "agg": "mean"})
    full, _ = best(run_chain, n, "window", {"values": 100, "agg": "mean"})
    short_rate = (n // 10) * 1000000 // short
    full_rate = n * 1000000 // full
    print("map -> window(mean) -> callback, %d vs %d values: %d vs %d values/s%s"
          % (n // 10, n, short_rate, full_rate,
             "  <- SLOWER WHEN LONGER: heap-allocated frames?" if full_rate * 10 < short_rate * 6
             else ""))
    if MICROPYTHON:
        gc.collect()
        before = gc.mem_alloc()
        keep = chain("window", {"values": 100, "agg": "mean"})
        gc.collect()
        print("heap held by one map -> window -> callback chain: %d bytes"
              % (gc.mem_alloc() - before))
        del keep
    metrics_overhead(n * 3)


main(sys.argv[1:])
