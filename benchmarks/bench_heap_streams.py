# Heap of a device serving data requests on the MicroPython unix port, from the precompiled (.mpy) bundle that
# `sensormesh board deploy` puts on a board (the device heap benchmark):
#   baseline  a bare interpreter, and one that imports only the codec (the unit of the ratios);
#   imports   the device package, then all ten ESP32 drivers, then what a device loads later
#             (assignment runtime, secure session); each group in a fresh interpreter. The
#             drivers need the simulated `machine`/`esp32`/`dht` (sensormesh/fakehw), which a
#             board has built in: their own cost is measured in the same interpreter, before
#             the drivers, and reported apart ("as on a board" = measured - simulated hardware);
#   serving   a device started like a board's main.py does (device.start(config)) serving two
#             sensor streams (a poti batched in 100 ms time frames, an MPU-6050 sending every
#             value; 100 Hz each) to two CPython clients over TCP: heap ready, peak and live
#             while serving, under the cap and with room to spare;
#   smallest  the smallest -X heapsize at which the plain device (the simulated parts plus
#             device.run(config), no probe code loaded) serves both streams for --seconds
#             without a MemoryError: a bisection over real runs, 2 KB steps, at most 8 runs.
#     python3 benchmarks/bench_heap_streams.py [--heap 96K] [--seconds 3]
# The unix port is 64-bit: objects take up to twice the memory they take on the 32-bit ESP32,
# so the figures are an upper bound for a board (docs/performance.md). Prints one table.
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOMY = "256K"     # the heap the serving part also runs with, to see its figures without the cap
LOW_KB, HIGH_KB, STEP_KB, MAX_RUNS = 40, 160, 2, 8   # bounds of the smallest-heap bisection
RATE_HZ = 100      # both sensors' rate: what a client should see per second

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

from heap_probe import BOARD, GROUPS, SENSORS, STREAMS  # noqa: E402
from sensormesh import board  # noqa: E402
from sensormesh.client import Client  # noqa: E402

