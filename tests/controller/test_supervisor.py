"""The supervisor on loopback: real device processes on 127.0.0.1, the topology only on paper.

All devices can physically reach each other here, but the supervisor follows the topology: it
forwards control through the gateways and routes data over relays, so these tests check its
logic (forwarding, failure detection, re-placement, loss accounting, affected-area reports)
fast and without namespaces. tests/netns/test_gateways.py runs the same on real networks."""

import textwrap

import pytest

from procs import Recorder, free_port
from sensormesh.controller.pipeline_file import load_model
from sensormesh.controller.supervisor import Supervisor, SupervisorError

TWO_GW = """
pipeline: tg
devices:
  esp: {sensors: [counter], address: "127.0.0.1:%(esp)d"}
  gwa: {address: "127.0.0.1:%(gwa)d"}
  gwb: {address: "127.0.0.1:%(gwb)d"}
  pc:  {address: "127.0.0.1:%(pc)d"}
network:
  controller: [office]
  domains:
    field: [esp, gwa, gwb]
    office: [gwa, gwb, pc]
steps:
  s: {type: source, sensor: counter, rate: 300}
sinks:
  k: {type: callback, input: s, on: pc, name: out}
"""

ONE_GW = """
pipeline: og
devices:
  esp: {sensors: [counter], address: "127.0.0.1:%(esp)d"}
  gwa: {address: "127.0.0.1:%(gwa)d"}
  pc:  {sensors: [counter], address: "127.0.0.1:%(pc)d"}
network:
  controller: [office]
  domains:
    field: [esp, gwa]
    office: [gwa, pc]
steps:
  s: {type: source, sensor: counter, rate: 300, on: esp}
  t: {type: source, sensor: counter, rate: 100, on: pc}
sinks:
  k: {type: callback, input: s, on: pc, name: field}
  h: {type: callback, input: t, on: pc, name: local}
"""


@pytest.fixture(scope="module")
def keyring(tmp_path_factory):
    """Keys for the devices of these pipelines (made once): {"store": dir, "frags": {name: config}}."""
    from sensormesh.controller.keys import provision_local
    store = str(tmp_path_factory.mktemp("supervisor-keys") / "store")
    return {"store": store, "frags": provision_local(["esp", "gwa", "gwb", "pc"], store)}


def start(devices, tmp_path, text, names, keys=None):
    """Devices `names` on free ports (with keys from `keys`, a keyring, if given), and the model."""
    ports = {n: free_port() for n in names}
    procs = {}
    for n in names:
        extra = []
        if keys is not None:
            extra = ["--identity", keys["frags"][n]["identity"], "--trust", keys["frags"][n]["trust"]]
        procs[n] = devices("cpython", ["--port", str(ports[n]), "--name", n, "--sensors", "counter@0"] + extra)
    f = tmp_path / "p.yaml"
    f.write_text(textwrap.dedent(text % ports))
    return load_model(str(f)), procs


