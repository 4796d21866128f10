"""sensormesh streams against their peers, in one run, with one reader.

Every row is read by the same kind of CPython reader process, which decodes every frame (or
MQTT message) with sensormesh's codec and counts the values it holds; values/s runs from the
first byte the reader gets for --seconds. Rows:

  raw framing       a bare Python sender: json.dumps (the standard library) of the next values,
                    a 4-byte length prefix, sendall; 1 value per frame (64 frames per write) or
                    5000 values per frame. "pre-encoded" sends one 5000-value frame over and
                    over: the ceiling of the link and the reader, nothing left to encode.
  worker -> plain   a sensormesh worker (counter@0, read as fast as the link takes values) and a
                    plain client that sends the original design's data request, without
                    "max-frame" (so it gets frames of at most 16 KiB).
  worker -> client  the same worker and the project's client (sensormesh.client.Client, which
                    states "max-frame").
  MQTT              Mosquitto started by this script on a free loopback port; a paho-mqtt
                    publisher sends JSON arrays of 1 or 100 values at QoS 0 or 1 (at most 1000
                    publishes in flight), the reader subscribes at the same QoS.

time-frame 0 sends every value in a frame of its own, time-frame 10 ms batches. Worker rows run
over loopback TCP and a Unix socket, each compared with raw framing on the same link; MQTT runs
over TCP. The MicroPython worker rows (the unix port) show the ratio to the CPython worker.

    python benchmarks/bench_peers.py [--seconds 2] [--repeat 3] [--json stdlib]

Prints a markdown table: median values/s over the repeats, the range, the ratios to raw
framing and to MQTT QoS 0 of the same granularity (1 value per frame or message for
time-frame 0, 5000 values per frame and 100 values per message for batched rows) and the
reader's own CPU time per value (sensormesh readers); then the targets, met or not, and the
MicroPython worker's ratio to the CPython worker.
"""
import argparse
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_stream import count_stream, send_raw  # noqa: E402
from procs import Proc, free_port  # noqa: E402

TOPIC = "sensormesh/bench"
MQTT_INFLIGHT = 1000


# -- the reader (child process) ---------------------------------------------------------------
def reader(addr, kind, tf, seconds):
    """kind: raw (no request), plain (data request without max-frame), client (Client)."""
    from sensormesh.device import codec
    from sensormesh.client import Client
    c = Client(addr, timeout=20)
    if kind == "plain":
        req = {"sensor": "counter"}
        if tf:
            req["time-frame"] = tf
        c.sock.sendall(codec.encode({"data-request": req}))
    elif kind == "client":
        c.request_data("counter", tf)
    import resource
    u0 = resource.getrusage(resource.RUSAGE_SELF)
    r = count_stream(c.sock, codec.Decoder(), seconds)
    u1 = resource.getrusage(resource.RUSAGE_SELF)
    c.close()
    if r.get("count"):
        # the reader's own CPU per value: what one value costs it, whatever share of the
        # machine it got (on a loaded machine the rates follow the shares, this does not)
        r["reader_us"] = (u1.ru_utime + u1.ru_stime - u0.ru_utime - u0.ru_stime) * 1e6 / r["count"]
    print(json.dumps(r))


def mqtt_reader(port, qos, seconds):
    import paho.mqtt.client as mqtt
    from sensormesh.device import codec
    st = {"values": 0, "frames": 0, "start": None, "subscribed": False}
    decode = codec.decode_payload

    def on_message(client, userdata, msg):
        if st["start"] is None:
            st["start"] = time.perf_counter()
        st["values"] += len(decode(msg.payload))
        st["frames"] += 1

    def on_subscribe(client, userdata, mid, reason_codes, props):
        st["subscribed"] = True
        print("subscribed", flush=True)

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-reader")
    c.on_message = on_message
    c.on_subscribe = on_subscribe
    c.connect("127.0.0.1", port)
    c.subscribe(TOPIC, qos)
    t_end = time.perf_counter() + seconds + 60
    while time.perf_counter() < t_end:
        c.loop(timeout=0.05)
        if st["start"] is not None and time.perf_counter() - st["start"] >= seconds:
            break
    el = time.perf_counter() - st["start"] if st["start"] else 1.0
    c.disconnect()
    print(json.dumps({"values": st["values"] / el, "frames": st["frames"] / el}))