FAKEHW = os.path.join(ROOT, "sensormesh", "fakehw")


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
    """The bundle built by board.build (mpy-cross), the simulated hardware and the probe
    precompiled next to it, and a way to run the unix port on them."""

    def __init__(self, heap):
        self.heap = heap
        self.mp = board._find_tool("micropython")
        mpy_cross = board._find_tool("mpy-cross")
        self.tmp = tempfile.mkdtemp(prefix="sensormesh-bench-")
        fs = board.build({"name": "bench"}, self.tmp, ROOT, mpy_cross=mpy_cross)
        extra = os.path.join(self.tmp, "extra")
        os.makedirs(extra)
        srcs = [os.path.join(FAKEHW, f) for f in sorted(os.listdir(FAKEHW))
                if f.endswith(".py") and f != "__init__.py"]
        for src in srcs + [os.path.join(HERE, "heap_probe.py")]:
            name = os.path.basename(src)[:-3]
            subprocess.check_call([mpy_cross, "-o", os.path.join(extra, name + ".mpy"), src])
        # only .mpy files on the path: the .py sources are not reachable from cwd either
        self.env = dict(os.environ, MICROPYPATH=fs + ":" + extra)

    def start(self, code, heap=None):
        return subprocess.Popen([self.mp, "-X", "heapsize=" + (heap or self.heap), "-c", code], env=self.env,
                                cwd=self.tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def run_code(self, code, heap=None):
        out, err = self.start(code, heap).communicate(timeout=120)
        return parse(out)

    def run(self, args, heap=None):
        return self.run_code("import heap_probe; heap_probe.main(%r)" % (list(args),), heap)

    def close(self):
        shutil.rmtree(self.tmp, ignore_errors=True)


def baseline(probe):
    bare = probe.run_code("import gc\ngc.collect()\nprint('bare|%d' % gc.mem_alloc())", "4M")
    codec = probe.run_code("import gc\ngc.collect()\na = gc.mem_alloc()\nimport sensormesh.device.codec\ngc.collect()\n"
                           "print('codec|%d' % (gc.mem_alloc() - a))", "4M")
    return int(bare["bare"]), int(codec["codec"])


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def serve(probe, seconds, heap, plain=False):
    """One device serving STREAMS to two clients for `seconds`. plain: the device exactly as
    a board runs it (simulated parts + device.run), killed afterwards; else the probe, which
    samples the heap and stops by itself. Returns (probe figures, values per sensor, stderr)."""
    port = free_port()
    if plain:
        cfg = {"name": "bench", "host": "127.0.0.1", "port": port, "sensors": SENSORS}
        p = probe.start(BOARD + "from sensormesh.device.core import start\nstart(%r).run()\n" % (cfg,), heap)
    else:
        p = probe.start("import heap_probe; heap_probe.main(['serve', '%d', '%d'])" % (port, seconds), heap)
    got = {}

    def read(req):
        name = req["sensor"]
        got[name] = 0
        end = time.monotonic() + seconds + 10
        try:
            c = Client("127.0.0.1:%d" % port, timeout=seconds + 10)
        except OSError:
            return
        try:
            c.send({"data-request": req})
            t_stop = time.monotonic() + seconds
            for msg in c.messages(raise_errors=False):
                if isinstance(msg, list):
                    got[name] += len(msg)
                if (plain and time.monotonic() >= t_stop) or time.monotonic() >= end:
                    break
        except OSError:
            pass
        finally:
            c.close()

    lines = []
    threads = []
    errs = []
    te = threading.Thread(target=lambda: errs.append(p.stderr.read()), daemon=True)
    te.start()
    killer = threading.Timer(seconds + 60, p.kill)   # bounds a hung device
    killer.start()
    try:
        for line in p.stdout:
            lines.append(line)
            if "listening" in line:
                for req in STREAMS:
                    t = threading.Thread(target=read, args=(req,), daemon=True)
                    t.start()
                    threads.append(t)
                break
        for t in threads:
            t.join(seconds + 15)
        if plain:
            p.kill()     # a device runs until reset; this one has served its time
        lines.append(p.stdout.read())
        p.wait()
        te.join(10)
    finally:
        killer.cancel()
        if p.poll() is None:
            p.kill()
            p.wait()
    err = "".join(errs)
    return parse("".join(lines)), got, err


def served_ok(result, seconds):
    """Both streams delivered at least 80 % of their values and nothing failed."""
    figures, got, err = result
    if "failed" in figures or "MemoryError" in err or "error in" in err:
        return False
    want = 0.8 * RATE_HZ * seconds
    return len(got) == len(STREAMS) and all(n >= want for n in got.values())


def smallest_heap(probe, seconds):
    """Bisect the smallest heap (KB, to STEP_KB) at which the plain device serves; bounded."""
    lo, hi = LOW_KB, HIGH_KB
    runs = 0
    if not served_ok(serve(probe, seconds, "%dK" % hi, plain=True), seconds):
        return None, 1
    runs += 1
    while hi - lo > STEP_KB and runs < MAX_RUNS:
        mid = (lo + hi) // 2 // STEP_KB * STEP_KB
        if served_ok(serve(probe, seconds, "%dK" % mid, plain=True), seconds):
            hi = mid
        else:
            lo = mid
        runs += 1
    return hi, runs


def main(argv):
    heap = argv[argv.index("--heap") + 1] if "--heap" in argv else "96K"
    seconds = int(argv[argv.index("--seconds") + 1]) if "--seconds" in argv else 3
    probe = Probe(heap)
    try:
        bare, codec = baseline(probe)
        alone = [probe.run(["imports", str(i)], "4M") for i in range(len(GROUPS))]
        runtime_drivers = probe.run(["imports", "0", "1"], "4M")
        capped = probe.run(["imports", "0", "1"])
        served = [serve(probe, seconds, heap), serve(probe, seconds, ROOMY)]
        smallest, runs = smallest_heap(probe, 2)
    finally:
        probe.close()

    def x(v):
        return "%.1fx" % (int(v) / codec) if v is not None and int(v) >= 0 else ""

    w = 52
    print("Device heap on the MicroPython unix port (64-bit: objects up to twice their ESP32 size);")
    print("modules precompiled with mpy-cross; bytes = gc.mem_alloc() growth after gc.collect();")
    print("ratio = against the heap importing only sensormesh.device.codec takes (same run)")
    print()
    print("%-*s %12s %8s" % (w, "baseline", "heap", "ratio"))
    print("-" * (w + 22))
    print("%-*s %12s %8s" % (w, "bare interpreter (micropython -c, after gc)", kb(bare), x(bare)))
    print("%-*s %12s %8s" % (w, "import sensormesh.device.codec only", kb(codec), "1.0x"))
    print()
    print("%-*s %12s %8s %12s" % (w, "imports (each line: growth, fresh interpreter)", "heap", "ratio", "under " + heap))
    print("-" * (w + 35))
    g0, g1 = runtime_drivers.get("g0"), runtime_drivers.get("g1")
    fake = runtime_drivers.get("fake")
    a0 = alone[0].get("g0")   # without any simulated hardware loaded
    print("%-*s %12s %8s %12s" % (w, "(a) device package: runtime + data requests", kb(a0), x(a0), kb(capped.get("g0"))))
    print("%-*s %12s %8s" % (w, "    simulated machine/esp32/dht/fakeparts (not on a board)", kb(fake), x(fake)))
    print("%-*s %12s %8s %12s" % (w, "(b) + all 10 esp32 drivers", kb(g1), x(g1), kb(capped.get("g1"))))
    both = int(a0) + int(g1) if a0 is not None and g1 is not None else None
    print("%-*s %12s %8s %12s" % (w, "(a)+(b) as on a board (without simulated hw)", kb(both), x(both),
                                  kb(int(capped["g0"]) + int(capped["g1"])) if int(capped.get("g1", -1)) >= 0 else "does not fit"))
    print("%-*s %12s %8s %12s" % (w, "    free heap left after (a)+(b) and simulated hw", "", "", kb(capped.get("free"))))
    for i in (2, 3):
        g = alone[i].get("g%d" % i)
        print("%-*s %12s %8s" % (w, "later, alone: " + GROUPS[i][0], kb(g), x(g)))
    print()
    print("serving %d s: poti at 100 Hz in 100 ms frames + MPU-6050 at 100 Hz, every value alone;" % seconds)
    print("two CPython clients over TCP; heap sampled between loop turns")
    print("%-*s %12s %12s" % (w, "serving (device started like main.py)", "heap " + heap, "heap " + ROOMY))
    print("-" * (w + 26))

    def row(label, fn):
        print("%-*s %12s %12s" % (w, label, fn(served[0]), fn(served[1])))

    row("bare interpreter + probe code", lambda r: kb(r[0].get("base")))
    row("simulated hardware, with the two parts (not on a board)", lambda r: kb(r[0].get("fake")))
    row("device started, 2 board sensors (device.start)", lambda r: kb(r[0].get("device")))
    row("ready: live heap in all", lambda r: kb(r[0].get("ready")))
    row("max live heap while serving (gc every 10th turn)", lambda r: kb(r[0].get("live_max")))
    row("  of which device (- base - simulated hardware)", lambda r: kb(int(r[0]["live_max"]) - int(r[0]["base"])
                                                                       - int(r[0]["fake"])) if "live_max" in r[0] else "-")
    row("peak gc.mem_alloc() between turns (incl. garbage)", lambda r: kb(r[0].get("peak")))
    row("lowest gc.mem_free() between turns", lambda r: kb(r[0].get("low_free")))
    row("loop turns", lambda r: r[0].get("turns", "-"))
    row("values sent (knob, imu)", lambda r: r[0].get("values") or "-")
    row("values received (imu, knob)", lambda r: ", ".join("%d" % r[1][k] for k in sorted(r[1])) or "-")
    row("result", lambda r: "ok" if served_ok(r, seconds) else "FAILED")
    print()
    if smallest:
        fake_live = int(served[1][0].get("fake", 0))
        print("%-*s %12s %8s" % (w, "smallest -X heapsize serving both streams", "%d KB" % smallest,
                                 "%.2fx" % (smallest * 1024.0 / (int(heap[:-1]) * 1024)) + " of " + heap))
        print("%-*s %12s" % (w, "  (plain device.run, 2 s, %d KB steps, %d runs)" % (STEP_KB, runs), ""))
        print("%-*s %12s" % (w, "  minus simulated hardware = estimate as on a board", kb(smallest * 1024 - fake_live)))
    else:
        print("smallest heap: the device did not serve even with %d KB" % HIGH_KB)
    for r, h in zip(served, (heap, ROOMY)):
        if not served_ok(r, seconds):
            errs = [line for line in r[2].splitlines() if "Error" in line or "error" in line]
            print("serving under %s failed: %s" % (h, errs[0][:150] if errs else "(no error line)"))
    # a device that does not fit the cap is a finding, not a broken benchmark
    return 0 if served_ok(served[1], seconds) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