@pytest.mark.parametrize("keyed", [False, True], ids=["plaintext", "keys"])
def test_forwarded_control_relay_and_reroute_after_gateway_killed(devices, tmp_path, keyring, keyed):
    """With keys, every device runs keys and the controller's session with esp is end to end
    through the gateway; after the re-route it opens a new one through the other gateway."""
    creds = None
    if keyed:
        from sensormesh.controller.keys import load_controller
        creds = load_controller(keyring["store"])
    model, procs = start(devices, tmp_path, TWO_GW, ["esp", "gwa", "gwb", "pc"], keyring if keyed else None)
    sup = Supervisor(model, "edge", timeout=3.0, interval=0.3, epoch=1, creds=creds)
    rec = Recorder()
    try:
        # control of esp goes through a gateway: the first hop is a gateway's address
        path = sup.paths["esp"]
        assert path.route.mode == "forwarded" and path.first != model.devices["esp"].address
        assert path.targets == (model.devices["esp"].address,)
        sup.deploy()
        used = sup.placement.pipes[0].route[1]
        assert used in ("gwa", "gwb") and sup.assignments[used]["steps"], "no relay on the gateway"
        other = "gwb" if used == "gwa" else "gwa"
        state = {"killed": False}

        def until():
            if not state["killed"] and len(rec.got("k")) >= 150:
                procs[used].p.kill()          # by PID, mid-stream
                procs[used].p.wait(10)
                state["killed"] = True
            return state["killed"] and sup.reroutes >= 1 and rec.got("k") and rec.got("k")[-1] >= 900
        sup.watch(rec.deliver, until, timeout=40, on_event=rec.event)
        assert sup.reroutes == 1, rec.events
        text = "\n".join(rec.events)
        assert "%s failed" % used in text and "%s is down" % used in text, text
        assert sum(1 for e in rec.events if e == "%s is down" % used) == 1, "reported twice"
        assert "alternative route: esp -> %s -> pc" % other in text
        assert "control of esp now goes forwarded: controller -> %s -> esp" % other in text
        assert "redeployed" in text and "epoch 2" in text
        assert sup.epoch == 2 and sup.placement.pipes[0].route == ["esp", other, "pc"]
        # nothing lost: esp still held what the dead gateway had not delivered and sent it again
        got = rec.got("k")
        assert got == list(range(len(got))), "lost, repeated or out of order"
        assert sup.losses == [], sup.losses
        per, areas = sup.status()
        assert "error" in per[used] and areas[0] == "%s is down" % used
        assert per["esp"]["assignment"]["epoch"] == 2 and per[other]["assignment"]["state"] == "running"
        final = sup.stop()
        assert final["esp"]["steps"]["s"]["out"] > 0
        if keyed:     # one session through each gateway in turn
            assert per["esp"]["security"]["accepted"] == 2 and per["esp"]["security"]["refused"] == {}
    finally:
        sup.close()


def test_only_gateway_killed_reports_cut_off_area_and_keeps_the_rest(devices, tmp_path):
    model, procs = start(devices, tmp_path, ONE_GW, ["esp", "gwa", "pc"])
    sup = Supervisor(model, "edge", timeout=3.0, interval=0.3, epoch=1)
    rec = Recorder()
    try:
        sup.deploy()
        state = {"killed": False, "local_at_kill": 0}

        def until():
            if not state["killed"] and len(rec.got("k")) >= 50:
                procs["gwa"].p.kill()
                procs["gwa"].p.wait(10)
                state["killed"] = True
            if state["killed"] and sup.failed and not state["local_at_kill"]:
                state["local_at_kill"] = len(rec.got("h"))
            # the rest keeps serving: pc's own source goes on arriving after the failure
            return sup.failed and state["local_at_kill"] and len(rec.got("h")) >= state["local_at_kill"] + 50
        sup.watch(rec.deliver, until, timeout=30, on_event=rec.event)
        text = "\n".join(rec.events)
        assert sup.failed == {"gwa"} and sup.cut_off == {"esp"}, text
        assert "esp in domain field is unreachable from the controller: its only gateway gwa is down" in text
        assert "no alternative route: esp can no longer reach pc" in text
        assert "s (esp)" in text and sup.reroutes == 0
        per, areas = sup.status()
        assert "its only gateway gwa is down" in per["esp"]["error"]
        assert per["pc"]["assignment"]["state"] == "running"
        assert any("unreachable from the controller" in a for a in areas)
    finally:
        sup.close()


