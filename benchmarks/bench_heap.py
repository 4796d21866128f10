# Heap of a device on the MicroPython unix port, from the precompiled (.mpy) bundle that
# `sensormesh board deploy` puts on a board:
#   1. import: heap after importing the device package and every ESP32 driver (simulated
#      hardware, itself precompiled and counted apart: a real board has machine built in);
#   2. serving: peak and live heap while the device serves two sensor streams (a poti
#      batched in 100 ms time frames and an MPU-6050 sending every value, 100 Hz each) to
#      two clients for a few seconds.
#     python3 benchmarks/bench_heap.py [--heap 96K] [--seconds 3]
# builds the bundle with mpy-cross into a temporary folder and runs the measuring half under
# `micropython -X heapsize=96K` (the unix port is 64-bit: its objects are about twice the
# size they are on the 32-bit ESP32, so these figures are an upper bound for a board).
# Prints one table.
import gc
import sys

MICROPYTHON = sys.implementation.name == "micropython"

DRIVERS = ("temperature", "hall", "poti", "gyro", "dht11", "ultrasonic", "co2", "touchpad",
           "touch", "rotary")
DEVICE_MODULES = ("sensormesh.compat", "sensormesh.codec", "sensormesh.transport",
                  "sensormesh.sensors", "sensormesh.datarequest", "sensormesh.device",
                  "sensormesh.shipped", "sensormesh.steps", "sensormesh.pipes",
                  "sensormesh.assignment", "sensormesh.fernet", "sensormesh.rsa",
                  "sensormesh.session")
FAKE_HW = ("machine", "esp32", "dht", "fakeparts")
STREAMS = ({"sensor": "knob", "time-frame": 100}, {"sensor": "imu", "time-frame": 0})


# -- the measuring half (MicroPython) --------------------------------------------------

def used():
    gc.collect()
    return gc.mem_alloc()


def measure_imports(rows):
    base = used()
    rows.append(("interpreter, nothing imported", base, ""))
    t = used()
    for m in FAKE_HW:
        __import__(m)
    fake = used() - t
    rows.append(("simulated hardware (not on a board)", fake, "machine, esp32, dht, fakeparts"))
    start = used()
    for m in DEVICE_MODULES:
        t = used()
        __import__(m)
        rows.append(("  + " + m, used() - t, ""))
    runtime = used() - start
    t = used()
    for d in DRIVERS:
        __import__("sensormesh.sensors.esp32." + d)
    drivers = used() - t
    rows.append(("  + all 10 esp32 drivers", drivers, "sensormesh.sensors.esp32.*"))
    total = used() - base - fake
    rows.append(("device package + all drivers", total, "excluding the simulated hardware"))
    return total


def make_board():
    import fakeparts
    import machine
    machine.fake_reset()
    mpu = machine.fake_i2c(0).attach(0x68, fakeparts.MPU6050())
    machine.Pin(34).fake_analog(40000)
    return mpu


def serve(port, seconds, rows):
    """Serve STREAMS to the clients the CPython half connects; sample the heap each turn."""
    from sensormesh.device import Device
    mpu = make_board()
    before = used()
    dev = Device("bench", [{"name": "knob", "kind": "poti", "driver": "esp32", "pin": 34},
                           {"name": "imu", "kind": "gyro", "driver": "esp32"}])
    mpu.set_physical((0.0, 0.0, 1.0), (1.0, 2.0, 3.0), 25.0)
    dev.listen_tcp("127.0.0.1", port)
    print("sensormesh bench listening")
    loop = dev.loop
    peak = 0
    low_free = gc.mem_free()
    turns = 0
    t_end = None
    while True:
        loop.run_once(50)
        turns += 1
        a = gc.mem_alloc()
        if a > peak:
            peak = a
        f = gc.mem_free()
        if f < low_free:
            low_free = f
        if t_end is None and len(dev.streams) == len(STREAMS):
            t_end = loop.now() + seconds * 1000
        if dev.errors:
            rows.append(("serving FAILED", 0, "%d loop errors (see stderr)" % dev.errors))
            break
        if t_end is not None and loop.now() >= t_end:
            break
    stats = [s.stats() for s in dev.streams]
    live = used()
    dev.close()
    rows.append(("device with 2 board sensors, idle", 0, ""))
    rows[-1] = ("device + 2 board sensors, before serving", before, "after gc")
    rows.append(("peak while serving 2 streams", peak, "max gc.mem_alloc() over %d loop turns" % turns))
    rows.append(("lowest free heap while serving", low_free, "gc.mem_free()"))
    rows.append(("live heap at the end of serving", live, "after gc"))
    vals = sum(s["values"] for s in stats)
    rows.append(("values sent", vals, "%s in %d s" % (", ".join("%d" % s["values"] for s in stats), seconds)))


