# The heap a device's replay cache holds between handshakes, on the MicroPython unix port, after
# N accepted hellos (the cache remembers 64: DEFAULT_REPLAY_SIZE), with a baseline measured in the
# same run: the cache as a device kept it before, two dicts (nonce -> (timestamp, key name), and
# the cut-offs), which grew with every hello until full and then kept its largest size. Each
# hello comes from one of 8 keys with a fresh 16-byte nonce and a timestamp one second later
# than the last (so nothing leaves the window and a full cache evicts); the heap is
# gc.mem_alloc() after gc.collect(), before the first hello and after the last, in a fresh
# interpreter per row. Also the time a hello's check and remember take (microseconds, median of
# 3 runs of 300 hellos into a full cache): the records are searched, not hashed.
#     python3 benchmarks/bench_replay_heap.py [--repeat 3]
# The unix port is 64-bit: on an ESP32 (32-bit) the dicts take about half, the records the same.
import argparse
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# The cache as a device kept it before (server.ReplayCache over two dicts), for the baseline.
DICTS = '''
class Cache:
    def __init__(self, window=60, size=64):
        self.window, self.size = window, size
        self.seen, self.floors = {}, {}

    def check(self, nonce, ts, now, who):
        if ts <= self.floors.get(who, -1) or nonce in self.seen:
            raise ValueError("replay")

    def add(self, nonce, ts, now, who):
        seen = self.seen
        if len(seen) >= self.size:
            limit = now - self.window
            for k in list(seen):
                if seen[k][0] < limit:
                    del seen[k]
            while len(seen) >= self.size:
                count = {}
                for k in seen:
                    count[seen[k][1]] = count.get(seen[k][1], 0) + 1
                top = None
                for w in count:
                    if top is None or count[w] > count[top]:
                        top = w
                old = None
                for k in seen:
                    if seen[k][1] == top and (old is None or seen[k][0] < seen[old][0]):
                        old = k
                ts_old = seen.pop(old)[0]
                if ts_old > self.floors.get(top, -1):
                    self.floors[top] = ts_old
        seen[nonce] = (ts, who)
'''

RECORDS = '''
from sensormesh.device.secure.server import ReplayCache as Cache
'''

RUN = '''
import gc, os, time
NOW = 1700000000
names = ["reader-%d" % i for i in range(8)]
gc.collect()
before = gc.mem_alloc()
cache = Cache()
t0 = time.ticks_us()
for i in range(N):
    ts = NOW + i
    nonce = os.urandom(16)
    cache.check(nonce, ts, ts, names[i % 8])
    cache.add(nonce, ts, ts, names[i % 8])
t1 = time.ticks_us()
nonce = None
gc.collect()
print(gc.mem_alloc() - before, time.ticks_diff(t1, t0))
'''


def micropython():
    for cand in (os.path.join(ROOT, ".venv", "bin", "micropython"), shutil.which("micropython")):
        if cand and os.path.exists(cand):
            return cand
    sys.exit("bench_replay_heap: the MicroPython unix port is not installed (bash scripts/dev setup)")


def measure(mp, impl, n):
    code = impl + "\nN = %d\n" % n + RUN
    out = subprocess.run([mp, "-X", "heapsize=1M", "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    if out.returncode != 0:
        sys.exit("bench_replay_heap: micropython failed:\n" + out.stderr + out.stdout)
    heap, us = out.stdout.split()
    return int(heap), int(us)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=3, help="runs of the timed rows (the median is shown)")
    args = ap.parse_args()
    mp = micropython()
    print("replay cache between handshakes, MicroPython unix port (64-bit), 64 hellos remembered")
    print("%-8s %14s %14s %8s" % ("hellos", "dicts (bytes)", "records (bytes)", "ratio"))
    for n in (4, 16, 64, 300):
        old = measure(mp, DICTS, n)[0]
        new = measure(mp, RECORDS, n)[0]
        print("%-8d %14d %14d %8.2f" % (n, old, new, new / old))
    old_t, new_t = [], []
    for _ in range(max(1, args.repeat)):
        old_t.append(measure(mp, DICTS, 300)[1] / 300)
        new_t.append(measure(mp, RECORDS, 300)[1] / 300)
    old_t.sort()
    new_t.sort()
    print()
    print("time to check and remember one hello (300 hellos, median of %d runs)" % len(old_t))
    print("%-8s %14s %14s %8s" % ("", "dicts (us)", "records (us)", "ratio"))
    mid = len(old_t) // 2
    print("%-8s %14.1f %14.1f %8.2f" % ("hello", old_t[mid], new_t[mid], new_t[mid] / old_t[mid]))


if __name__ == "__main__":
    main()
