"""What a device started from the command line costs: `sensormesh worker` against the device
package's own entry point (`python -m sensormesh.device`, the baseline, as `sensormesh up` starts
its local CPython devices), in one run.

For each: the time from the process's start until it prints that it listens, and its resident
memory (VmRSS) then; --runs times each, alternating, medians and minimums shown, with the ratio
to the baseline. Also the time `sensormesh --help` takes (it loads every command).

    python benchmarks/bench_cli_start.py [--runs 5]
"""
import argparse
import os
import select
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

COMMANDS = [
    ("python -m sensormesh.device (baseline)", ["-m", "sensormesh.device"]),
    ("sensormesh worker", ["-m", "sensormesh.cli", "worker"]),
]


def one_start(args, timeout=60.0):
    """(seconds until 'listening', VmRSS kB then) of one device process, stopped afterwards."""
    env = dict(os.environ, PYTHONPATH=ROOT, PYTHONUNBUFFERED="1")
    t0 = time.monotonic()
    p = subprocess.Popen([sys.executable] + args + ["--port", "0", "--sensors", "counter", "--insecure"],
                         cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        out, deadline = "", t0 + timeout
        while "listening on" not in out:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([p.stdout], [], [], left)[0]:
                raise RuntimeError("%s: no start line within %.0f s" % (" ".join(args), timeout))
            line = p.stdout.readline()
            if not line:
                raise RuntimeError("%s exited: %r" % (" ".join(args), out))
            out += line
        took = time.monotonic() - t0
        with open("/proc/%d/status" % p.pid) as f:
            rss = [int(ln.split()[1]) for ln in f if ln.startswith("VmRSS:")][0]
        return took, rss
    finally:
        p.terminate()
        p.wait(10)
        p.stdout.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    res = {name: [] for name, _ in COMMANDS}
    for _ in range(a.runs):
        for name, args in COMMANDS:
            res[name].append(one_start(args))
    helps = []
    env = dict(os.environ, PYTHONPATH=ROOT)
    for _ in range(a.runs):
        t0 = time.monotonic()
        subprocess.run([sys.executable, "-m", "sensormesh.cli", "--help"], cwd=ROOT, env=env,
                       capture_output=True, check=True, timeout=60)
        helps.append(time.monotonic() - t0)
    base_t = statistics.median(t for t, _ in res[COMMANDS[0][0]])
    base_m = statistics.median(m for _, m in res[COMMANDS[0][0]])
    print("%d runs each, alternating; listening: from the process's start to its start line" % a.runs)
    print("%-40s %14s %10s %12s %10s" % ("command", "listening s", "ratio", "VmRSS MB", "ratio"))
    for name, _ in COMMANDS:
        ts = [t for t, _ in res[name]]
        ms = [m for _, m in res[name]]
        print("%-40s %6.2f (%5.2f) %10.2f %5.1f (%5.1f) %10.2f" % (
            name, statistics.median(ts), min(ts), statistics.median(ts) / base_t,
            statistics.median(ms) / 1024, min(ms) / 1024, statistics.median(ms) / base_m))
    print("sensormesh --help (loads every command): %.2f s median, %.2f s min" % (statistics.median(helps), min(helps)))


if __name__ == "__main__":
    main()
