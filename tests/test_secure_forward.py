"""Secure control through gateways and registrations, end to end, on loopback.

A keyed controller (the Supervisor with the controller's credentials) deploys to and asks keyed
devices behind keyed gateways (one hop, two hops), a keyed device that registered with a
gateway and one that registered with the controller. The controller runs a session of its own
with every device; the gateways only relay its hello and welcome and then tokens: a recording
proxy between a gateway and its target sees a hello, a welcome and nothing readable after
them. A target's refusals (plaintext-refused, unknown-key) reach the controller side naming the
device and the code. Gateways and targets run on CPython and on the MicroPython unix port.
Waits are for lines, values and replies (bounded), never sleeps.
"""
import json
import select
import socket
import textwrap
import threading
import time

import pytest

from procs import Recorder, free_port
from sensormesh.device import codec
from sensormesh.client import Client
from sensormesh.controller.keys import load_controller, provision_local
from sensormesh.controller.pipeline_file import load_model
from sensormesh.controller.supervisor import Supervisor, SupervisorError

NAMES = ["gwa", "gwb", "esp", "s1", "far"]


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("secure-forward")
    store = str(d / "store")
    frags = provision_local(NAMES, store)
    # a trust store without the controller's key: a device with it refuses the controller
    with open(frags["esp"]["trust"]) as f:
        trust = json.load(f)
    del trust["keys"]["controller"]
    no_ctl = str(d / "trust-no-controller.json")
    with open(no_ctl, "w") as f:
        json.dump(trust, f)
    return {"store": store, "frags": frags, "no-controller": no_ctl}


def keyed(keys, name, port, extra=(), trust=None):
    f = keys["frags"][name]
    return ["--port", str(port), "--identity", f["identity"], "--trust", trust or f["trust"],
            "--sensors", "counter@0"] + list(extra)


def start_keyed(devices, keys, interp, name, port, extra=(), trust=None):
    p = devices(interp, keyed(keys, name, port, extra, trust))
    assert "(authenticated)" in p.lines[-1], p.lines
    return p


def model_of(tmp_path, text, ports):
    f = tmp_path / "p.yaml"
    f.write_text(textwrap.dedent(text % ports))
    return load_model(str(f))


def controller(keys):
    return load_controller(keys["store"])


# -- a recording proxy ---------------------------------------------------------------------------
class Recorder2Way:
    """A TCP proxy in front of a device: records every byte of every connection through it, in
    both directions, and passes it on unchanged. Stopped (and its sockets closed) by stop()."""

    def __init__(self, target_port):
        self.target = target_port
        self.lst = socket.socket()
        self.lst.bind(("127.0.0.1", 0))
        self.lst.listen(8)
        self.port = self.lst.getsockname()[1]
        self.conns = []           # [bytes from the dialer, bytes from the device] per connection
        self._stop = False
        self._socks = {}
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        socks = self._socks
        while not self._stop:
            ready, _, _ = select.select([self.lst] + list(socks), [], [], 0.1)
            for s in ready:
                if s is self.lst:
                    c, _ = self.lst.accept()
                    u = socket.create_connection(("127.0.0.1", self.target), timeout=5)
                    rec = [bytearray(), bytearray()]
                    self.conns.append(rec)
                    socks[c] = (u, rec[0])
                    socks[u] = (c, rec[1])
                    continue
                if s not in socks:
                    continue
                peer, buf = socks[s]
                try:
                    data = s.recv(65536)
                    if data:
                        buf += data
                        peer.sendall(data)
                except OSError:
                    data = b""
                if not data:
                    for x in (s, peer):
                        socks.pop(x, None)
                        x.close()

    def stop(self):
        self._stop = True
        self.thread.join(5)
        for s in list(self._socks):
            s.close()
        self.lst.close()


def frames(data):
    dec = codec.Decoder()
    dec.feed(bytes(data))
    out = []
    while True:
        p = dec.next_payload()
        if p is None:
            return out
        out.append(p)


