# Acknowledged pipes: what they cost and how fast a chain recovers.
#
#     python benchmarks/bench_reliability.py [values] [rounds] [parts, e.g. 123 or 3]
#
# 1. Throughput with acknowledgements vs without, in one run: a counter source read as fast as
#    the pipe takes it on device a -> pipe (10 ms frames) -> count window on device b -> callback.
#    Values/s = values / (start .. last window delivered). The same pipe with `acks: false` (no
#    numbering, no replay buffer, no acks: the original design's at-most-once pipe) is the
#    baseline; rounds alternate, min/median per mode, ratio of medians.
# 2. The replay buffer's heap on MicroPython: bytes per value held, for ints, floats and small
#    dicts, measured with gc.mem_alloc() in the unix port (64-bit: about twice an ESP32's).
# 3. Time from a device's death to the stream resuming: a -> m -> c, m killed with SIGKILL
#    mid-stream and started again at once (process start + deploy of its assignment), until the
#    sink gets the next new value. Every value is checked exactly once.
import os
import signal
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

from procs import Proc, free_port, need_micropython, start_device  # noqa: E402
from sensormesh.controller.deploy import deploy  # noqa: E402

WINDOW = 1000


def pair(addr, n, acks):
    po = {"edge": "e", "to": addr["b"], "time-frame": 10}
    if not acks:
        po["acks"] = False
    return {
        "a": {"pipeline": "bench", "epoch": 1, "steps": [
            {"id": "s", "type": "source", "params": {"sensor": "counter", "rate": 0, "count": n}},
            {"id": "o", "type": "pipe_out", "params": po, "inputs": ["s"]}]},
        "b": {"pipeline": "bench", "epoch": 1, "steps": [
            {"id": "i", "type": "pipe_in", "params": {"edge": "e"}},
            {"id": "w", "type": "window", "params": {"values": WINDOW, "agg": "count"}, "inputs": ["i"]},
            {"id": "k", "type": "callback", "params": {}, "inputs": ["w"]}]},
    }


def throughput(interp_a, n, acks):
    ports = {d: free_port() for d in "ab"}
    procs = [start_device(interp_a, ["--port", str(ports["a"]), "--name", "a", "--sensors", "counter@0"]),
             start_device("cpython", ["--port", str(ports["b"]), "--name", "b", "--sensors", ""])]
    addr = {d: "127.0.0.1:%d" % p for d, p in ports.items()}
    try:
        got = []
        t0 = time.monotonic()
        dep = deploy(pair(addr, n, acks), addr)
        dep.watch(lambda d, s, v: got.extend(v), lambda: sum(got) >= n, timeout=300)
        dt = time.monotonic() - t0
        dep.close()
        assert sum(got) == n, (sum(got), n)
        return n / dt
    finally:
        for p in procs:
            p.stop()


HEAP_SCRIPT = """
import gc
from sensormesh.device.runtime.replay import Sender
def fill(make, n):
    gc.collect()
    before = gc.mem_alloc()
    tx = Sender(n, 1)
    for i in range(n):
        tx.add(make(i))
    gc.collect()
    used = gc.mem_alloc() - before
    return used, tx
for name, make in (("int", lambda i: i), ("float", lambda i: i * 0.5 + 0.25),
                   ("dict", lambda i: {"temperature": i * 0.5 + 0.25, "humidity": 40})):
    used, tx = fill(make, 1000)
    print(name, used, used / 1000)
    tx = None
"""


def heap():
    mp = need_micropython()
    r = subprocess.run([mp, "-X", "heapsize=512K", "-c", HEAP_SCRIPT], cwd=ROOT, capture_output=True, text=True,
                       env=dict(os.environ, MICROPYPATH=ROOT + ":.frozen"), timeout=60)
    out = {}
    for line in r.stdout.splitlines():
        name, used, per = line.split()
        out[name] = (int(used), float(per))
    if not out:
        raise SystemExit("heap probe failed: " + r.stderr)
    return out


def chain(addr, n):
    return {
        "a": {"pipeline": "rec", "epoch": 1, "steps": [
            {"id": "s", "type": "source", "params": {"sensor": "counter", "count": n}},
            {"id": "o1", "type": "pipe_out", "params": {"edge": "e1", "to": addr["m"], "time-frame": 10},
             "inputs": ["s"]}]},
        "m": {"pipeline": "rec", "epoch": 1, "steps": [
            {"id": "i1", "type": "pipe_in", "params": {"edge": "e1"}},
            {"id": "o2", "type": "pipe_out", "params": {"edge": "e2", "to": addr["c"], "time-frame": 10},
             "inputs": ["i1"]}]},
        "c": {"pipeline": "rec", "epoch": 1, "steps": [
            {"id": "i2", "type": "pipe_in", "params": {"edge": "e2"}},
            {"id": "k", "type": "callback", "params": {}, "inputs": ["i2"]}]},
    }