def inner(argv):
    rows = []
    measure_imports(rows)
    port = int(argv[argv.index("--port") + 1]) if "--port" in argv else 0
    if port:
        serve(port, int(argv[argv.index("--seconds") + 1]), rows)
    print("RESULTS")
    for name, value, note in rows:
        print("%s|%d|%s" % (name, value, note))


# -- the driving half (CPython) ----------------------------------------------------------

def outer(argv):
    import os
    import socket
    import subprocess
    import tempfile
    import threading
    import time

    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(here)
    sys.path.insert(0, root)
    from sensormesh import board
    from sensormesh.client import Client

    heap = argv[argv.index("--heap") + 1] if "--heap" in argv else "96K"
    seconds = int(argv[argv.index("--seconds") + 1]) if "--seconds" in argv else 3
    mp = board._find_tool("micropython")
    tmp = tempfile.mkdtemp(prefix="sensormesh-bench-")
    fs = board.build({"name": "bench"}, tmp, root, mpy_cross=board._find_tool("mpy-cross"))
    fake = os.path.join(tmp, "fakehw")
    os.makedirs(fake)
    for m in FAKE_HW:
        subprocess.check_call([board._find_tool("mpy-cross"), "-o", os.path.join(fake, m + ".mpy"),
                               os.path.join(root, "sensormesh", "fakehw", m + ".py")])
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    env = dict(os.environ, MICROPYPATH=":" + fs + ":" + fake)
    p = subprocess.Popen([mp, "-X", "heapsize=" + heap, os.path.abspath(__file__), "--inner", "--port", str(port),
                          "--seconds", str(seconds)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    out = []
    got = {}

    def read(name, req):
        c = Client("127.0.0.1:%d" % port, timeout=seconds + 10)
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

    threads = []
    try:
        for line in p.stdout:
            out.append(line)
            if "listening" in line:
                for req in STREAMS:
                    t = threading.Thread(target=read, args=(req["sensor"], req), daemon=True)
                    t.start()
                    threads.append(t)
                break
        deadline = time.monotonic() + seconds + 30
        rest, err = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
        out.append(rest)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    for t in threads:
        t.join(5)
    text = "".join(out)
    if "RESULTS" not in text:
        print(text[-3000:])
        print(err[-3000:])
        raise SystemExit("benchmark failed (exit %s)" % p.returncode)
    rows = [line.split("|") for line in text.split("RESULTS", 1)[1].strip().splitlines()]
    print("Device heap on the MicroPython unix port (64-bit), -X heapsize=%s, bundle precompiled with mpy-cross"
          % heap)
    print("%-44s %10s  %s" % ("what", "bytes", "note"))
    print("-" * 100)
    for name, value, note in rows:
        print("%-44s %10s  %s" % (name, value, note))
    if err.strip():
        first = err.strip().splitlines()
        print("stderr (%d lines), first: %s" % (len(first), first[0][:200]))
    print("received by the clients: %s" % ", ".join("%s %d values" % (k, got[k]) for k in sorted(got)))


if __name__ == "__main__":
    if MICROPYTHON:
        inner(sys.argv[1:])
    else:
        outer(sys.argv[1:])