def assert_hello_welcome_then_tokens(rec, server):
    """One recorded connection: a hello to `server`, its welcome, then only tokens both ways."""
    up, down = frames(rec[0]), frames(rec[1])
    hello, welcome = codec.decode_payload(up[0]), codec.decode_payload(down[0])
    assert hello["hello"]["to"] == server and hello["hello"]["from"] == "controller", hello
    assert welcome["welcome"]["from"] == server, welcome
    assert len(up) > 2 and len(down) > 2, (len(up), len(down))
    for p in up[1:] + down[1:]:
        with pytest.raises(codec.ProtocolError):
            codec.decode_payload(p)              # not JSON: a Fernet token
        assert p[:1] == b"g" and p.replace(b"-", b"").replace(b"_", b"").replace(b"=", b"").isalnum()
    # what the controller said (deploy, start, status...) never crossed in plaintext
    for word in (b"deploy", b"status", b"counter", b"forward", b"subscribe"):
        assert word not in bytes(rec[0]) and word not in bytes(rec[1]), word


# -- one gateway -----------------------------------------------------------------------------------
ONE_HOP = """
pipeline: sf1
devices:
  esp: {sensors: [counter], address: "127.0.0.1:%(esp_via)d"}
  gwa: {address: "127.0.0.1:%(gwa)d"}
network:
  controller: [office]
  domains:
    field: [esp, gwa]
    office: [gwa]
steps:
  s: {type: source, sensor: counter, rate: 200, on: esp}
sinks:
  k: {type: callback, input: s, on: esp, name: out}
"""


@pytest.mark.parametrize("interp", ["micropython", "cpython"])
def test_keyed_controller_deploys_through_a_keyed_gateway_end_to_end(devices, keys, tmp_path, interp):
    """esp (on `interp`) is reached only through gwa. The controller's session with esp is its
    own: gwa's connection to esp carries the hello, the welcome, then only tokens."""
    ports = {"esp": free_port(), "gwa": free_port()}
    start_keyed(devices, keys, interp, "esp", ports["esp"])
    start_keyed(devices, keys, "cpython", "gwa", ports["gwa"])
    proxy = Recorder2Way(ports["esp"])
    ports["esp_via"] = proxy.port
    model = model_of(tmp_path, ONE_HOP, ports)
    sup = Supervisor(model, "edge", timeout=10.0, epoch=1, creds=controller(keys))
    rec = Recorder()
    try:
        path = sup.paths["esp"]
        assert path.route.mode == "forwarded" and path.targets == ("127.0.0.1:%d" % proxy.port,)
        sup.deploy()
        sup.watch(rec.deliver, lambda: len(rec.got("k")) >= 60, timeout=30, on_event=rec.event)
        assert rec.got("k")[:60] == list(range(60)), rec.events
        per, areas = sup.status()
        assert per["esp"]["name"] == "esp" and areas == [], per
        assert per["esp"]["assignment"]["state"] == "running"
        assert per["esp"]["security"]["accepted"] == 1 and per["esp"]["security"]["refused"] == {}
        assert per["gwa"]["security"]["accepted"] == 1
        final = sup.stop()
        assert final["esp"]["steps"]["s"]["out"] >= 60
    finally:
        sup.close()
        proxy.stop()
    assert len(proxy.conns) == 1, "one connection from the gateway to esp"
    assert_hello_welcome_then_tokens(proxy.conns[0], "esp")


# -- two gateways ----------------------------------------------------------------------------------
TWO_HOPS = """
pipeline: sf2
devices:
  esp: {sensors: [counter], address: "127.0.0.1:%(esp_via)d"}
  gwa: {address: "127.0.0.1:%(gwa)d"}
  gwb: {address: "127.0.0.1:%(gwb_via)d"}
network:
  controller: [office]
  domains:
    office: [gwa]
    mid: [gwa, gwb]
    field: [gwb, esp]
steps:
  s: {type: source, sensor: counter, rate: 100, on: esp}
sinks:
  k: {type: callback, input: s, on: esp, name: out}
"""