def test_fresh_status_finds_the_failed_gateway_and_the_area(devices, tmp_path):
    """What `sensormesh status FILE` does: a new Supervisor asks every device over its
    control route; the dead gateway and the area behind it are named."""
    model, procs = start(devices, tmp_path, ONE_GW, ["esp", "gwa", "pc"])
    procs["gwa"].stop()
    sup = Supervisor(model, "edge", timeout=2.0)
    try:
        per, areas = sup.status()
        assert per["pc"]["name"] == "pc"
        assert per["gwa"]["error"].startswith("gwa is down")
        assert per["esp"]["error"].startswith("unreachable: esp in domain field")
        assert areas[0] == "gwa is down"
        assert "esp in domain field is unreachable from the controller: its only gateway gwa is down" in areas
    finally:
        sup.close()


def test_deploy_names_the_device_and_its_route_when_a_gateway_is_down(devices, tmp_path):
    model, procs = start(devices, tmp_path, ONE_GW, ["esp", "gwa", "pc"])
    procs["gwa"].stop()
    sup = Supervisor(model, "edge", timeout=2.0)
    with pytest.raises(SupervisorError) as e:
        sup.deploy()
    assert "device gwa at %s is not reachable" % model.devices["gwa"].address in str(e.value)
    assert "device esp (forwarded: controller -> gwa -> esp" in str(e.value)
    assert "its gateway gwa is not" in str(e.value)
    # nothing was left running: pc is still empty
    sup2 = Supervisor(model, "edge", timeout=2.0)
    try:
        per, _ = sup2.status()
        assert per["pc"].get("assignment", {}).get("state", "empty") == "empty"
    finally:
        sup2.close()


DIAL_IN = """
pipeline: di
devices:
  pc:  {address: "127.0.0.1:%(pc)d"}
  far: {sensors: [counter], address: "127.0.0.1:%(far)d"}
network:
  controller: [office]
  domains:
    office: [pc]
    remote: [far]
  links:
    - {from: remote, to: office}
steps:
  s: {type: source, sensor: counter, rate: 200}
sinks:
  k: {type: callback, input: s, on: pc, name: out}
"""


def test_device_that_dials_out_registers_with_the_controller(devices, tmp_path):
    """far may only dial into the office: it registers with the controller (listen=...)."""
    ports = {"pc": free_port(), "far": free_port(), "ctl": free_port()}
    devices("cpython", ["--port", str(ports["pc"]), "--name", "pc", "--sensors", "counter@0"])
    cfg = tmp_path / "far.json"
    cfg.write_text('{"register": "127.0.0.1:%d"}' % ports["ctl"])
    f = tmp_path / "p.yaml"
    f.write_text(textwrap.dedent(DIAL_IN % ports))
    model = load_model(str(f))
    assert model.topology.control_route("far").mode == "register"
    sup = Supervisor(model, "edge", timeout=10.0, listen="127.0.0.1:%d" % ports["ctl"], epoch=1)
    rec = Recorder()
    try:
        devices("cpython", ["--port", str(ports["far"]), "--name", "far", "--sensors", "counter@0",
                            "--config", str(cfg)])
        sup.deploy()
        sup.watch(rec.deliver, lambda: len(rec.got("k")) >= 100, timeout=20, on_event=rec.event)
        assert rec.got("k")[:100] == list(range(100))
        per, areas = sup.status()
        assert per["far"]["name"] == "far" and areas == []
    finally:
        sup.close()


def test_gateway_that_stops_answering_is_found_by_the_status_timeout(devices, tmp_path):
    """A frozen gateway (SIGSTOP: its sockets stay open, nothing answers) is only noticed by
    the periodic status request running out of time; then the same re-route follows."""
    import os
    import signal
    model, procs = start(devices, tmp_path, TWO_GW, ["esp", "gwa", "gwb", "pc"])
    sup = Supervisor(model, "edge", timeout=1.5, interval=0.3, epoch=1)
    rec = Recorder()
    frozen = []
    try:
        sup.deploy()
        used = sup.placement.pipes[0].route[1]
        other = "gwb" if used == "gwa" else "gwa"

        def until():
            if not frozen and len(rec.got("k")) >= 100:
                os.kill(procs[used].p.pid, signal.SIGSTOP)
                frozen.append(procs[used].p.pid)
            return frozen and sup.reroutes >= 1 and rec.got("k")[-1] >= 700
        sup.watch(rec.deliver, until, timeout=40, on_event=rec.event)
        text = "\n".join(rec.events)
        assert sup.failed == {used}, text
        assert "%s failed: no answer from %s within" % (used, used) in text
        assert "alternative route: esp -> %s -> pc" % other in text
        got = rec.got("k")
        assert got == list(range(len(got))), "lost, repeated or out of order"    # replayed by esp
        assert sup.losses == [], sup.losses
    finally:
        for pid in frozen:
            os.kill(pid, signal.SIGCONT)
        sup.close()


