"""MQTT sink throughput: sensormesh's mqtt_out step against a bare paho publisher, in one run.

Both publish as fast as they can to one Mosquitto (started here on a free loopback port),
and one CPython subscriber (a separate process) counts the values that arrive per second.
Rows: one value per message and 100 values per message (mqtt_out with a time frame), at QoS 0
and QoS 1. The ratio column is mqtt_out / bare paho for the same shape and QoS.

    python benchmarks/bench_mqtt.py [--seconds 2] [--repeat 3]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT)

import bench_peers  # noqa: E402  (Broker, TOPIC, the bare paho publisher)

TOPIC = bench_peers.TOPIC


def reader(port, qos, seconds):
    """Counts values on TOPIC (a JSON array counts its items) for `seconds` after the first.
    Not bench_peers.mqtt_reader: mqtt_out publishes a plain value as a bare JSON number, which
    the protocol decoder that reader uses refuses as a frame."""
    import paho.mqtt.client as mqtt
    st = {"values": 0, "start": None}

    def on_message(client, userdata, msg):
        if st["start"] is None:
            st["start"] = time.perf_counter()
        v = json.loads(msg.payload)
        st["values"] += len(v) if isinstance(v, list) else 1

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-mqtt-reader")
    c.on_message = on_message
    c.on_subscribe = lambda *a: print("subscribed", flush=True)
    c.connect("127.0.0.1", port)
    c.subscribe(TOPIC, qos)
    t_end = time.perf_counter() + seconds + 60
    while time.perf_counter() < t_end:
        c.loop(timeout=0.05)
        if st["start"] is not None and time.perf_counter() - st["start"] >= seconds:
            break
    el = time.perf_counter() - st["start"] if st["start"] else 1.0
    c.disconnect()
    print(json.dumps({"values": st["values"] / el}), flush=True)


class Ctx:
    """The runtime's side of the step protocol, on the device's own loop."""

    def __init__(self, loop):
        self.loop = loop

    def now(self):
        return self.loop.now()

    def call_later(self, ms, fn):
        return self.loop.call_later(ms, fn)

    def log(self, text):
        print(text, file=sys.stderr)


def step_publisher(port, qos, per, seconds):
    """An mqtt_out step fed as fast as the loop lets it: per=1 publishes each value, per>1
    uses a time frame of 10 ms (one message per frame)."""
    from sensormesh.device import transport
    from sensormesh.device.steps.make import build
    loop = transport.Loop()
    params = {"broker": "127.0.0.1:%d" % port, "topic": TOPIC, "qos": qos, "offline-buffer": 10 ** 7}
    if per > 1:
        params["time-frame"] = 10
    step = build({"id": "bench", "type": "mqtt_out", "inputs": ["x"], "params": params}, Ctx(loop))
    n = 0
    burst = per if per > 1 else 200
    t_end = time.perf_counter() + seconds + 30

    def feed():
        nonlocal n
        if time.perf_counter() > t_end:
            loop.stop()
            return
        if step.stats()["buffered"] < 20000:       # back-pressure: do not outrun the broker
            for _ in range(burst):
                step.put(n)
                n += 1
        loop.call_later(0 if per == 1 else 1, feed)

    loop.call_later(0, feed)
    loop.run()


def spawn(args):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen([sys.executable, __file__] + args, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def measure(port, qos, per, seconds, publisher):
    rd = spawn(["--reader", str(port), "--qos", str(qos), "--seconds", str(seconds)])
    pub = None
    try:
        line = rd.stdout.readline()
        if "subscribed" not in line:
            raise RuntimeError("reader did not subscribe: %s" % rd.stderr.read()[-1000:])
        if publisher == "paho":
            pub = spawn(["--paho", str(port), "--qos", str(qos), "--per", str(per), "--seconds", str(seconds)])
        else:
            pub = spawn(["--step", str(port), "--qos", str(qos), "--per", str(per), "--seconds", str(seconds)])
        out, err = rd.communicate(timeout=seconds + 120)
        lines = [ln for ln in out.splitlines() if ln.startswith("{")]
        if not lines:
            raise RuntimeError("reader printed nothing: %s" % err[-1000:])
        return json.loads(lines[-1])["values"]
    finally:
        for p in (pub, rd):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait(10)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--reader", type=int)
    ap.add_argument("--paho", type=int)
    ap.add_argument("--step", type=int)
    ap.add_argument("--qos", type=int, default=0)
    ap.add_argument("--per", type=int, default=1)
    a = ap.parse_args()
    if a.reader:
        return reader(a.reader, a.qos, a.seconds)
    if a.paho:
        return bench_peers.mqtt_publisher(a.paho, a.qos, a.per, a.seconds)
    if a.step:
        return step_publisher(a.step, a.qos, a.per, a.seconds)
    if bench_peers.mosquitto_command() is None:
        sys.exit("mosquitto is not installed (bash scripts/dev setup installs it)")
    with tempfile.TemporaryDirectory() as tmp:
        broker = bench_peers.Broker(tmp)
        try:
            print("MQTT sink throughput, values/s (median of %d runs of %.1f s; min-max)" % (a.repeat, a.seconds))
            print("%-26s %14s %14s %7s" % ("shape", "bare paho", "mqtt_out", "ratio"))
            for qos in (0, 1):
                for per in (1, 100):
                    res = {}
                    for who in ("paho", "step"):
                        res[who] = sorted(measure(broker.port, qos, per, a.seconds, who) for _ in range(a.repeat))
                    med = {k: v[len(v) // 2] for k, v in res.items()}
                    label = "QoS %d, %s" % (qos, "1 value/message" if per == 1 else "%d values/message" % per)
                    print("%-26s %14s %14s %7.2f" % (
                        label, "%.0f (%.0f-%.0f)" % (med["paho"], res["paho"][0], res["paho"][-1]),
                        "%.0f (%.0f-%.0f)" % (med["step"], res["step"][0], res["step"][-1]),
                        med["step"] / med["paho"] if med["paho"] else 0.0), flush=True)
        finally:
            broker.stop()


if __name__ == "__main__":
    main()
