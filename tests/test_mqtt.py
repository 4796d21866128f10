# MQTT steps against a real Mosquitto broker (Debian's mosquitto, installed by the set-up,
# started here on a free loopback port and stopped by its PID): a pipeline's values reach a
# subscriber in order, a publisher's values reach a CSV sink, a broker that is away at deploy
# time is a clear error, and a publish topic with wildcards is refused when planning.
import base64
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time

import pytest

paho = pytest.importorskip("paho.mqtt.client")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MOSQUITTO = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None)
pytestmark = pytest.mark.skipif(MOSQUITTO is None, reason="mosquitto is not installed (bash scripts/dev setup installs it)")


from procs import free_port  # noqa: E402


def wait_port(port, proc, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("mosquitto exited: %s" % proc.stderr.read())
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)   # polling a port that is not open yet
    raise TimeoutError("mosquitto did not listen on %d" % port)


@pytest.fixture
def broker(tmp_path):
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text("listener %d 127.0.0.1\nallow_anonymous true\n" % port)
    proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_port(port, proc)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


class Subscriber:
    def __init__(self, port, topic):
        self.got = []
        self.cond = threading.Condition()
        self.c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="test-sub")
        self.c.on_message = self._msg
        subscribed = threading.Event()
        self.c.on_subscribe = lambda *a: subscribed.set()
        self.c.on_connect = lambda c, u, f, rc, p=None: c.subscribe(topic, qos=1)
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        assert subscribed.wait(10), "subscription not confirmed"

    def _msg(self, c, u, msg):
        with self.cond:
            self.got.append((msg.topic, json.loads(msg.payload)))
            self.cond.notify_all()

    def wait(self, n, timeout=60):
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.got) >= n, timeout), self.got[-5:]
            return list(self.got)

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()


def up(path, *args, timeout=120):
    env = dict(os.environ, PYTHONPATH=ROOT, PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", "sensormesh.cli", "up", str(path), "--insecure",
                           "--no-metrics-file"] + list(args),
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def test_values_reach_a_subscriber_in_order(broker, tmp_path):
    sub = Subscriber(broker, "lab/#")
    try:
        path = tmp_path / "out.yaml"
        path.write_text(textwrap.dedent("""\
            pipeline: mqtt-out
            devices:
              pc: {interpreter: cpython, sensors: ["n=counter@200"], local: true}
            steps:
              n: {type: source, sensor: n, count: 300}
            sinks:
              pub: {type: mqtt_out, broker: "127.0.0.1:%d", topic: "lab/{device}/{step}", qos: 1, input: n}
              seen: {type: callback, input: n}
            """) % broker)
        r = up(path, "--count", "300", "--timeout", "30")
        assert r.returncode == 0, r.stdout + r.stderr
        got = sub.wait(300)
        assert [t for t, _ in got] == ["lab/pc/pub"] * len(got)
        assert [v for _, v in got][:300] == list(range(300)), "values lost, repeated or out of order"
    finally:
        sub.close()


def test_a_publisher_feeds_a_csv_sink(broker, tmp_path):
    out = tmp_path / "in.csv"
    path = tmp_path / "in.yaml"
    path.write_text(textwrap.dedent("""\
        pipeline: mqtt-in
        devices:
          pc: {interpreter: cpython, local: true}
        steps:
          readings: {type: mqtt_in, broker: "127.0.0.1:%d", topic: "plant/+/temp"}
        sinks:
          file: {type: csv, path: "%s", input: readings}
          seen: {type: callback, input: readings}
        """) % (broker, out))
    env = dict(os.environ, PYTHONPATH=ROOT, PYTHONUNBUFFERED="1")
    p = subprocess.Popen([sys.executable, "-m", "sensormesh.cli", "up", str(path), "--insecure", "--count", "5",
                          "--no-metrics-file", "--timeout", "30"],
                         cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:          # wait until the pipeline runs
            line = p.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("running"):
                break
        assert any(line.startswith("running") for line in lines), "".join(lines)
        pub = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="test-pub")
        pub.connect("127.0.0.1", broker)
        pub.loop_start()
        # the deployment completes once the step's subscription is confirmed by the broker
        for i, payload in enumerate(["21.5", "22", '{"t": 23}', "24.25", "hello"]):
            pub.publish("plant/%d/temp" % i, payload, qos=1).wait_for_publish(10)
        pub.loop_stop()
        pub.disconnect()
        rest, _ = p.communicate(timeout=60)
        lines.append(rest)
    finally:
        if p.poll() is None:
            p.send_signal(signal.SIGINT)     # up stops its devices
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)
    assert p.returncode == 0, "".join(lines)
    rows = out.read_text().splitlines()
    # plain numbers arrive as numbers, JSON as its value (an object's field), other text as text
    # the dict after plain values: its column named in a header row just before its row
    assert rows == ["21.5", "22", "t", "23", "24.25", "hello"], rows