FLAT = """
pipeline: flat
devices:
  esp: {sensors: [counter], address: "127.0.0.1:%(esp)d"}
  mid: {cpu: 16, address: "127.0.0.1:%(mid)d"}
  pc:  {address: "127.0.0.1:%(pc)d"}
steps:
  s: {type: source, sensor: counter, rate: 300, on: esp}
  d: {type: changes, input: s}
sinks:
  k: {type: callback, input: d, on: pc}
"""


def test_steps_lost_with_a_failed_device_are_placed_again(devices, tmp_path):
    """No network: section (one domain). The device running step d dies; d is placed again on
    what is left and the stream resumes; the loss on the failed device's pipes is not known
    and said so."""
    from sensormesh.controller.placement import Placement, default_link
    model, procs = start(devices, tmp_path, FLAT, ["esp", "mid", "pc"])
    where = {"s": "esp", "d": "mid", "k": "pc"}
    pl = Placement(model, "optimal", where, {s: "test" for s in where}, default_link, 0.8)
    sup = Supervisor(model, pl, timeout=3.0, interval=0.3, epoch=1)
    rec = Recorder()
    try:
        sup.deploy()
        assert set(sup.assignments) == {"esp", "mid", "pc"}
        killed = []

        def until():
            if not killed and len(rec.got("k")) >= 100:
                procs["mid"].p.kill()
                procs["mid"].p.wait(10)
                killed.append(rec.got("k")[-1])
            return killed and sup.reroutes and rec.got("k")[-1] >= killed[0] + 300
        sup.watch(rec.deliver, until, timeout=40, on_event=rec.event)
        text = "\n".join(rec.events)
        assert "steps lost with the failed devices: d (mid)" in text
        assert sup.placement.device_of["d"] in ("esp", "pc"), text
        assert "placed again without mid" in text
        assert "values lost with mid are not known (it failed)" in text
        got = rec.got("k")
        assert got == sorted(set(got)) and got[-1] >= killed[0] + 300
    finally:
        sup.close()


def test_device_that_comes_back_gets_its_steps_again(devices, tmp_path):
    """mid dies, d moves to what is left; mid comes back (same address, a fresh process): the
    supervisor finds it answering, returns to the placement before the failure and the stream
    goes on, in order, through mid again."""
    from sensormesh.controller.placement import Placement, default_link
    model, procs = start(devices, tmp_path, FLAT, ["esp", "mid", "pc"])
    where = {"s": "esp", "d": "mid", "k": "pc"}
    pl = Placement(model, "optimal", where, {s: "test" for s in where}, default_link, 0.8)
    sup = Supervisor(model, pl, timeout=3.0, interval=0.3, epoch=1)
    rec = Recorder()
    port = model.devices["mid"].address.rpartition(":")[2]
    try:
        sup.deploy()
        marks = {}

        def until():
            got = rec.got("k")
            if "killed" not in marks and len(got) >= 100:
                procs["mid"].p.kill()
                procs["mid"].p.wait(10)
                marks["killed"] = got[-1]
            if "killed" in marks and "back" not in marks and sup.reroutes and got[-1] >= marks["killed"] + 100:
                assert sup.placement.device_of["d"] in ("esp", "pc")
                devices("cpython", ["--port", port, "--name", "mid", "--sensors", "counter@0"]).wait_line("listening on")
                marks["back"] = got[-1]
            return "back" in marks and sup.recoveries and got[-1] >= marks["back"] + 300
        sup.watch(rec.deliver, until, timeout=60, on_event=rec.event)
        text = "\n".join(rec.events)
        assert "mid failed" in text and "mid answers again" in text, text
        assert "mid back: the placement before the failures" in text, text
        assert sup.placement.device_of["d"] == "mid" and "mid" in sup.deployed and not sup.failed
        assert sup.assignments["mid"]["epoch"] == sup.epoch == 3      # deploy 1, re-route 2, back 3
        got = rec.got("k")
        assert got == sorted(set(got)) and got[-1] >= marks["back"] + 300
        st = sup._call("mid", {"status": {}}, ("status",))["status"]
        assert st["assignment"]["epoch"] == 3 and st["assignment"]["state"] == "running", st
    finally:
        sup.close()


