# Heap of a device on the MicroPython unix port, from the precompiled (.mpy) bundle that
# `sensormesh board deploy` puts on a board:
#   1. imports: heap taken by the device runtime, all ESP32 drivers (on simulated hardware,
#      counted apart: a real board has `machine` built in), the assignment runtime and the
#      secure session; each group in a fresh interpreter under the heap cap, then everything
#      in one interpreter (under the cap, and uncapped for the total);
#   2. serving: heap while the device serves two sensor streams (a poti batched in 100 ms
#      time frames and an MPU-6050 sending every value, 100 Hz each) to two TCP clients.
#     python3 benchmarks/bench_heap.py [--heap 96K] [--seconds 3]
# Builds the bundle with mpy-cross into a temporary folder and runs the measuring half
# (benchmarks/heap_probe.py, precompiled too) with `micropython -X heapsize=96K`. The unix
# port is 64-bit: objects take about twice the memory they take on the 32-bit ESP32, so the
# figures are an upper bound for a board. Prints one table.
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading

ROOMY = "128K"    # the second heap size the serving part runs with

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

from heap_probe import GROUPS, STREAMS  # noqa: E402
from sensormesh import board  # noqa: E402
from sensormesh.client import Client  # noqa: E402


def parse(text):
    out = {}
    for line in text.splitlines():
        k, sep, v = line.partition("|")
        if sep:
            out[k] = v
    return out


def kb(v):
    if v is None:
        return "-"
    v = int(v)
    return "does not fit" if v < 0 else "%.1f KB" % (v / 1024.0)


