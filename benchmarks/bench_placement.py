# Placement time and quality on a large inventory: 1,000 devices, 200 steps.
#
#   python benchmarks/bench_placement.py [--devices 1000] [--steps 200] [--seed 1] [--no-reduce]
#
# The inventory: 90% ESP32s (MicroPython, cpu 1, 96 KB, two or three sensors each), 9%
# Raspberry-Pi-class CPython devices (cpu 4), 1% servers (cpu 40). The pipeline: chains of
# four kinds, drawn at random until the step budget is used --
#   alarm:   temperature -> map -> window(1 s, mean) -> alarm -> print (on a server)
#   motion:  gyro -> field accel.0 -> sliding(50) -> filter -> collector merge on a Pi
#   pair:    zip of two ESPs' temperatures -> window(10, list) -> map (CPython-only) -> csv on a server
#   heavy:   gyro 100 Hz -> map with cpu=40 units/value (an FFT, say) -> window -> sink
# so sensors are spread over many devices, some steps only fit CPython devices and the heavy
# maps do not fit two to an ESP32 (CPU binds). Prints one table: strategy, time, traffic,
# and for optimal the MIP gap HiGHS reports and the size of the ILP.
import argparse
import os
import random
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sensormesh.api import Pipeline, merge  # noqa: E402
from sensormesh.controller.placement import format_rate  # noqa: E402


def to_fahrenheit(c):
    return c * 9 / 5 + 32


def moving(v):
    return abs(v) > 0.1


def spread(pairs):
    return statistics.pstdev([a - b for a, b in pairs])


def spectrum(v):
    return v


def build(n_devices, n_steps, seed, esp_cpu=1.0):
    rng = random.Random(seed)
    p = Pipeline("bench")
    n_srv = max(1, n_devices // 100)
    n_pi = max(1, n_devices * 9 // 100)
    n_esp = n_devices - n_srv - n_pi
    esps = []
    for i in range(n_esp):
        name = "esp-%d" % i
        kinds = rng.sample(["temperature", "gyro", "hall", "poti", "dht11"], rng.choice((2, 3)))
        if "temperature" not in kinds and rng.random() < 0.5:
            kinds[0] = "temperature"
        p.device(name, interpreter="micropython", cpu=esp_cpu, memory=96000, sensors=kinds,
                 address="10.%d.%d.%d:7000" % (i // 65536, (i // 256) % 256, i % 256))
        esps.append((name, set(kinds)))
    pis = ["pi-%d" % i for i in range(n_pi)]
    for i, name in enumerate(pis):
        p.device(name, interpreter="cpython", cpu=4, memory=512 * 2 ** 20,
                 address="10.200.%d.%d:7000" % (i // 256, i % 256))
    servers = ["srv-%d" % i for i in range(n_srv)]
    for i, name in enumerate(servers):
        p.device(name, interpreter="cpython", cpu=40, memory=8 * 2 ** 30, address="10.250.0.%d:7000" % i)

    def esp_with(kind):
        return rng.choice([n for n, k in esps if kind in k])

    count = lambda: len(p._steps)  # noqa: E731
    while count() < n_steps:
        left = n_steps - count()
        kind = rng.choice(("alarm", "motion", "pair", "heavy"))
        if kind == "alarm" and left >= 5:
            s = p.source("temperature", on=esp_with("temperature"), rate=10)
            s.map(to_fahrenheit).window(time_frame=1000).alarm(high=86, low=82).print(on=rng.choice(servers))
        elif kind == "motion" and left >= 10:
            pi = rng.choice(pis)
            ms = [p.source("gyro", on=esp_with("gyro")).field("accel.0").sliding(50, slide=10)
                  .filter(moving, selectivity=0.2) for _ in range(2)]
            merge(*ms, on=pi).print(on=pi)
        elif kind == "pair" and left >= 6:
            a = p.source("temperature", on=esp_with("temperature"), rate=10)
            b = p.source("temperature", on=esp_with("temperature"), rate=10)
            a.zip(b).window(values=10, agg="list").map(spread).csv("/tmp/pair.csv", on=rng.choice(servers))
        elif kind == "heavy" and left >= 5:
            s = p.source("gyro", on=esp_with("gyro"))
            s.field("accel").map(spectrum, cpu=40).window(values=100, agg="count").print()
        elif left < 5:
            # fill the budget exactly with a short chain
            s = p.source("hall", on=esp_with("hall"))
            if left >= 3:
                s = s.throttle(100)
            if left == 4:
                s = s.changes()
            if left >= 2:
                s.print()
    return p


def main():
    ap = argparse.ArgumentParser(description="Placement time for a large inventory.")
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--time-limit", type=float, default=60.0)
    ap.add_argument("--no-reduce", action="store_true", help="solve the ILP over every device")
    ap.add_argument("--esp-cpu", type=float, default=1.0,
                    help="cpu of the ESP32s (0.4: a heavy map no longer fits next to its sensor)")
    args = ap.parse_args()

    t0 = time.perf_counter()
    p = build(args.devices, args.steps, args.seed, args.esp_cpu)
    model = p.model()
    t_model = time.perf_counter() - t0
    print("inventory: %d devices; pipeline: %d steps, %d edges; model built and validated in %.2f s"
          % (len(model.devices), len(model.steps), len(model.edges()), t_model))
    rows = []
    base = None
    for strategy in ("central", "edge", "optimal"):
        t = time.perf_counter()
        pl = model.place(strategy, time_limit=args.time_limit, reduce=not args.no_reduce)
        dt = time.perf_counter() - t
        if base is None:
            base = pl.total_traffic
        s = pl.solver
        rows.append((strategy, "%.2f" % dt, format_rate(pl.total_traffic),
                     "%.3g" % (pl.total_traffic / base) if base else "-",
                     "%.3g%%" % (100 * s["gap"]) if s.get("gap") is not None else "-",
                     format_rate(s["bound"]) if s.get("bound") is not None else "-",
                     "%d/%d/%d" % (s["binaries"], s["variables"], s["constraints"]) if s else "-",
                     str(s["devices_in_model"]) if s else "-"))
    header = ("strategy", "seconds", "traffic", "vs central", "MIP gap", "bound", "bin/vars/rows", "devices in ILP")
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))


if __name__ == "__main__":
    main()
