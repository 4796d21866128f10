# The replay buffer of a pipe (runtime/replay.py, Sender) on the MicroPython unix port and on
# CPython, against a baseline measured in the same run: another checkout's Sender (--against DIR,
# e.g. a worktree of the previous commit, whose buffer was one list or array of every value).
#   fits     a burst of N values (ints, then floats) into a buffer of 1000, on a heap whose free
#            space is only holes of a given size (the heap filled with blocks of that size, every
#            other one freed): does it fit? A buffer that needs one block for all its values
#            stops fitting once that block exceeds the holes; a board's heap after a handshake
#            looks like this (34 KB free, largest free block 8.5 KB, measured on a keyed board
#            under 96K).
#   heap     the heap the buffer holds with 1000 values (gc.mem_alloc() after gc.collect()).
#   time     microseconds per value for add, take (arrays of 50) and acknowledge, 20,000 values
#            (the median of --repeat runs, each a fresh interpreter).
#     python3 benchmarks/bench_replay_buffer.py --against DIR [--repeat 3]
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
HOLES = (256, 512, 1024, 2048, 4096, 8192)
BURST = 600

PROBE = '''
import gc, sys, time
sys.path.insert(0, %(root)r)
from sensormesh.device.runtime.replay import Sender
MP = hasattr(gc, "mem_alloc")
WHAT = %(what)r

def fits(hole, floats):
    gc.collect()
    hold = [None] * (gc.mem_free() // hole + 64)
    n = 0
    try:
        while n < len(hold):
            hold[n] = bytearray(hole - 32)
            n += 1
    except MemoryError:
        pass
    for i in range(1, n, 2):
        hold[i] = None
    gc.collect()
    ok = True
    try:
        tx = Sender(1000, 1)
        for i in range(%(burst)d):
            tx.add(i + 0.5 if floats else i)
        tx = None
    except MemoryError:
        ok = False
    hold = None
    gc.collect()
    return ok

if WHAT == "fits":
    for hole in %(holes)r:
        print("fits|%%d|%%d|%%d" %% (hole, fits(hole, False), fits(hole, True)))
elif WHAT == "heap":
    for floats in (0, 1):
        gc.collect()
        a = gc.mem_alloc()
        tx = Sender(1000, 1)
        for i in range(1000):
            tx.add(i + 0.5 if floats else i * 1000)
        gc.collect()
        print("heap|%%d|%%d" %% (floats, gc.mem_alloc() - a))
        tx = None
else:
    tx = Sender(1000, 1)
    now = time.ticks_us if MP else (lambda: int(time.perf_counter() * 1e6))
    t0 = now()
    v = 0.5
    for r in range(400):
        for i in range(50):
            tx.add(v)
            v += 1.0
        out = tx.take(50)
        tx.ack(tx.sent)
    dt = now() - t0
    if MP:
        dt = time.ticks_diff(now(), t0)
    assert len(out) == 50 and tx.held() == 0
    print("time|%%.3f" %% (dt / 20000.0))
'''


def run(interp, root, what):
    code = PROBE % {"root": root, "what": what, "burst": BURST, "holes": HOLES}
    argv = [interp, "-X", "heapsize=1M", "-c", code] if "micropython" in interp else [interp, "-c", code]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd="/")
    if r.returncode != 0:
        raise SystemExit("probe failed (%s, %s): %s" % (interp, root, r.stderr.strip()[-400:]))
    return [ln.split("|")[1:] for ln in r.stdout.splitlines() if "|" in ln]


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2]


def main(argv):
    if "--against" not in argv:
        print("usage: python3 benchmarks/bench_replay_buffer.py --against DIR [--repeat 3]")
        return 2
    other = os.path.abspath(argv[argv.index("--against") + 1])
    repeat = int(argv[argv.index("--repeat") + 1]) if "--repeat" in argv else 3
    mp = shutil.which("micropython")
    if not mp:
        raise SystemExit("the micropython command is missing: run `bash scripts/dev setup` first")
    sides = (("before (%s)" % os.path.basename(other), other), ("now", ROOT))
    fits = {name: {int(h): (a, b) for h, a, b in run(mp, root, "fits")} for name, root in sides}
    heap = {name: {int(f): int(b) for f, b in run(mp, root, "heap")} for name, root in sides}
    times = {}
    for _ in range(repeat):                      # alternating, each a fresh interpreter
        for name, root in sides:
            for interp in (mp, sys.executable):
                times.setdefault((name, interp), []).append(float(run(interp, root, "time")[0][0]))
    print("A burst of %d values into a replay buffer of 1000 on a heap whose free space is holes of"
          % BURST)
    print("one size (MicroPython unix port, 64-bit): fits = every value taken, no MemoryError")
    print("%-10s %18s %18s %18s %18s" % ("holes", "ints before", "ints now", "floats before", "floats now"))
    print("-" * 86)
    yes = lambda v: "fits" if v == "1" else "MemoryError"   # noqa: E731
    for h in HOLES:
        b, n = fits[sides[0][0]][h], fits["now"][h]
        print("%-10s %18s %18s %18s %18s" % ("%d B" % h, yes(b[0]), yes(n[0]), yes(b[1]), yes(n[1])))
    print()
    print("Heap held by a buffer of 1000 values (MicroPython, gc.mem_alloc() after gc.collect())")
    print("%-22s %12s %12s %8s" % ("values", "before", "now", "ratio"))
    print("-" * 58)
    for f, label in ((0, "ints (small)"), (1, "floats")):
        b, n = heap[sides[0][0]][f], heap["now"][f]
        print("%-22s %10.1f KB %10.1f KB %8.2f" % (label, b / 1024.0, n / 1024.0, n / float(b)))
    print()
    print("Microseconds per value: add, take in arrays of 50, acknowledge (20,000 floats, median of %d)"
          % repeat)
    print("%-22s %12s %12s %8s" % ("interpreter", "before", "now", "ratio"))
    print("-" * 58)
    for interp, label in ((mp, "MicroPython unix port"), (sys.executable, "CPython")):
        b, n = median(times[(sides[0][0], interp)]), median(times[("now", interp)])
        print("%-22s %12.2f %12.2f %8.2f" % (label, b, n, n / b))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