# -- senders (child processes) ----------------------------------------------------------------
def raw_sender(addr, per, seconds, pre):
    if addr.startswith("unix:"):
        srv = socket.socket(socket.AF_UNIX)
        srv.bind(addr[5:])
    else:
        srv = socket.socket()
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("127.0.0.1", int(addr.rpartition(":")[2])))
    srv.listen(1)
    print("raw sender listening on %s" % addr, flush=True)
    s, _ = srv.accept()
    t_end = time.perf_counter() + seconds + 30
    if not pre:
        return send_raw(s, per, t_end)
    p = json.dumps(list(range(per)), separators=(",", ":")).encode()
    fixed = struct.pack("!I", len(p)) + p
    try:
        while time.perf_counter() < t_end:
            s.sendall(fixed)
    except OSError:
        pass


def mqtt_publisher(port, qos, per, seconds):
    import paho.mqtt.client as mqtt
    from collections import deque
    from sensormesh.device import codec
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-pub-%d" % os.getpid())
    c.max_inflight_messages_set(MQTT_INFLIGHT)
    c.max_queued_messages_set(0)
    c.connect("127.0.0.1", port)
    c.loop_start()
    out = deque()
    n = 0
    t_end = time.perf_counter() + seconds + 30
    print("publishing", flush=True)
    try:
        while time.perf_counter() < t_end:
            info = c.publish(TOPIC, codec.dumps(list(range(n, n + per))), qos)
            n += per
            out.append(info)
            if len(out) >= MQTT_INFLIGHT:
                out.popleft().wait_for_publish(10)
    finally:
        c.loop_stop()


# -- the parent -------------------------------------------------------------------------------
def run_reader(args, seconds, env=None):
    e = dict(os.environ)
    e["PYTHONPATH"] = ROOT + os.pathsep + e.get("PYTHONPATH", "")
    if env:
        e.update(env)
    r = subprocess.run([sys.executable, __file__, "--seconds", str(seconds)] + args,
                       capture_output=True, text=True, timeout=seconds + 90, env=e)
    if r.returncode:
        raise RuntimeError(r.stderr[-2000:])
    return json.loads(r.stdout.strip().splitlines()[-1])


def measure(sender_argv, addr, kind, tf, seconds, env=None, cwd=ROOT):
    p = Proc(sender_argv, cwd=cwd, env=env)
    try:
        p.wait_line("listening on")
        return run_reader(["--reader", addr, "--kind", kind, "--tf", str(tf)], seconds, env)
    finally:
        p.stop()


def mosquitto_command():
    """The broker's path: Debian puts it in /usr/sbin, which a user's PATH may lack."""
    found = shutil.which("mosquitto")
    if found is None and os.path.exists("/usr/sbin/mosquitto"):
        found = "/usr/sbin/mosquitto"
    return found


class Broker:
    """Mosquitto on a free loopback port, with a config file of our own; stopped by PID."""

    def __init__(self, tmp):
        self.port = free_port()
        conf = os.path.join(tmp, "mosquitto.conf")
        with open(conf, "w") as f:
            f.write("listener %d 127.0.0.1\nallow_anonymous true\npersistence false\n"
                    "max_queued_messages 100000\nlog_dest none\n" % self.port)
        self.proc = Proc([mosquitto_command(), "-c", conf])
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if self.proc.p.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("mosquitto did not start: %s" % self.proc.stderr_text()[-500:])
                time.sleep(0.05)   # polling a port that is not up yet (bounded above)

    def stop(self):
        self.proc.stop()


def measure_mqtt(broker, qos, per, seconds, env=None):
    e = dict(os.environ)
    e["PYTHONPATH"] = ROOT + os.pathsep + e.get("PYTHONPATH", "")
    if env:
        e.update(env)
    rd = Proc([sys.executable, __file__, "--seconds", str(seconds), "--mqtt-reader", str(broker.port),
               "--qos", str(qos)], env=env)
    try:
        rd.wait_line("subscribed")
        pub = Proc([sys.executable, __file__, "--seconds", str(seconds), "--mqtt-publisher", str(broker.port),
                    "--qos", str(qos), "--per", str(per)], env=env)
        try:
            rd.p.wait(seconds + 90)
            out = rd.p.stdout.read()
            lines = [ln for ln in ("".join(rd.lines) + rd._partial + out).splitlines() if ln.startswith("{")]
            if not lines:
                raise RuntimeError("mqtt reader printed nothing: %s" % rd.stderr_text()[-2000:])
            return json.loads(lines[-1])
        finally:
            pub.stop()
    finally:
        rd.stop()


