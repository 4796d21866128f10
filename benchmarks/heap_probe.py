# The measuring half of benchmarks/bench_heap_streams.py, run on the MicroPython unix port from the
# precompiled bundle; kept apart and small, so that its own code takes little of the heap it
# measures (bench_heap_streams.py reports what it takes). Prints "name|value" lines (bytes; -1: did not
# fit), then "END".
#     micropython -X heapsize=96K -c "import heap_probe; heap_probe.main(['imports', '0', '1'])"
#     micropython -X heapsize=96K -c "import heap_probe; heap_probe.main(['serve', PORT, SECONDS])"
import gc

DRIVERS = ("temperature", "hall", "poti", "gyro", "dht11", "ultrasonic", "co2", "touchpad",
           "touch", "rotary")
# The simulated board modules the drivers import; not on a real board, where machine, esp32
# and dht are built into the firmware.
FAKE_HW = ("machine", "esp32", "dht", "fakeparts")
# What a device imports, in the order it needs it: the runtime that serves data requests, the
# drivers, then (lazily, on the first deployment) the assignment runtime, the secure session.
GROUPS = (
    ("device package (runtime, data requests)", ("sensormesh.device.compat", "sensormesh.device.codec", "sensormesh.device.transport",
                                                 "sensormesh.device.sensors", "sensormesh.device.datarequest",
                                                 "sensormesh.device.core")),
    ("all 10 esp32 drivers", tuple("sensormesh.device.sensors.esp32." + d for d in DRIVERS)),
    ("assignment runtime (first deploy)", ("sensormesh.device.runtime.shipped", "sensormesh.device.steps", "sensormesh.device.runtime.pipes",
                                           "sensormesh.device.runtime")),
    ("secure session", ("sensormesh.device.secure.fernet", "sensormesh.device.secure.x25519", "sensormesh.device.secure.handshake")),
)
# The two streams: a potentiometer batched in 100 ms time frames and an MPU-6050 sending every
# value on its own, both read at 100 Hz.
SENSORS = [{"name": "knob", "kind": "poti", "driver": "esp32", "pin": 34},
           {"name": "imu", "kind": "gyro", "driver": "esp32"}]
STREAMS = ({"sensor": "knob", "time-frame": 100}, {"sensor": "imu", "time-frame": 0})

# The simulated parts behind the two sensors. bench_heap_streams.py also runs these lines on their own
# (-c) in front of a plain device.run(), to find the smallest heap without this module loaded.
BOARD = ("import machine, fakeparts\n"
         "machine.fake_reset()\n"
         "machine.fake_i2c(0).attach(0x68, fakeparts.MPU6050()).set_physical((0.0, 0.0, 1.0), (1.0, 2.0, 3.0), 25.0)\n"
         "machine.Pin(34).fake_analog(40000)\n")


def used():
    gc.collect()
    return gc.mem_alloc()


def imports(groups):
    print("base|%d" % used())
    t = used()
    if 1 in groups:   # the drivers need the simulated board modules: counted apart
        for m in FAKE_HW:
            __import__(m)
    print("fake|%d" % (used() - t))
    start = used()
    for i in groups:
        t = used()
        try:
            for m in GROUPS[i][1]:
                __import__(m)
        except MemoryError:
            print("g%d|-1" % i)
            break
        print("g%d|%d" % (i, used() - t))
    print("total|%d" % (used() - start))
    print("free|%d" % gc.mem_free())


def serve(port, seconds):
    """Set up the simulated parts (counted apart), start the device the way a board's main.py
    does (device.start(config)), serve STREAMS to the clients bench_heap_streams.py connects, and
    sample the heap between loop turns."""
    print("base|%d" % used())
    t = used()
    exec(BOARD, {})
    print("fake|%d" % (used() - t))
    t = used()
    from sensormesh.device import core as device
    dev = device.start({"name": "bench", "host": "127.0.0.1", "port": port, "sensors": SENSORS})
    print("device|%d" % (used() - t))
    print("ready|%d" % used())
    loop = dev.loop
    low_free = gc.mem_free()
    peak = turns = live_max = 0
    t_end = None
    while True:
        loop.run_once(50)
        turns += 1
        a = gc.mem_alloc()
        if a > peak:
            peak = a
        a = gc.mem_free()
        if a < low_free:
            low_free = a
        if turns % 10 == 0:
            a = used()
            if a > live_max:
                live_max = a
        if t_end is None and len(dev.streams) == len(STREAMS):
            t_end = loop.now() + seconds * 1000
        if dev.errors:
            print("failed|%d" % dev.errors)
            break
        if t_end is not None and loop.now() >= t_end:
            break
    print("values|%s" % ",".join("%d" % s.stats()["values"] for s in dev.streams))
    print("peak|%d" % peak)
    print("live_max|%d" % live_max)
    print("low_free|%d" % low_free)
    print("live|%d" % used())
    print("turns|%d" % turns)
    dev.close()


def main(argv):
    if argv[0] == "imports":
        imports([int(a) for a in argv[1:]])
    else:
        serve(int(argv[1]), int(argv[2]))
    print("END")
