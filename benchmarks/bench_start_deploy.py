"""Time to start and to deploy N simulated boards under `sensormesh up`, in parallel (the
default: 16 devices starting at once, 32 deploying at once) against one at a time (the
baseline, measured in the same run).

Each board is a MicroPython unix-port process windowing its simulated temperature (mean of 2);
one CPython device (the PC) merges every board's windows into one callback sink, so the PC's
assignment has N pipe inputs (sent in parts above about 130 boards with keys). Keys on, as `up`
runs by default. For each N and mode, one `up` run that stops as soon as everything runs:

  start    from `up` to every local device listening
  deploy   placement, control sessions, every assignment deployed and started
  stop     the pipeline stopped (upstream first, in waves) and the processes ended

    python benchmarks/bench_start_deploy.py                     # 50, 100, 200; baseline at 50
    python benchmarks/bench_start_deploy.py --sizes 200 --baseline-sizes 0 --heap 512K

The machine may be shared: figures of a busy machine are upper bounds; run it a few times.
"""
import argparse
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from sensormesh.controller import local, runner  # noqa: E402
from sensormesh.controller import supervisor  # noqa: E402
from sensormesh.controller.pipeline_file import load_model  # noqa: E402


def fleet(n):
    lines = ["pipeline: fleet-%d" % n, "devices:"]
    lines += ['  b%03d: {interpreter: micropython, sensors: ["temperature@1"], local: true}' % i for i in range(n)]
    lines += ["  pc: {interpreter: cpython, local: true}", "steps:"]
    for i in range(n):
        lines.append("  t%03d: {type: source, sensor: temperature, on: b%03d}" % (i, i))
        lines.append("  w%03d: {type: window, values: 2, agg: mean, input: t%03d, on: b%03d}" % (i, i, i))
    lines.append("  all: {type: merge, inputs: [%s], on: pc}" % ", ".join("w%03d" % i for i in range(n)))
    lines += ["sinks:", "  out: {type: callback, input: all, on: pc}"]
    return "\n".join(lines) + "\n"


def measure(n, serial, heap):
    """{start, deploy, stop} seconds of one `up` of n boards (serial: one device at a time)."""
    work = tempfile.mkdtemp(prefix="bench-start-deploy-")
    old_cwd = os.getcwd()
    os.chdir(work)           # its key store and metrics file stay there
    path = os.path.join(work, "fleet.yaml")
    with open(path, "w") as f:
        f.write(fleet(n))
    model = load_model(path)
    r = {}
    real = runner.deploy
    saved = (local.START_WORKERS, supervisor.FAN_OUT)

    def timed(*a, **kw):
        r["started"] = time.monotonic()
        out = real(*a, **kw)
        r["deployed"] = time.monotonic()
        return out
    runner.deploy = timed
    if serial:
        local.START_WORKERS, supervisor.FAN_OUT = 1, 1
    t0 = time.monotonic()
    try:
        runner.up(model, until=lambda: "deployed" in r, heap=heap, timeout=10)
    finally:
        runner.deploy = real
        local.START_WORKERS, supervisor.FAN_OUT = saved
        os.chdir(old_cwd)
    end = time.monotonic()
    if "deployed" not in r:
        return None
    return {"start": r["started"] - t0, "deploy": r["deployed"] - r["started"], "stop": end - r["deployed"]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="50,100,200")
    ap.add_argument("--baseline-sizes", default="50", help="sizes also run one device at a time (0: none)")
    ap.add_argument("--heap", default=None, help="heap of every board (default: the devices' own, 224K)")
    args = ap.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    serial_sizes = [int(x) for x in args.baseline_sizes.split(",") if int(x)]
    print("bench_start_deploy: load average at start %.1f; %d cores" % (os.getloadavg()[0], os.cpu_count()))
    rows = []
    for n in sorted(set(sizes) | set(serial_sizes)):
        for serial in ([True] if n in serial_sizes else []) + ([False] if n in sizes else []):
            m = measure(n, serial, args.heap)
            rows.append((n, serial, m, os.getloadavg()[0]))
            print("  %d boards, %s: %s" % (n, "one at a time" if serial else "parallel", m), flush=True)
    print("\n%6s %-14s %8s %8s %10s %8s %6s" % ("boards", "mode", "start s", "deploy s", "start+dep", "stop s", "load"))
    for n, serial, m, load in rows:
        if m is None:
            print("%6d %-14s  (failed)" % (n, "one at a time" if serial else "parallel"))
            continue
        print("%6d %-14s %8.2f %8.2f %10.2f %8.2f %6.1f" % (n, "one at a time" if serial else "parallel", m["start"],
                                                         m["deploy"], m["start"] + m["deploy"], m["stop"], load))
    base = {n: m for n, serial, m, _ in rows if serial and m}
    for n, serial, m, _ in rows:
        if not serial and m and n in base:
            b = base[n]
            print("ratio at %d boards, parallel / one at a time: start %.2f, deploy %.2f, start+deploy %.2f"
                  % (n, m["start"] / b["start"], m["deploy"] / b["deploy"],
                     (m["start"] + m["deploy"]) / (b["start"] + b["deploy"])))
    print("target: 200 boards started and deployed within 30 s")


if __name__ == "__main__":
    main()