def worker_argv(interp, port, upath):
    args = ["--port", str(port), "--sensors", "counter@0"] + (["--unix", upath] if upath else [])
    return [sys.executable if interp == "cpython" else "micropython", "-m", "sensormesh.device"] + args


def plan(have_mp, have_mqtt):
    """(key, label, link, granularity) in table order; key says how to measure it."""
    rows = []
    for link in ("tcp", "unix"):
        rows.append((("raw", link, 1, False), "raw framing, 1 value/frame", link, "value"))
        for tf in (0, 10):
            g = "value" if tf == 0 else "batch"
            for kind, who in (("plain", "plain client"), ("client", "project client")):
                rows.append((("worker", link, "cpython", kind, tf), "worker -> %s, time-frame %d" % (who, tf), link, g))
        rows.append((("raw", link, 5000, False), "raw framing, 5000 values/frame", link, "batch"))
        rows.append((("raw", link, 5000, True), "raw framing, 5000 values/frame, pre-encoded", link, "batch"))
        if have_mp:
            for kind, who in (("plain", "plain client"), ("client", "project client")):
                rows.append((("worker", link, "micropython", kind, 10),
                             "MicroPython worker -> %s, time-frame 10" % who, link, "batch"))
    if have_mqtt:
        for qos in (0, 1):
            for per in (1, 100):
                rows.append((("mqtt", qos, per), "MQTT QoS %d, %d value%s/message" % (qos, per, "s" if per > 1 else ""),
                             "tcp", "value" if per == 1 else "batch"))
    return rows


def run_row(key, seconds, tmp, broker, env):
    if key[0] == "raw":
        _, link, per, pre = key
        port = free_port()
        addr = "unix:" + os.path.join(tmp, "r%d.sock" % port) if link == "unix" else "127.0.0.1:%d" % port
        argv = [sys.executable, __file__, "--raw-sender", addr, "--per", str(per), "--seconds", str(seconds)]
        if pre:
            argv.append("--pre")
        return measure(argv, addr, "raw", 0, seconds, env)
    if key[0] == "worker":
        _, link, interp, kind, tf = key
        port = free_port()
        upath = os.path.join(tmp, "w%d.sock" % port) if link == "unix" else None
        addr = "unix:" + upath if upath else "127.0.0.1:%d" % port
        return measure(worker_argv(interp, port, upath), addr, kind, tf, seconds, env)
    _, qos, per = key
    return measure_mqtt(broker, qos, per, seconds, env)


