"""Emulated networks on loopback (no root): `sensormesh up --network` puts a shaping relay on
every connection over a shaped domain, two devices' round trip grows by the emulated delay
(within 10%), everything started is removed on exit and, after the controller was killed with
SIGKILL, by the next run in the same directory."""
import json
import os
import signal

import pytest

from emulated import (NOTHING, gone, measure_rtt, median, next_run_cleans, recorded, rtt_file,
                      stop_with)
from sensormesh.controller.pipeline_file import load_model
from sensormesh.netlab.emulation import Emulation, EmulationError


def test_address_plan_relays_where_shaped(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = load_model(rtt_file(tmp_path, with_cloud=True))
    with Emulation(model, ["lan->cloud:delay=5ms"], mode="loopback") as emu:
        plan = model.address_plan
        # lan is not shaped: a and b are dialed at their own ports; srv has an address for the
        # link (a relay) and one in cloud (direct)
        for dev in ("a", "b"):
            assert plan[dev]["addresses"] == {"lan": "127.0.0.1:%d" % emu.listen[dev][1]}
        srv = plan["srv"]["addresses"]
        assert srv["cloud"] == "127.0.0.1:%d" % emu.listen["srv"][1]
        assert srv["lan->cloud"] != srv["cloud"]
        assert [(d, k) for d, k, _, _ in emu.shaped] == [("srv", "lan->cloud")]
        inv = model.routing_inventory()
        assert inv["srv"]["addresses"]["lan->cloud"] == srv["lan->cloud"]
        # the placement's pipe from srv to b dials srv over the link, through the relay
        asg = model.place("optimal").assignments()
        pulls = [s["params"]["from"] for s in asg["b"]["steps"]
                 if s["type"] == "pipe_in" and "from" in s["params"]]
        assert pulls == [srv["lan->cloud"]]
        rec = recorded(str(tmp_path))
        assert [p["what"] for p in rec["processes"]] == ["shaping relay on loopback"]
        assert gone(rec)                 # the relay runs
    assert gone(rec) == []
    assert model.address_plan is None
    assert recorded(str(tmp_path)) == NOTHING


def test_bad_specs_are_refused_before_anything_starts(tmp_path):
    model = load_model(rtt_file(tmp_path))
    with pytest.raises(EmulationError, match="no domain 'boards' \\(domains: lan\\)"):
        Emulation(model, ["boards:delay=1ms"], mode="loopback")
    with pytest.raises(EmulationError, match="network mode must be one of"):
        Emulation(model, ["lan:delay=1ms"], mode="wifi")


def test_round_trip_between_two_devices_grows_by_the_delay(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    base, _, _ = measure_rtt(tmp_path, ["lan:rate=100mbit"], "loopback")
    rtts, events, seen = measure_rtt(tmp_path, ["lan:delay=50ms"], "loopback")
    assert "emulated network (loopback): lan delay=50ms" in events
    # a -> b and b -> a each cross one relay: 2 x 50 ms, plus what the pipeline takes itself
    assert median(rtts) - median(base) == pytest.approx(0.100, rel=0.10), (median(rtts), median(base))
    assert min(rtts) >= 0.100
    assert seen["processes"] and gone(seen) == []


def test_secure_sessions_pass_the_relays(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rtts, events, seen = measure_rtt(tmp_path, ["lan:delay=10ms,jitter=2ms"], "loopback",
                                     count=15, insecure=False)
    assert any(e.startswith("secure:") for e in events)
    assert min(rtts) >= 0.016
    assert gone(seen) == []


def test_cli_refuses_a_bad_spec(tmp_path):
    from test_up import cli
    path = rtt_file(tmp_path)
    for spec, message in (("lan:delay=20", "--network 'lan:delay=20': delay=20: give a time such as 20ms"),
                          ("nowhere:delay=1ms", "--network 'nowhere:delay=1ms': the pipeline file has no "
                                                "domain 'nowhere'"),
                          ("lan->cloud:delay=1ms", "the pipeline file has no link lan->cloud")):
        res = cli("up", path, "--network", spec, "--duration", "1", cwd=str(tmp_path))
        assert res.returncode == 2, res.stdout + res.stderr
        assert message in res.stderr and "Traceback" not in res.stderr
        # refused before anything ran: no device started, no keys, no metrics file
        assert "starting" not in res.stdout
        assert not (tmp_path / ".sensormesh").exists()


def test_cli_checks_a_spec_against_a_file_without_a_network_section(tmp_path):
    from test_up import cli
    path = tmp_path / "plain.yaml"
    path.write_text("pipeline: plain\n"
                    "devices:\n  pc: {interpreter: cpython, local: true, sensors: [\"n=counter@10\"]}\n"
                    "steps:\n  t: {type: source, sensor: n}\n"
                    "sinks:\n  out: {type: callback, input: t}\n")
    res = cli("up", str(path), "--network", "nowhere:delay=1ms", "--duration", "1", cwd=str(tmp_path))
    assert res.returncode == 2, res.stdout + res.stderr
    assert "the pipeline file has no domain 'nowhere' (domains: default)" in res.stderr
    assert "no `network:` section" in res.stderr and "Traceback" not in res.stderr
    assert "starting" not in res.stdout and not (tmp_path / ".sensormesh").exists()


def test_ctrl_c_removes_everything(tmp_path):
    rec = stop_with(tmp_path, "loopback", signal.SIGINT)
    assert len(rec["processes"]) == 3
    assert gone(rec) == []
    assert recorded(str(tmp_path)) == NOTHING


def test_after_sigkill_the_next_run_removes_the_leftovers(tmp_path):
    rec = stop_with(tmp_path, "loopback", signal.SIGKILL)
    assert sorted(p["what"] for p in rec["processes"]) == \
        ["device a", "device b", "shaping relay on loopback"]
    # The killed run could not remove what it started: its record stays for the next run. (Its
    # devices and relay notice the controller's death and exit by themselves, sooner or later:
    # whether one still runs at this moment is a race, so it is not asserted.)
    assert recorded(str(tmp_path))["processes"], recorded(str(tmp_path))
    next_run_cleans(tmp_path, "loopback", rec)


def test_without_root_it_says_so_and_emulates_on_loopback(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    model = load_model(rtt_file(tmp_path))
    events = []
    with Emulation(model, ["lan:delay=1ms"], mode="auto", on_event=events.append) as emu:
        assert emu.mode == "loopback"
    assert any("needs root" in e and "on loopback instead" in e for e in events), events
    with pytest.raises(EmulationError, match="cannot build network namespaces: .*needs root"):
        Emulation(model, ["lan:delay=1ms"], mode="namespaces").start()
    assert recorded(str(tmp_path)) == NOTHING


def test_control_goes_through_the_relay_unless_on_the_devices_host(tmp_path, monkeypatch):
    """The controller in lan reaches a and b through their relays; the controller on a's host
    reaches a directly and b through b's relay."""
    from sensormesh.controller.supervisor import Supervisor
    monkeypatch.chdir(tmp_path)
    for controller, direct in ((["lan"], set()), ("a", {"a"})):
        path = rtt_file(tmp_path)
        doc = json.loads(open(path).read())
        doc["network"]["controller"] = controller
        open(path, "w").write(json.dumps(doc))
        model = load_model(path)
        with Emulation(model, ["lan:delay=1ms"], mode="loopback") as emu:
            sup = Supervisor(model, "optimal")
            try:
                for dev in ("a", "b"):
                    own = "127.0.0.1:%d" % emu.listen[dev][1]
                    relay = model.address_plan[dev]["addresses"]["lan"]
                    assert relay != own
                    assert sup.paths[dev].first == (own if dev in direct else relay)
            finally:
                sup.close()


def test_devices_elsewhere_keep_their_addresses_on_loopback(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = rtt_file(tmp_path)
    doc = json.loads(open(path).read())
    doc["devices"]["b"] = {"interpreter": "cpython", "address": "127.0.0.1:7999"}
    open(path, "w").write(json.dumps(doc))
    model = load_model(path)
    events = []
    with Emulation(model, ["lan:delay=1ms"], mode="auto", on_event=events.append) as emu:
        assert emu.mode == "loopback"
        assert model.routing_inventory()["b"] == {"address": "127.0.0.1:7999"}
        assert set(model.address_plan) == {"a"}
    assert any(e.startswith("b not local: true, so the network is emulated on loopback") for e in events)
    from sensormesh.netlab import namespaces
    monkeypatch.setattr(namespaces, "preflight", lambda: None)     # as if root: refused first
    with pytest.raises(EmulationError, match="every device of the file must be local: true \\(not: b\\)"):
        Emulation(model, ["lan:delay=1ms"], mode="namespaces").start()


def test_up_refuses_namespaces_with_a_device_that_is_not_local_before_starting_anything(tmp_path):
    # a board at its own address cannot be put in a namespace: `up --network-mode namespaces`
    # says so before it starts a device or makes a metrics file, as a bad --network spec is refused
    from test_up import cli
    (tmp_path / "r.yaml").write_text(
        "pipeline: remote\n"
        "devices:\n"
        "  board: {address: \"127.0.0.1:1\", sensors: [\"n=counter@5\"]}\n"
        "  pc: {interpreter: cpython, local: true}\n"
        "steps:\n"
        "  n: {type: source, sensor: n}\n"
        "sinks:\n"
        "  out: {type: callback, input: n, on: pc}\n")
    res = cli("up", str(tmp_path / "r.yaml"), "--network", "default:delay=5ms", "--network-mode", "namespaces",
              "--insecure", "--duration", "1", cwd=str(tmp_path))
    assert res.returncode == 2, res.stdout + res.stderr
    assert "Invalid value for --network-mode: in network namespaces every device runs here, so every " \
           "device of the file must be local: true (not: board)" in res.stderr
    assert "starting" not in res.stdout and not (tmp_path / ".sensormesh").exists()