def test_unreachable_broker_is_a_clear_deploy_error(tmp_path):
    port = free_port()          # nothing listens there
    path = tmp_path / "down.yaml"
    path.write_text(textwrap.dedent("""\
        pipeline: mqtt-down
        devices:
          pc: {interpreter: cpython, sensors: [counter], local: true}
        steps:
          n: {type: source, sensor: counter}
        sinks:
          pub: {type: mqtt_out, broker: "127.0.0.1:%d", topic: "x/y", input: n}
        """) % port)
    r = up(path, "--duration", "5", timeout=90)
    assert r.returncode != 0
    assert "cannot reach MQTT broker 127.0.0.1:%d" % port in r.stdout + r.stderr, r.stdout + r.stderr


def test_bad_topic_is_refused_when_planning(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(textwrap.dedent("""\
        pipeline: mqtt-bad
        devices:
          pc: {interpreter: cpython, sensors: [counter], local: true}
        steps:
          n: {type: source, sensor: counter}
        sinks:
          pub: {type: mqtt_out, broker: "127.0.0.1:1883", topic: "lab/+/x", input: n}
        """))
    env = dict(os.environ, PYTHONPATH=ROOT)
    r = subprocess.run([sys.executable, "-m", "sensormesh.cli", "plan", str(path)], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "bad.yaml:7" in r.stderr and "wildcard '+'" in r.stderr, r.stderr


def test_home_assistant_discovery_names_the_unit(broker, tmp_path):
    sub = Subscriber(broker, "homeassistant/#")
    try:
        path = tmp_path / "ha.yaml"
        path.write_text(textwrap.dedent("""\
            pipeline: mqtt-ha
            devices:
              pc: {interpreter: cpython, sensors: ["temperature@50"], local: true}
            steps:
              t: {type: source, sensor: temperature}
              avg: {type: window, values: 5, agg: mean, input: t}
            sinks:
              room: {type: mqtt_out, broker: "127.0.0.1:%d", topic: "home/room", discovery: true, input: avg}
              seen: {type: callback, input: avg}
            """) % broker)
        r = up(path, "--count", "3", "--timeout", "30")
        assert r.returncode == 0, r.stdout + r.stderr
        topic, cfg = sub.wait(1)[0]
        assert topic == "homeassistant/sensor/sensormesh_pc_room/config"
        assert cfg["state_topic"] == "home/room" and cfg["unit_of_measurement"] == "\u00b0C"
        assert cfg["device_class"] == "temperature" and cfg["unique_id"] == "sensormesh_pc_room"
    finally:
        sub.close()


def test_the_integration_example_runs_against_a_local_broker(broker, tmp_path):
    src = open(os.path.join(ROOT, "examples", "pipelines", "mqtt_bridge.yaml")).read()
    path = tmp_path / "mqtt_bridge.yaml"
    path.write_text(src.replace("127.0.0.1:1883", "127.0.0.1:%d" % broker)
                    .replace("path: setpoints.csv", "path: %s" % (tmp_path / "setpoints.csv")))
    sub = Subscriber(broker, "lab/#")
    try:
        env = dict(os.environ, PYTHONPATH=ROOT, PYTHONUNBUFFERED="1")
        p = subprocess.Popen([sys.executable, "-m", "sensormesh.cli", "up", str(path), "--insecure",
                              "--no-metrics-file"], cwd=ROOT, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            got = sub.wait(2, timeout=90)          # the board's filtered temperature, via the PC
        finally:
            p.send_signal(signal.SIGINT)
            out, _ = p.communicate(timeout=60)
        assert p.returncode == 0, out
        assert all(t == "lab/pc/temperature" and isinstance(v, float) for t, v in got[:2]), got
    finally:
        sub.close()


def test_broker_restart_mid_stream_loses_only_what_is_counted(tmp_path):
    """The broker goes away and comes back while a pipeline publishes at QoS 1: every value the
    sink did not count as lost reaches a subscriber with a persistent session."""
    import re
    port = free_port()
    (tmp_path / "db").mkdir()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text("listener %d 127.0.0.1\nallow_anonymous true\npersistence true\n"
                    "persistence_location %s/\nmax_queued_messages 100000\n" % (port, tmp_path / "db"))

    def start_broker():
        p = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_port(port, p)
        return p

    def stop_broker(p):
        p.terminate()          # mosquitto saves its sessions and queued messages on SIGTERM
        p.wait(10)

    N = 1500
    got = set()
    cond = threading.Condition()
    broker_p = start_broker()
    sub = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="test-persistent", clean_session=False)
    sub.reconnect_delay_set(0.1, 0.5)
    subscribed = threading.Event()

    def on_msg(c, u, msg):
        with cond:
            got.add(json.loads(msg.payload))
            cond.notify_all()
    sub.on_message = on_msg
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.on_connect = lambda c, u, f, rc, p=None: c.subscribe("lab/restart", qos=1)
    sub.connect("127.0.0.1", port)
    sub.loop_start()
    up_p = None
    try:
        assert subscribed.wait(10)
        path = tmp_path / "restart.yaml"
        path.write_text(textwrap.dedent("""\
            pipeline: mqtt-restart
            devices:
              pc: {interpreter: cpython, sensors: ["n=counter@300"], local: true}
            steps:
              n: {type: source, sensor: n, count: %d}
            sinks:
              pub: {type: mqtt_out, broker: "127.0.0.1:%d", topic: "lab/restart", qos: 1, input: n}
              seen: {type: callback, input: n}
            """) % (N, port))
        env = dict(os.environ, PYTHONPATH=ROOT, PYTHONUNBUFFERED="1")
        up_p = subprocess.Popen([sys.executable, "-m", "sensormesh.cli", "up", str(path), "--insecure", "--quiet-devices",
                                 "--no-metrics-file", "--count", str(N), "--timeout", "60"],
                                cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        with cond:
            assert cond.wait_for(lambda: len(got) >= 200, 60), "no values before the restart"
        stop_broker(broker_p)
        broker_p = start_broker()
        out, _ = up_p.communicate(timeout=120)
        assert up_p.returncode == 0, out
        m = re.search(r"\bpub (\d+)>(\d+)", out)
        assert m, out
        taken, published = int(m.group(1)), int(m.group(2))
        assert taken == N, out
        lost = taken - published                       # what the sink counted as not delivered
        with cond:
            cond.wait_for(lambda: len(got) >= published, 30)
            missing = N - len(got & set(range(N)))
        assert missing == lost, "missing at the subscriber: %d, counted as lost: %d\n%s" % (missing, lost, out)
    finally:
        if up_p is not None and up_p.poll() is None:
            up_p.send_signal(signal.SIGINT)
            up_p.wait(30)
        sub.loop_stop()
        sub.disconnect()
        stop_broker(broker_p)


def mosquitto_password_line(user, password):
    """One line of a Mosquitto password file, in the broker's own format for Mosquitto 2
    ($7$: PBKDF2-HMAC-SHA512, 101 rounds, a 12-byte salt; base64). Written here rather than by
    mosquitto_passwd, which has no time bound of its own and once stood still in a run."""
    salt = os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, 101, 64)
    return "%s:$7$101$%s$%s\n" % (user, base64.b64encode(salt).decode(), base64.b64encode(digest).decode())


def test_credentials_from_the_device_environment(tmp_path):
    """A broker that wants a login: the password comes from the variable password-env names on
    the device; a wrong password fails the deployment with the broker's reason."""
    port = free_port()
    pw = tmp_path / "passwd"
    pw.write_text(mosquitto_password_line("lab", "s3cret"))
    conf = tmp_path / "mosquitto.conf"
    # as root, mosquitto would switch to its own user, which cannot read pytest's private tmp dir
    who = "user root\n" if os.geteuid() == 0 else ""
    conf.write_text("%slistener %d 127.0.0.1\nallow_anonymous false\npassword_file %s\n" % (who, port, pw))
    proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_port(port, proc)
        path = tmp_path / "login.yaml"
        path.write_text(textwrap.dedent("""\
            pipeline: mqtt-login
            devices:
              pc: {interpreter: cpython, sensors: ["n=counter@100"], local: true}
            steps:
              n: {type: source, sensor: n, count: 20}
            sinks:
              pub: {type: mqtt_out, broker: "127.0.0.1:%d", topic: "lab/x", username: lab,
                    password-env: LAB_MQTT_PASSWORD, input: n}
              seen: {type: callback, input: n}
            """) % port)
        env = dict(os.environ, PYTHONPATH=ROOT, PYTHONUNBUFFERED="1", LAB_MQTT_PASSWORD="s3cret")
        cmd = [sys.executable, "-m", "sensormesh.cli", "up", str(path), "--insecure", "--no-metrics-file",
               "--count", "20", "--timeout", "30"]
        ok = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert ok.returncode == 0, ok.stdout + ok.stderr
        env["LAB_MQTT_PASSWORD"] = "wrong"
        bad = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert bad.returncode != 0
        assert "refused the connection" in bad.stdout + bad.stderr, bad.stdout + bad.stderr
    finally:
        proc.terminate()
        proc.wait(10)


class StepCtx:
    """What an MQTT step needs of its device's runtime, for building one step in a test."""

    class _Timer:
        def cancel(self):
            pass

    class _Device:
        name = "pc"

    device = _Device()

    def __init__(self):
        self.logs = []

    def call_later(self, ms, fn):
        return self._Timer()

    def log(self, text):
        self.logs.append(text)


def build_step(kind, params, sid="s"):
    from sensormesh.device.steps.make import build
    inputs = ["x"] if kind == "mqtt_out" else []
    return build({"id": sid, "type": kind, "inputs": inputs, "params": params}, StepCtx())


@pytest.mark.parametrize("kind", ["mqtt_out", "mqtt_in"])
def test_empty_tls_object_means_tls_with_the_system_cas(kind, monkeypatch):
    """`tls: {}` turns TLS on with the defaults; before, an empty object read as "no TLS" and the
    step talked to the broker in plain text."""
    calls = []

    def tls_set(self, **kw):
        calls.append(kw)
        raise ValueError("TLS asked for")

    monkeypatch.setattr(paho.Client, "tls_set", tls_set)
    with pytest.raises(Exception) as e:
        build_step(kind, {"broker": "127.0.0.1:1", "topic": "a/b", "tls": {}})
    assert calls == [{"ca_certs": None, "certfile": None, "keyfile": None}], str(e.value)
    assert "tls: TLS asked for" in str(e.value)


@pytest.mark.parametrize("kind", ["mqtt_out", "mqtt_in"])
def test_a_tls_file_that_is_not_there_is_named(kind, tmp_path):
    """A `tls` file missing on the device is named with its key; before, the deployment was
    refused with the TLS library's "tls: [Errno 2] No such file or directory", naming no file."""
    cert = tmp_path / "client.pem"
    cert.write_text("not read: the missing CA file is found first")
    for tls, says in [({"ca": str(tmp_path / "ca.pem")}, "tls: ca file %r is not a file on this device"
                       % str(tmp_path / "ca.pem")),
                      ({"cert": str(cert), "key": str(tmp_path)}, "tls: key file %r is not a file on this device"
                       % str(tmp_path))]:
        with pytest.raises(Exception) as e:
            build_step(kind, {"broker": "127.0.0.1:1", "topic": "a/b", "tls": tls})
        assert says in str(e.value), str(e.value)


def test_mqtt_in_fills_in_device_and_step_in_its_topic(broker):
    """mqtt_in's topic filter takes {device} and {step} as mqtt_out's topic does."""
    s = build_step("mqtt_in", {"broker": "127.0.0.1:%d" % broker, "topic": "plant/{device}/{step}/#"})
    try:
        assert s.filter == "plant/pc/s/#"
        pub = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="test-pub-placeholders")
        pub.connect("127.0.0.1", broker)
        pub.loop_start()
        pub.publish("plant/pc/s/t", "21.5", qos=1).wait_for_publish(10)
        pub.loop_stop()
        pub.disconnect()
        deadline = time.monotonic() + 10
        while s.n_in == 0 and time.monotonic() < deadline:
            s.client.loop(timeout=0.05)         # the device loop's poll, run here
        assert s.n_in == 1 and s.n_out == 1
    finally:
        s.close()


def test_mqtt_in_counts_nan_and_infinity_where_they_come_in(broker):
    """Python's json reads NaN and Infinity, which are not JSON: such a payload is counted (and
    logged) by mqtt_in as a value it could not take, and the step goes on with the next."""
    s = build_step("mqtt_in", {"broker": "127.0.0.1:%d" % broker, "topic": "nan/t"})
    got = []
    s.emit = got.append
    try:
        pub = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="test-pub-nan")
        pub.connect("127.0.0.1", broker)
        pub.loop_start()
        for payload in ["NaN", "-Infinity", "[1, NaN]", '{"t": 1e999}', "2.5"]:
            pub.publish("nan/t", payload, qos=1).wait_for_publish(10)
        pub.loop_stop()
        pub.disconnect()
        deadline = time.monotonic() + 10
        while s.n_in < 5 and time.monotonic() < deadline:
            s.client.loop(timeout=0.05)
        st = s.stats()
        assert (st["in"], st["out"], st["dropped"], st["errors"]) == (5, 1, 4, 4), st
        assert got == [2.5]
        assert any("NaN or infinity" in line for line in s.ctx.logs), s.ctx.logs
    finally:
        s.close()