def test_two_gateways_each_hop_end_to_end_and_a_micropython_gateway(devices, keys, tmp_path):
    """controller -> gwa -> gwb (MicroPython) -> esp. The message for esp is a token inside a
    forward that is itself a token of the controller's session with gwb, relayed by gwa: gwa's
    connection to gwb and gwb's connection to esp both carry a hello, a welcome, then tokens."""
    ports = {"esp": free_port(), "gwa": free_port(), "gwb": free_port()}
    start_keyed(devices, keys, "cpython", "esp", ports["esp"])
    start_keyed(devices, keys, "micropython", "gwb", ports["gwb"])
    start_keyed(devices, keys, "cpython", "gwa", ports["gwa"])
    to_esp, to_gwb = Recorder2Way(ports["esp"]), Recorder2Way(ports["gwb"])
    ports["esp_via"], ports["gwb_via"] = to_esp.port, to_gwb.port
    model = model_of(tmp_path, TWO_HOPS, ports)
    sup = Supervisor(model, "edge", timeout=10.0, epoch=1, creds=controller(keys))
    rec = Recorder()
    try:
        assert sup.paths["esp"].route.forwarders == ("gwa", "gwb")
        assert len(sup.paths["esp"].targets) == 2
        sup.deploy()
        sup.watch(rec.deliver, lambda: len(rec.got("k")) >= 30, timeout=30, on_event=rec.event)
        assert rec.got("k")[:30] == list(range(30)), rec.events
        per, areas = sup.status()
        assert per["esp"]["assignment"]["state"] == "running" and areas == [], per
        assert per["gwb"]["security"]["accepted"] == 1 and per["esp"]["security"]["accepted"] == 1
        assert sup.stop()["esp"]["steps"]["s"]["out"] >= 30
    finally:
        sup.close()
        to_esp.stop()
        to_gwb.stop()
    assert len(to_gwb.conns) == 1 and len(to_esp.conns) == 1
    assert_hello_welcome_then_tokens(to_gwb.conns[0], "gwb")
    assert_hello_welcome_then_tokens(to_esp.conns[0], "esp")


# -- registrations ---------------------------------------------------------------------------------
BEHIND_GW = """
pipeline: sf3
devices:
  gwa: {address: "127.0.0.1:%(gwa)d"}
  s1: {sensors: [counter], address: "127.0.0.1:%(s1)d"}
network:
  controller: [office]
  domains: {office: [gwa], plant: [gwa], sensors: [s1]}
  links:
    - {from: sensors, to: plant}
steps:
  s: {type: source, sensor: counter, rate: 100, on: s1}
sinks:
  k: {type: callback, input: s, on: s1, name: out}
"""


def wait_registered(keys, gw_addr, name, timeout=20.0):
    """Ask the gateway (as the controller) until `name` is among its registered devices."""
    c = Client(gw_addr, timeout=10, identity=controller(keys), server="gwa")
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if name in c.call({"status": {}})["status"].get("registered", []):
                return
        raise AssertionError("%s did not register with the gateway within %ss" % (name, timeout))
    finally:
        c.close()


def test_keyed_device_registered_with_a_gateway(devices, keys, tmp_path):
    """s1 (MicroPython, keys) can only dial out: it registers with gwa in plaintext and is the
    server of the controller's handshake on that connection. A second controller session takes
    the registration over: the old session's connection is closed, s1 registers again at once
    and the new hello reaches it."""
    ports = {"gwa": free_port(), "s1": free_port()}
    start_keyed(devices, keys, "cpython", "gwa", ports["gwa"])
    cfg = tmp_path / "s1.json"
    cfg.write_text(json.dumps({"register": "127.0.0.1:%d" % ports["gwa"]}))
    start_keyed(devices, keys, "micropython", "s1", ports["s1"], ["--config", str(cfg)])
    wait_registered(keys, "127.0.0.1:%d" % ports["gwa"], "s1")
    model = model_of(tmp_path, BEHIND_GW, ports)
    assert model.topology.control_route("s1").dialers() == [("controller", "gwa"), ("s1", "gwa")]
    sup = Supervisor(model, "edge", timeout=10.0, epoch=1, creds=controller(keys))
    rec = Recorder()
    try:
        assert sup.paths["s1"].targets == ("s1",)
        sup.deploy()
        sup.watch(rec.deliver, lambda: len(rec.got("k")) >= 30, timeout=30, on_event=rec.event)
        assert rec.got("k")[:30] == list(range(30)), rec.events
        per, _ = sup.status()
        assert per["s1"]["security"]["accepted"] == 1 and per["gwa"]["registered"] == ["s1"], per
    finally:
        sup.close()
    again = Supervisor(model, "edge", timeout=10.0, creds=controller(keys))
    try:
        per, areas = again.status()
        assert per["s1"]["assignment"]["state"] == "running" and areas == [], per
        assert per["s1"]["security"]["accepted"] == 2, per["s1"]["security"]
        final = again.stop()
        assert final["s1"]["steps"]["s"]["out"] >= 30
    finally:
        again.close()