def test_a_new_deployment_is_newer_than_what_the_devices_run(devices, tmp_path):
    """Two controllers that would pick the same epoch (e.g. two deploys within one second): the
    second asks the devices and goes one past the newest epoch they run."""
    from sensormesh.controller.placement import Placement, default_link
    model, procs = start(devices, tmp_path, FLAT, ["esp", "mid", "pc"])
    where = {"s": "esp", "d": "mid", "k": "pc"}
    pl = Placement(model, "optimal", where, {s: "test" for s in where}, default_link, 0.8)
    first = Supervisor(model, pl, timeout=3.0, epoch=7)
    try:
        first.deploy()
    finally:
        first.close()
    second = Supervisor(model, pl, timeout=3.0, epoch=7)
    try:
        second.deploy()
        assert second.epoch == 8
        for d in ("esp", "mid", "pc"):
            st = second._call(d, {"status": {}}, ("status",))["status"]
            assert st["assignment"]["epoch"] == 8, st
    finally:
        second.close()


UNTRUSTED = """
pipeline: ut
devices:
  esp: {sensors: [counter], address: "127.0.0.1:%(esp)d"}
  stranger: {address: "127.0.0.1:%(stranger)d"}
steps:
  s: {type: source, sensor: counter, rate: 10, on: esp}
sinks:
  k: {type: callback, input: s, on: esp, name: out}
"""


def test_device_missing_from_trust_store_is_not_dialed(devices, tmp_path, keyring):
    """The controller checks a device's name against its trust store before dialing it, and
    says so; a trusted device next to it is asked as usual."""
    import socket
    from sensormesh.controller.keys import load_controller
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    listener.setblocking(False)
    esp = free_port()
    devices("cpython", ["--port", str(esp), "--name", "esp", "--sensors", "counter@0",
                        "--identity", keyring["frags"]["esp"]["identity"], "--trust", keyring["frags"]["esp"]["trust"]])
    f = tmp_path / "p.yaml"
    f.write_text(textwrap.dedent(UNTRUSTED % {"esp": esp, "stranger": listener.getsockname()[1]}))
    sup = Supervisor(load_model(str(f)), "edge", timeout=3.0, interval=0.3, epoch=1,
                     creds=load_controller(keyring["store"]))
    try:
        st, _ = sup.status()
        assert st["esp"]["name"] == "esp", st
        err = st["stranger"]["error"]
        assert "cannot authenticate stranger" in err and "not in the controller's trust store" in err, err
        assert err.endswith("not connecting"), err
        with pytest.raises(BlockingIOError):
            listener.accept()           # nobody dialed it
    finally:
        sup.close()
        listener.close()