def start_light(interp, args):
    """A device process the way `sensormesh up` starts one (python|micropython -m sensormesh.device)."""
    if interp == "micropython":
        return start_device(interp, args)
    p = Proc([sys.executable, "-m", "sensormesh.device"] + args)
    p.wait_line("listening on")
    return p


def recovery(middle, n=3000):
    """(seconds to a new process listening, to deployed, to the first new value at the sink)."""
    ports = {d: free_port() for d in "amc"}
    procs = [start_device("cpython", ["--port", str(ports["a"]), "--name", "a", "--sensors", "counter@1000"]),
             start_light(middle, ["--port", str(ports["m"]), "--name", "m", "--sensors", ""]),
             start_device("cpython", ["--port", str(ports["c"]), "--name", "c", "--sensors", ""])]
    addr = {d: "127.0.0.1:%d" % p for d, p in ports.items()}
    asg = chain(addr, n)
    got = []
    try:
        dep = deploy(asg, addr)
        ev = []
        dep.watch(lambda d, s, v: got.extend(v), lambda: len(got) >= 800, timeout=30, on_event=ev.append)
        t0 = time.monotonic()
        os.kill(procs[1].p.pid, signal.SIGKILL)
        procs[1].p.wait(10)
        seen = max(got)
        procs.append(start_light(middle, ["--port", str(ports["m"]), "--name", "m", "--sensors", ""]))
        t_listen = time.monotonic() - t0
        dm = deploy({"m": asg["m"]}, {"m": addr["m"]})
        t_deploy = time.monotonic() - t0
        dep.watch(lambda d, s, v: got.extend(v), lambda: max(got) > seen, timeout=30, on_event=ev.append)
        t_resume = time.monotonic() - t0
        dep.watch(lambda d, s, v: got.extend(v), lambda: len(got) >= n, timeout=60, on_event=ev.append)
        assert got == list(range(n)), "values lost or repeated"
        dm.close()
        dep.close()
        return t_listen, t_deploy, t_resume
    finally:
        for p in procs:
            p.stop()


def main():
    # a MicroPython sender streams a tenth: 100,000 values by default, long enough that the
    # deployment inside the timed span does not flatten the ratio
    import argparse
    ap = argparse.ArgumentParser(description="Acknowledged pipes: throughput with acks on vs off, the "
                                             "replay buffer's heap on MicroPython, recovery after a kill.")
    ap.add_argument("values", nargs="?", type=int, default=1000000,
                    help="values per throughput run (a MicroPython sender streams a tenth; default 1000000)")
    ap.add_argument("rounds", nargs="?", type=int, default=3, help="rounds per mode (default 3)")
    ap.add_argument("parts", nargs="?", default="123", help="which parts to run, e.g. 13 (default 123)")
    args = ap.parse_args()
    n, rounds, parts = args.values, args.rounds, args.parts
    if "1" in parts:
        part1(n, rounds)
    if "2" in parts:
        part2()
    if "3" in parts:
        part3(rounds)


def part1(n, rounds):
    print("1. throughput, counter -> pipe (10 ms frames) -> count window -> callback, %d values" % n)
    print("%-12s %-6s %12s %12s" % ("sender", "acks", "min v/s", "median v/s"))
    for interp, nn in (("cpython", n), ("micropython", n // 10)):
        res = {True: [], False: []}
        for _ in range(rounds):
            for acks in (False, True):
                res[acks].append(throughput(interp, nn, acks))
        for acks in (False, True):
            print("%-12s %-6s %12.0f %12.0f" % (interp, "on" if acks else "off", min(res[acks]),
                                                statistics.median(res[acks])))
        print("%-12s ratio acks on / off (medians): %.3f" % (interp, statistics.median(res[True])
                                                                / statistics.median(res[False])))
    print()


def part2():
    print("2. replay buffer heap on the MicroPython unix port (64-bit), 1000 values held")
    for name, (used, per) in heap().items():
        print("   %-6s %7d bytes  %6.1f bytes/value" % (name, used, per))
    print()


def part3(rounds):
    print("3. death of the middle device -> stream resumes (kill -9, restarted at once, 1000 values/s)")
    print("%-12s %12s %12s %16s" % ("middle", "listening s", "deployed s", "first new value s"))
    for middle in ("cpython", "micropython"):
        runs = [recovery(middle) for _ in range(rounds)]
        med = [statistics.median(r[i] for r in runs) for i in range(3)]
        print("%-12s %12.3f %12.3f %16.3f   (medians of %d; min resume %.3f)" % (
            middle, med[0], med[1], med[2], rounds, min(r[2] for r in runs)))


if __name__ == "__main__":
    main()