class Probe:
    def __init__(self, heap):
        self.heap = heap
        self.mp = board._find_tool("micropython")
        mpy_cross = board._find_tool("mpy-cross")
        self.tmp = tempfile.mkdtemp(prefix="sensormesh-bench-")
        fs = board.build({"name": "bench"}, self.tmp, ROOT, mpy_cross=mpy_cross)
        extra = os.path.join(self.tmp, "extra")        # simulated hardware + the probe, precompiled
        os.makedirs(extra)
        for src in ("machine", "esp32", "dht", "fakeparts"):
            subprocess.check_call([mpy_cross, "-o", os.path.join(extra, src + ".mpy"),
                                   os.path.join(ROOT, "sensormesh", "fakehw", src + ".py")])
        subprocess.check_call([mpy_cross, "-o", os.path.join(extra, "heap_probe.mpy"),
                               os.path.join(HERE, "heap_probe.py")])
        self.env = dict(os.environ, MICROPYPATH=fs + ":" + extra)

    def start(self, args, heap=None):
        code = "import heap_probe; heap_probe.main(%r)" % (list(args),)
        return subprocess.Popen([self.mp, "-X", "heapsize=" + (heap or self.heap), "-c", code], env=self.env,
                                cwd=self.tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def run(self, args, heap=None):
        out, err = self.start(args, heap).communicate(timeout=120)
        return parse(out)

    def close(self):
        shutil.rmtree(self.tmp, ignore_errors=True)


def serve(probe, seconds, heap=None):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    p = probe.start(["serve", str(port), str(seconds)], heap)
    got = {}

    def read(req):
        name = req["sensor"]
        try:
            c = Client("127.0.0.1:%d" % port, timeout=seconds + 10)
        except OSError:
            got[name] = -1
            return
        try:
            c.send({"data-request": req})
            n = 0
            for msg in c.messages(raise_errors=False):
                if isinstance(msg, list):
                    n += len(msg)
            got[name] = n
        except OSError:
            got.setdefault(name, -1)
        finally:
            c.close()

    lines = []
    threads = []
    err = ""
    try:
        for line in p.stdout:
            lines.append(line)
            if "listening" in line:
                for req in STREAMS:
                    t = threading.Thread(target=read, args=(req,), daemon=True)
                    t.start()
                    threads.append(t)
                break
        rest, err = p.communicate(timeout=seconds + 60)
        lines.append(rest)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    for t in threads:
        t.join(5)
    return parse("".join(lines)), got, err


def ok(result):
    return "failed" not in result[0] and "live" in result[0]


def smallest_heap(probe, low, high, step=4):
    """The smallest heap (KB, to step) between low (fails) and high (works) that serves."""
    lo, hi = int(low[:-1]), int(high[:-1])
    while hi - lo > step:
        mid = (lo + hi) // 2 // step * step
        if ok(serve(probe, 1, "%dK" % mid)):
            hi = mid
        else:
            lo = mid
    return hi


def main(argv):
    heap = argv[argv.index("--heap") + 1] if "--heap" in argv else "96K"
    seconds = int(argv[argv.index("--seconds") + 1]) if "--seconds" in argv else 3
    probe = Probe(heap)
    try:
        alone = [probe.run(["imports", str(i)]) for i in range(len(GROUPS))]
        every = [str(i) for i in range(len(GROUPS))]
        together = probe.run(["imports"] + every)
        uncapped = probe.run(["imports"] + every, heap="4M")
        served = [serve(probe, seconds), serve(probe, seconds, ROOMY)]
        smallest = smallest_heap(probe, heap, ROOMY) if not ok(served[0]) and ok(served[1]) else None
    finally:
        probe.close()

    w = 44
    print("Device heap on the MicroPython unix port (64-bit: objects about twice their ESP32 size);")
    print("modules precompiled with mpy-cross; bytes = gc.mem_alloc() growth after gc.collect()")
    print()
    print("%-*s %14s %14s %14s" % (w, "imports", "alone, " + heap, "all, " + heap, "all, uncapped"))
    print("-" * (w + 45))
    print("%-*s %14s %14s %14s" % (w, "interpreter + probe code", kb(alone[0].get("base")), kb(together.get("base")),
                                   kb(uncapped.get("base"))))
    print("%-*s %14s %14s %14s" % (w, "simulated machine/esp32/dht (not on a board)", kb(alone[0].get("fake")),
                                   kb(together.get("fake")), kb(uncapped.get("fake"))))
    for i, (name, _) in enumerate(GROUPS):
        print("%-*s %14s %14s %14s" % (w, "+ " + name, kb(alone[i].get("g%d" % i)), kb(together.get("g%d" % i)),
                                       kb(uncapped.get("g%d" % i))))
    fits = all(int(together.get("g%d" % i, -1)) >= 0 for i in range(len(GROUPS)))
    print("%-*s %14s %14s %14s" % (w, "= whole device package + all drivers", "",
                                   kb(together.get("total")) if fits else "does not fit", kb(uncapped.get("total"))))
    runtime_drivers = sum(int(alone[i].get("g%d" % i, 0)) for i in (0, 1))
    print("%-*s %14s" % (w, "= runtime + all drivers (sum of the above)", kb(runtime_drivers)))
    print("%-*s %14s %14s" % (w, "free heap after the imports", kb(alone[0].get("free")), kb(together.get("free"))))
    print()
    print("serving for %d s: poti at 100 Hz in 100 ms frames + MPU-6050 at 100 Hz, every value alone;" % seconds)
    print("two clients over TCP; heap sampled between loop turns; live figures include the simulated")
    print("hardware and the probe code (see above)")
    print("%-*s %14s %14s" % (w, "serving", "heap " + heap, "heap " + ROOMY))
    print("-" * (w + 45))

    def row(label, fn):
        print("%-*s %14s %14s" % (w, label, fn(served[0]), fn(served[1])))

    row("device + 2 board sensors, ready (live)", lambda r: kb(r[0].get("ready")))
    row("peak gc.mem_alloc() while serving", lambda r: kb(r[0].get("peak")))
    row("max live heap (gc every 10th turn)", lambda r: kb(r[0].get("live_max")))
    row("lowest gc.mem_free() while serving", lambda r: kb(r[0].get("low_free")))
    row("live heap after serving", lambda r: kb(r[0].get("live")))
    row("loop turns", lambda r: r[0].get("turns", "-"))
    row("values sent (knob, imu)", lambda r: r[0].get("values") or "-")
    row("values received (imu, knob)", lambda r: ", ".join("%d" % r[1][k] for k in sorted(r[1])) or "-")
    row("result", lambda r: "FAILED" if "failed" in r[0] or "live" not in r[0] else "ok")
    if smallest:
        print("%-*s %14s" % (w, "smallest heap that serves (4 KB steps)", "%d KB" % smallest))
    for r, h in zip(served, (heap, ROOMY)):
        if not ok(r):
            errs = [line for line in r[2].splitlines() if "Error" in line]
            print("serving under %s failed: %s" % (h, errs[0][:150] if errs else "(no error line)"))
    # a device that does not fit the cap is a finding, not a broken benchmark
    return 0 if ok(served[1]) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