def test_a_reroute_waiting_for_a_silent_device_stops_when_the_run_ends(devices, tmp_path):
    """mid dies and esp stops answering (SIGSTOP) at once: the re-route asks esp to stop first
    and would wait the whole request timeout (20 s here; per device, one after the other, with
    a hundred boards many minutes) for it. When the run ends meanwhile (its duration, Ctrl-C:
    cut_short), the re-route says so once and the watch returns at once."""
    import os
    import signal
    import time
    from sensormesh.controller.placement import Placement, default_link
    model, procs = start(devices, tmp_path, FLAT, ["esp", "mid", "pc"])
    where = {"s": "esp", "d": "mid", "k": "pc"}
    pl = Placement(model, "optimal", where, {s: "test" for s in where}, default_link, 0.8)
    sup = Supervisor(model, pl, timeout=20.0, interval=0.3, epoch=1)
    rec = Recorder()
    state = {}

    def until():
        if "killed" not in state and len(rec.got("k")) >= 50:
            os.kill(procs["esp"].p.pid, signal.SIGSTOP)
            procs["mid"].p.kill()
            procs["mid"].p.wait(10)
            state["killed"] = time.monotonic()
        return False

    def cut_short():
        # the run ends while the re-route waits for esp's answer to its stop
        if any("mid failed" in e for e in rec.events) and "ended" not in state:
            state["ended"] = time.monotonic()
        if "ended" in state and time.monotonic() >= state["ended"] + 1.0:
            return "duration"
        return None
    try:
        sup.deploy()
        t0 = time.monotonic()
        sup.watch(rec.deliver, until, timeout=60, on_event=rec.event, cut_short=cut_short)
        took = time.monotonic() - t0
        text = "\n".join(rec.events)
        assert "ended" in state, text
        assert "re-route to epoch 2 left unfinished: the run is ending (duration)" in text, text
        # returned within a few seconds of the run's end, not after esp's 20 s timeout
        assert time.monotonic() - state["ended"] < 8.0, (took, text)
        assert sup.cut_short is None
    finally:
        os.kill(procs["esp"].p.pid, signal.SIGCONT)
        sup.close()


ONE_DEVICE = """
pipeline: cut
devices:
  pc: {sensors: [counter], address: "127.0.0.1:%(link)d"}
steps:
  s: {type: source, sensor: counter, rate: 300, on: pc}
sinks:
  k: {type: callback, input: s, on: pc}
"""


def test_callback_values_keep_coming_after_the_control_link_drops(devices, tmp_path):
    """The link between the controller and the sink's device drops once (every connection
    through it closed) while the device runs on: the supervisor finds the device answering again
    and its callback values keep reaching the controller, each once and in order. (They stopped
    after the drop: the subscription had gone with the closed session, the device counted its
    values as taken once queued and held them, and the user saw nothing more.)"""
    from linkcut import Link
    from sensormesh.controller.placement import Placement, default_link
    port = free_port()
    devices("cpython", ["--port", str(port), "--name", "pc", "--sensors", "counter@0"]).wait_line("listening on")
    link = Link(port)
    f = tmp_path / "p.yaml"
    f.write_text(textwrap.dedent(ONE_DEVICE % {"link": link.port}))
    model = load_model(str(f))
    where = {"s": "pc", "k": "pc"}
    pl = Placement(model, "optimal", where, {s: "test" for s in where}, default_link, 0.8)
    sup = Supervisor(model, pl, timeout=3.0, interval=0.3, epoch=1)
    rec = Recorder()
    try:
        sup.deploy()
        marks = {}

        def until():
            got = rec.got("k")
            if "cut" not in marks and len(got) >= 100:
                link.cut()
                link.heal()
                marks["cut"] = len(got)
            return "cut" in marks and len(got) >= marks["cut"] + 300
        sup.watch(rec.deliver, until, timeout=20, on_event=rec.event)
        got = rec.got("k")
        assert "cut" in marks, rec.text()
        assert len(got) >= marks["cut"] + 300, "values stopped after the link dropped: %d then %d\n%s" \
            % (marks["cut"], len(got), rec.text())
        assert got == list(range(got[0], got[0] + len(got))), "each value once and in order"
        assert not sup.failed and "pc answered again" in rec.text(), rec.text()
    finally:
        sup.close()
        link.stop()


