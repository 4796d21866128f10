# What a board builds to send the callback values waiting for the controller, on the MicroPython
# unix port: the largest JSON text built at once (a block the heap must have free in one piece),
# all JSON built, and all heap allocated while sending (bytes, gc off: what the collector must
# reclaim), for N values waiting (256 leave at once on a board: DELIVER_BURST). Baseline in the
# same run: the way values left before, the JSON of every waiting value built first to measure
# it, then split into messages of at most DELIVER_MAX bytes (each measured again); now: 64 values
# at a time at first, then as many as fitted in one message (at most 128: DELIVER_CHUNK), split
# only when their JSON is larger. Values: the README demo's smoothed temperatures (floats such as
# 48.14999999999999) and small counters (ints). The subscriber is a stand-in that keeps nothing.
#     python3 benchmarks/bench_delivery_heap.py
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# The previous way, for the baseline: every waiting value's JSON first, then split (recursively).
BEFORE = '''
def messages(d, epoch, dumps, limit):
    tx = d.tx
    first = tx.sent
    vals = tx.take(1 << 30)
    out = []
    split(out, d.sid, epoch, tx.run, first, vals, dumps, limit)
    return out

def split(out, sid, epoch, run, first, vals, dumps, limit):
    msg = {"deliver": {"step": sid, "epoch": epoch, "values": vals, "seq": first, "run": run}}
    n = len(dumps(msg))
    if n <= limit or len(vals) < 2:
        out.append(msg)
        return
    k = n // limit + 1
    step = (len(vals) + k - 1) // k
    for i in range(0, len(vals), step):
        split(out, sid, epoch, run, first + i, vals[i:i + step], dumps, limit)

def send(rt):
    for d in rt.deliveries.values():
        for msg in messages(d, rt.epoch, dumps, delivery.DELIVER_MAX):
            for s in rt.subscribers:
                s.conn.send(msg)
'''

NOW = '''
def send(rt):
    delivery.send(rt)
'''

HEAD = '''
import gc
from sensormesh.device import codec
from sensormesh.device.runtime import delivery
built = [0, 0]
_dumps = codec.dumps

def dumps(msg):
    t = _dumps(msg)
    built[0] += len(t)
    if len(t) > built[1]:
        built[1] = len(t)
    return t
codec.dumps = dumps

class Conn:
    closed = False
    def send(self, msg):
        dumps(msg)          # the frame's JSON, as a connection builds it

class Session:
    confirms = False

class Rt:
    confirmed = False
    epoch = 1
    deliver_timer = None
    lost_deliveries = 0
    def outputs_acked(self):
        pass
    def log(self, text):
        pass

'''

TAIL = '''
rt = Rt()
s = Session()
s.conn = Conn()
rt.subscribers = [s]
d = delivery.Delivery(rt, "temperature")
rt.deliveries = {"temperature": d}
for i in range(N):
    d.tx.add(48.14999999999999 + i / 7 if KIND == "float" else i)
gc.collect()
gc.disable()
before = gc.mem_alloc()
send(rt)
used = gc.mem_alloc() - before
gc.enable()
print(built[1], built[0], used)
'''


def micropython():
    for cand in (os.path.join(ROOT, ".venv", "bin", "micropython"), shutil.which("micropython")):
        if cand and os.path.exists(cand):
            return cand
    sys.exit("bench_delivery_heap: the MicroPython unix port is not installed (bash scripts/dev setup)")


def measure(mp, way, n, kind):
    code = "N = %d\nKIND = %r\n" % (n, kind) + HEAD + way + TAIL
    out = subprocess.run([mp, "-X", "heapsize=2M", "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    if out.returncode != 0:
        sys.exit("bench_delivery_heap: micropython failed:\n" + out.stderr + out.stdout)
    return [int(x) for x in out.stdout.split()]


def main():
    mp = micropython()
    print("sending the callback values waiting on a board (MicroPython unix port, 64-bit)")
    print("%-16s %-7s %13s %13s %12s %12s %13s %13s" % (
        "values waiting", "kind", "largest JSON", "largest JSON", "all JSON", "all JSON",
        "allocated", "allocated"))
    print("%-16s %-7s %13s %13s %12s %12s %13s %13s" % ("", "", "before", "now", "before", "now", "before", "now"))
    for kind in ("float", "int"):
        for n in (64, 256, 1000):
            b = measure(mp, BEFORE, n, kind)
            a = measure(mp, NOW, n, kind)
            print("%-16d %-7s %13d %13d %12d %12d %13d %13d" % (n, kind, b[0], a[0], b[1], a[1], b[2], a[2]))
            print("%-16s %-7s %13.2f %13s %12.2f %12s %13.2f" % ("  ratio now/before", "", a[0] / b[0], "",
                                                                   a[1] / b[1], "", a[2] / b[2]))


if __name__ == "__main__":
    main()