def median(xs):
    s = sorted(xs)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", choices=("auto", "stdlib"), default="auto",
                    help="stdlib: every process uses the standard json module (SENSORMESH_JSON=stdlib)")
    ap.add_argument("--only", default="", help="comma-separated words; run only rows whose label has one")
    ap.add_argument("--reader")
    ap.add_argument("--kind", default="raw")
    ap.add_argument("--tf", type=int, default=0)
    ap.add_argument("--raw-sender")
    ap.add_argument("--per", type=int, default=1)
    ap.add_argument("--pre", action="store_true")
    ap.add_argument("--mqtt-reader", type=int)
    ap.add_argument("--mqtt-publisher", type=int)
    ap.add_argument("--qos", type=int, default=0)
    a = ap.parse_args()
    if a.reader:
        return reader(a.reader, a.kind, a.tf, a.seconds)
    if a.raw_sender:
        return raw_sender(a.raw_sender, a.per, a.seconds, a.pre)
    if a.mqtt_reader:
        return mqtt_reader(a.mqtt_reader, a.qos, a.seconds)
    if a.mqtt_publisher:
        return mqtt_publisher(a.mqtt_publisher, a.qos, a.per, a.seconds)

    env = {"SENSORMESH_JSON": "stdlib"} if a.json == "stdlib" else None
    have_mp = shutil.which("micropython") is not None
    try:
        import paho.mqtt.client  # noqa: F401
        have_mqtt = mosquitto_command() is not None
    except ImportError:
        have_mqtt = False
    if not have_mqtt:
        print("MQTT rows skipped: needs the mosquitto command and paho-mqtt (bash scripts/dev setup)")
    from sensormesh.device import codec
    print("json: %s; %d x %.1f s per row; %s, %d cores, load %s" % (
        "stdlib (forced)" if env else getattr(codec, "JSON_BACKEND", "stdlib"), a.repeat, a.seconds, time.strftime("%Y-%m-%d %H:%M"),
        os.cpu_count(), "/".join("%.1f" % x for x in os.getloadavg())))
    rows = plan(have_mp, have_mqtt)
    if a.only:
        words = a.only.split(",")
        rows = [r for r in rows if any(w in r[1] or w in str(r[0]) for w in words)]
    tmp = tempfile.mkdtemp(prefix="sm-peers-")
    broker = Broker(tmp) if have_mqtt and any(r[0][0] == "mqtt" for r in rows) else None
    got = {}
    cost = {}     # key -> the reader's CPU microseconds per value, per repeat
    try:
        for rep in range(a.repeat):
            for key, label, link, g in rows:
                try:
                    r = run_row(key, a.seconds, tmp, broker, env)
                except Exception as e:   # one failed row must not lose the others
                    print("row %r failed: %s" % (label, e), file=sys.stderr)
                    continue
                got.setdefault(key, []).append(r["values"])
                if r.get("reader_us") is not None:
                    cost.setdefault(key, []).append(r["reader_us"])
                print("  [%d/%d] %-55s %-4s %14s values/s" % (rep + 1, a.repeat, label, link,
                                                                "{:,.0f}".format(r["values"])), flush=True)
    finally:
        if broker:
            broker.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    def med(key):
        return median(got[key]) if got.get(key) else None
    print()
    print("| sender | link | values/s (median) | range | vs raw framing | vs MQTT QoS 0 | reader CPU us/value |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for key, label, link, g in rows:
        v = med(key)
        if v is None:
            print("| %s | %s | failed | | | | |" % (label, link))
            continue
        raw = med(("raw", link, 1 if g == "value" else 5000, False))
        mq = med(("mqtt", 0, 1 if g == "value" else 100))
        lo, hi = min(got[key]), max(got[key])
        us = median(cost[key]) if cost.get(key) else None
        print("| %s | %s | %s | %s-%s | %s | %s | %s |" % (
            label, link, "{:,.0f}".format(v), _short(lo), _short(hi),
            "%.2f" % (v / raw) if raw else "-", "%.2f" % (v / mq) if mq else "-",
            "%.3f" % us if us is not None else "-"))
    print()
    print("| target (medians of this run) | link | measured | target | met |")
    print("|---|---|---:|---:|---|")

    def target(what, link, got, want):
        if got is not None:
            print("| %s | %s | %.2f | %s | %s |" % (what, link, got, want[0], "yes" if got >= want[1] else "NO"))
    for link in ("tcp", "unix"):
        raw1, raw5k, mq100 = med(("raw", link, 1, False)), med(("raw", link, 5000, False)), med(("mqtt", 0, 100))
        for kind, who in (("plain", "plain client"), ("client", "project client")):
            v0, v10 = med(("worker", link, "cpython", kind, 0)), med(("worker", link, "cpython", kind, 10))
            target("per value, worker -> %s vs raw framing 1 value/frame" % who, link,
                   v0 / raw1 if v0 and raw1 else None, (">= 1.0", 1.0))
            target("batched, worker -> %s vs raw framing 5000 values/frame" % who, link,
                   v10 / raw5k if v10 and raw5k else None, (">= 0.4", 0.4))
            target("batched, worker -> %s vs MQTT QoS 0 100 values/message" % who, link,
                   v10 / mq100 if v10 and mq100 else None, (">= 2.0", 2.0))
    for link in ("tcp", "unix"):
        for kind, who in (("plain", "plain client"), ("client", "project client")):
            cp = med(("worker", link, "cpython", kind, 10))
            mp = med(("worker", link, "micropython", kind, 10))
            if cp and mp:
                print("MicroPython worker batched (%s, %s): %.2f of the CPython worker" % (who, link, mp / cp))


def _short(v):
    if v >= 1e6:
        return "%.2fM" % (v / 1e6)
    return "%.0fk" % (v / 1e3)


if __name__ == "__main__":
    main()