NOT_A_DEVICE = """
pipeline: p
devices:
  web: {interpreter: cpython, address: "127.0.0.1:%(port)d", sensors: [counter]}
steps:
  s: {type: source, sensor: counter, rate: 10, on: web}
sinks:
  k: {type: callback, input: s, on: web}
"""


def test_status_names_the_protocol_error_of_something_else_at_a_device_address(tmp_path):
    """Another service at a device's address (a web server on its port): status says that what
    answers there is not a sensormesh device and why, instead of calling the device down."""
    import socket
    import threading
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    listener.settimeout(0.2)
    done = threading.Event()

    def serve():
        while not done.is_set():
            try:
                c, _ = listener.accept()
            except OSError:
                continue
            with c:
                c.settimeout(2)
                try:
                    c.recv(4096)
                    c.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
                except OSError:
                    pass
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    f = tmp_path / "p.yaml"
    f.write_text(NOT_A_DEVICE % {"port": listener.getsockname()[1]})
    sup = Supervisor(load_model(str(f)), "edge", timeout=3.0)
    try:
        st, _ = sup.status()
        err = st["web"]["error"]
        assert err.startswith("web does not answer as a sensormesh device over direct: controller -> web"), err
        assert "protocol error: frame of 1213486160 bytes exceeds the limit" in err, err
    finally:
        sup.close()
        done.set()
        t.join(5)
        listener.close()


def test_status_names_a_status_reply_that_is_not_an_object(tmp_path):
    """A device (or something posing as one) whose status reply is not an object: status says
    so for that device, instead of failing with an AttributeError."""
    import json
    import socket
    import struct
    import threading
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    listener.settimeout(0.2)
    done = threading.Event()

    def frames(c):
        buf = b""
        while True:
            while len(buf) >= 4 and len(buf) >= 4 + struct.unpack("!I", buf[:4])[0]:
                n = struct.unpack("!I", buf[:4])[0]
                yield json.loads(buf[4:4 + n])
                buf = buf[4 + n:]
            data = c.recv(65536)
            if not data:
                return
            buf += data

    def send(c, msg):
        b = json.dumps(msg).encode()
        c.sendall(struct.pack("!I", len(b)) + b)

    def serve():
        while not done.is_set():
            try:
                c, _ = listener.accept()
            except OSError:
                continue
            with c:
                c.settimeout(5)
                try:
                    for msg in frames(c):
                        if "hello" in msg or "info" in msg:
                            send(c, {"info": {"name": "web", "version": "0.1.0", "implementation": "cpython",
                                              "sensors": {"counter": {"kind": "counter", "rate": 10.0}},
                                              "max-frame": 16384}})
                        elif "status" in msg:
                            send(c, {"status": "all fine"})
                except (OSError, ValueError):
                    pass
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    f = tmp_path / "p.yaml"
    f.write_text(NOT_A_DEVICE % {"port": listener.getsockname()[1]})
    sup = Supervisor(load_model(str(f)), "edge", timeout=3.0)
    try:
        st, _ = sup.status()
        err = st["web"]["error"]
        assert "status" in err and "not an object" in err and "'all fine'" in err, err
    finally:
        sup.close()
        done.set()
        t.join(5)
        listener.close()


def test_status_lines_of_a_status_with_odd_parts_name_them(capsys):
    from sensormesh.controller.deploy_cli import _show_status
    _show_status({"a": {"assignment": "x"}, "b": {"assignment": {"state": "running", "steps": [1]}}}, [], False)
    out = capsys.readouterr().out
    assert "a: its status holds an assignment that is not an object: 'x'" in out, out
    assert "b: running" in out and "steps: [1]" in out, out