DIAL_IN = """
pipeline: sf4
devices:
  gwa: {address: "127.0.0.1:%(gwa)d"}
  far: {sensors: [counter], address: "127.0.0.1:%(far)d"}
network:
  controller: [office]
  domains:
    office: [gwa]
    remote: [far]
  links:
    - {from: remote, to: office}
steps:
  s: {type: source, sensor: counter, rate: 100, on: far}
sinks:
  k: {type: callback, input: s, on: far, name: out}
"""


def test_keyed_device_registered_with_the_controller(devices, keys, tmp_path):
    """far dials the controller and registers; the controller runs the client side of the
    handshake on the connection it accepted, and every later frame is a token."""
    ports = {"gwa": free_port(), "far": free_port(), "ctl": free_port()}
    start_keyed(devices, keys, "cpython", "gwa", ports["gwa"])
    model = model_of(tmp_path, DIAL_IN, ports)
    assert model.topology.control_route("far").mode == "register"
    sup = Supervisor(model, "edge", timeout=15.0, listen="127.0.0.1:%d" % ports["ctl"], epoch=1,
                     creds=controller(keys))
    rec = Recorder()
    try:
        cfg = tmp_path / "far.json"
        cfg.write_text(json.dumps({"register": "127.0.0.1:%d" % ports["ctl"]}))
        start_keyed(devices, keys, "cpython", "far", ports["far"], ["--config", str(cfg)])
        sup.deploy()
        link = sup._registered["far"]
        assert link.conn.channel is not None, "not a secure session"
        sup.watch(rec.deliver, lambda: len(rec.got("k")) >= 30, timeout=30, on_event=rec.event)
        assert rec.got("k")[:30] == list(range(30)), rec.events
        per, areas = sup.status()
        assert per["far"]["security"]["accepted"] == 1 and areas == [], per
    finally:
        sup.close()


# -- refusals --------------------------------------------------------------------------------------
def test_target_refusals_reach_the_controller_with_the_device_and_code(devices, keys, tmp_path):
    """esp (MicroPython) does not trust the controller's key: the Supervisor's deploy fails
    naming esp and unknown-key. A plaintext message forwarded to esp is refused
    (plaintext-refused), and a token for a target with no session open is not sent on."""
    ports = {"esp": free_port(), "gwa": free_port()}
    start_keyed(devices, keys, "micropython", "esp", ports["esp"], trust=keys["no-controller"])
    start_keyed(devices, keys, "cpython", "gwa", ports["gwa"])
    ports["esp_via"] = ports["esp"]
    model = model_of(tmp_path, ONE_HOP, ports)
    sup = Supervisor(model, "edge", timeout=10.0, epoch=1, creds=controller(keys))
    with pytest.raises(SupervisorError) as e:
        sup.deploy()
    text = str(e.value)
    assert "device esp (forwarded: controller -> gwa -> esp" in text, text
    assert "secure session failed (unknown-key)" in text and "refused by esp" in text, text
    sup2 = Supervisor(model, "edge", timeout=10.0, creds=controller(keys))
    try:
        per, _ = sup2.status()
        assert per["gwa"]["name"] == "gwa"
        assert "unknown-key" in per["esp"]["error"] and "esp" in per["esp"]["error"], per["esp"]
    finally:
        sup2.close()
    esp = "127.0.0.1:%d" % ports["esp"]
    c = Client("127.0.0.1:%d" % ports["gwa"], timeout=15, identity=controller(keys), server="gwa")
    try:
        c.send({"forward": {"to": esp, "message": {"status": {}}, "timeout": 5000}})
        m = c.recv()
        assert m["forwarded"]["from"] == esp, m
        err = m["forwarded"]["message"]["error"]
        assert err["code"] == "plaintext-refused", err
        c.send({"forward": {"to": esp, "token": "gAAAAAB-not-a-session", "timeout": 5000}})
        while True:          # the gateway's word that esp closed, then the refusal of the token
            m = c.recv()
            assert m is not None, "the gateway closed the connection"
            if "error" in m and "no secure session" in m["error"]["message"]:
                break
        assert m["error"]["code"] == "unreachable" and m["error"]["to"] == esp
    finally:
        c.close()