def test_a_nan_in_a_time_frame_costs_that_value_only(broker):
    """mqtt_out with a time-frame: a value JSON cannot carry is counted and left out, and the
    other values of its frame are published (before, the whole frame went, counted as one)."""
    sub = Subscriber(broker, "frames/#")
    s = build_step("mqtt_out", {"broker": "127.0.0.1:%d" % broker, "topic": "frames/x", "time-frame": 1000,
                                "qos": 1})
    try:
        for v in (1, float("nan"), 2.5, float("inf")):
            s.put(v)
        s.flush()
        deadline = time.monotonic() + 10
        while not sub.got and time.monotonic() < deadline:
            s.client.loop(timeout=0.05)
        assert sub.wait(1)[0] == ("frames/x", [1, 2.5])
        st = s.stats()
        assert (st["in"], st["out"], st["published"], st["dropped"], st["errors"]) == (4, 2, 2, 2, 2), st
    finally:
        s.close()
        sub.close()


def test_discovery_object_id_holds_only_what_home_assistant_takes(broker):
    """A step id with '.' (allowed by sensormesh) gives an object id with '_': Home Assistant
    ignores a discovery config whose topic's object id holds anything but [A-Za-z0-9_-]."""
    sub = Subscriber(broker, "homeassistant/#")
    s = build_step("mqtt_out", {"broker": "127.0.0.1:%d" % broker, "topic": "lab/x", "discovery": True},
                   sid="room.temp")
    try:
        deadline = time.monotonic() + 10
        while not sub.got and time.monotonic() < deadline:
            s.client.loop(timeout=0.05)
        topic, cfg = sub.wait(1)[0]
        assert topic == "homeassistant/sensor/sensormesh_pc_room_temp/config", topic
        assert cfg["unique_id"] == "sensormesh_pc_room_temp" and cfg["name"] == "room.temp"
    finally:
        s.close()
        sub.close()
