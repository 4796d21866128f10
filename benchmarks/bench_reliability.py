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
# 4. A sink board restarted while its PC upstream holds a backlog: a -> m (a PC relaying) -> c
#    (pipe_in -> callback), c killed with SIGKILL while a streams 1000 values/s, started again
#    once m holds --backlog values for it, and its assignment deployed; the time until the
#    controller has every value, each exactly once, and what c refused meanwhile (frames it had
#    no heap to decode, values it had no heap to keep). c runs on the MicroPython unix port from
#    the precompiled package under each heap of --heaps; the baseline in the same run is c on
#    CPython (no heap limit). Run it in another checkout to measure that checkout's devices.
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


def sink_restart(sink, heap, backlog, n):
    """(seconds from the restarted sink's deployment to the last value, frames refused for want
    of heap, values taken again for want of heap) for part 4; raises if a value was lost or
    came twice."""
    from procs import restart_on_port, wait_step
    ports = {d: free_port() for d in "amc"}
    addr = {d: "127.0.0.1:%d" % p for d, p in ports.items()}
    procs = [start_device("cpython", ["--port", str(ports["a"]), "--name", "a", "--sensors", "counter@1000"]),
             start_device("cpython", ["--port", str(ports["m"]), "--name", "m", "--sensors", ""])]
    cargs = ["--port", str(ports["c"]), "--name", "c", "--sensors", ""]
    devs = []

    def start(interp, args):
        p = start_device(interp, args, heap=heap)
        devs.append(p)
        return p
    c = start(sink, cargs)
    asg = chain(addr, n)
    got = []
    events = []       # what the controller reports meanwhile (the dead sink's session closing)
    deliver = lambda d, s, v: got.extend(v)    # noqa: E731
    try:
        dep = deploy(asg, addr)
        dep.watch(deliver, lambda: len(got) >= 500, timeout=30, on_event=events.append)
        os.kill(c.p.pid, signal.SIGKILL)
        c.p.wait(10)
        dep.watch(deliver, lambda: False, timeout=0.5, on_event=events.append)   # what the dead sink had sent
        # m keeps what c has not acknowledged: wait until it holds the backlog
        wait_step(addr, "m", "o2", lambda st: st["unacked"] >= backlog, timeout=60)
        c = restart_on_port(start, sink, cargs, ports["c"])
        t0 = time.monotonic()
        dc = deploy({"c": asg["c"]}, {"c": addr["c"]}, deliveries=dep.deliveries)
        dc.watch(deliver, lambda: len(got) >= n, timeout=120, on_event=events.append)
        took = time.monotonic() - t0
        if got != list(range(n)):
            missing = sorted(set(range(n)) - set(got))
            raise AssertionError("%d values missing after %.0f s (first %s), %d more than once" % (
                len(missing), took, missing[:3], len(got) - len(set(got))))
        dc.close()
        dep.close()
        c.p.kill()
        log = c.p.stdout.read() + c.p.stderr.read()
        return took, log.count("no memory free for a frame"), log.count("no heap free for value")
    finally:
        for p in procs + devs:
            p.stop()


def part4(rounds, heaps, backlog):
    n = backlog + 4000
    print("4. a sink restarted while its PC upstream holds %d values for it (%d values in all)" % (backlog, n))
    print("%-22s %8s %12s %12s %14s %16s" % ("sink", "runs ok", "min s", "median s", "frames refused",
                                            "values again"))
    base = None
    for sink, heap in [("cpython", None)] + [("micropython", h) for h in heaps]:
        ok, times, refused, again, failed = 0, [], 0, 0, []
        for _ in range(rounds):
            try:
                t, f, v = sink_restart(sink, heap, backlog, n)
            except Exception as e:       # a value lost, or the sink never caught up: a failed run
                import traceback
                where = traceback.extract_tb(e.__traceback__)[-1]
                failed.append("%s: %s (%s:%d)" % (type(e).__name__, str(e)[:120],
                                                  os.path.basename(where.filename), where.lineno))
                continue
            ok += 1
            times.append(t)
            refused += f
            again += v
        name = sink if heap is None else "%s, heap %s" % (sink, heap)
        med = statistics.median(times) if times else float("nan")
        print("%-22s %5d/%-2d %12.2f %12.2f %14d %16d%s" % (
            name, ok, rounds, min(times) if times else float("nan"), med, refused, again,
            "" if base is None or not times else "   ratio to cpython %.2f" % (med / base)))
        if heap is None and times:
            base = med
        for f in failed:
            print("      failed: " + f)
    print()


def main():
    # a MicroPython sender streams a tenth: 100,000 values by default, long enough that the
    # deployment inside the timed span does not flatten the ratio
    import argparse
    ap = argparse.ArgumentParser(description="Acknowledged pipes: throughput with acks on vs off, the "
                                             "replay buffer's heap on MicroPython, recovery after a kill.")
    ap.add_argument("values", nargs="?", type=int, default=1000000,
                    help="values per throughput run (a MicroPython sender streams a tenth; default 1000000)")
    ap.add_argument("rounds", nargs="?", type=int, default=3, help="rounds per mode (default 3)")
    ap.add_argument("parts", nargs="?", default="123", help="which parts to run, e.g. 13 (default 123; 4: a "
                                                           "sink board restarted with a backlog waiting)")
    ap.add_argument("--heaps", default="112K,128K", help="part 4: the MicroPython sink's heaps (default 112K,128K)")
    ap.add_argument("--backlog", type=int, default=3000, help="part 4: values m holds for the sink (default 3000)")
    args = ap.parse_args()
    n, rounds, parts = args.values, args.rounds, args.parts
    if "1" in parts:
        part1(n, rounds)
    if "2" in parts:
        part2()
    if "3" in parts:
        part3(rounds)
    if "4" in parts:
        part4(rounds, args.heaps.split(","), args.backlog)


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
