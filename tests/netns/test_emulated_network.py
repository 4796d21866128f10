"""Emulated networks in Linux network namespaces (`sensormesh up --network`, root): the
namespaces are laid out exactly as the file says, one-way links hold, a 50 ms delay shows in a
round trip between two devices (within 10%), and nothing is left afterwards, also after the
controller was killed with SIGKILL (the next run removes it)."""
import json
import signal
import sys

import pytest

import netlab
from emulated import (NOTHING, gone, measure_rtt, median, next_run_cleans, recorded, rtt_file,
                      stop_with)
from sensormesh.controller.pipeline_file import load_model
from sensormesh.netlab.emulation import DEVICE_PORT, Emulation

PING = r"""
import json, socket, sys, time
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.create_connection((host, port), timeout=10)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
out = []
for i in range(n):
    t0 = time.monotonic()
    s.sendall(b"ping%04d" % i)
    got = b""
    while len(got) < 8:
        chunk = s.recv(8 - len(got))
        if not chunk:
            raise SystemExit("closed")
        got += chunk
    out.append(time.monotonic() - t0)
print(json.dumps(out))
"""


def probe(lab, host, ip, port, timeout=1.0):
    res = lab.exec(host, [sys.executable, "-c", netlab.PROBE, ip, port, timeout, "", 0, "0"],
                   timeout=timeout + 20)
    return json.loads(res.stdout.strip().splitlines()[-1])["result"]


@pytest.mark.netns
def test_layout_follows_the_file_and_links_are_one_way(tmp_path, monkeypatch):
    netlab.require()
    monkeypatch.chdir(tmp_path)
    model = load_model(rtt_file(tmp_path, with_cloud=True))
    with Emulation(model, ["lan:delay=50ms", "lan->cloud:rate=10mbit"], mode="namespaces") as emu:
        lab = emu.lab
        # a namespace per device and one for the controller (in lan), a switch, a router
        assert sorted(lab.hosts) == ["a", "b", "controller", "srv"]
        assert sorted(n[len(lab.prefix) + 1:] for n in lab.own_namespaces()) == \
            ["h-a", "h-b", "h-controller", "h-srv", "rt", "sw"]
        assert lab.host_domains == {"a": ["lan"], "b": ["lan"], "srv": ["cloud"],
                                    "controller": ["lan"]}
        assert sorted(recorded(str(tmp_path))["namespaces"]) == sorted(lab.own_namespaces())
        # the devices' addresses: relays on their own addresses in 198.18.0.0/15
        plan = model.address_plan
        assert plan["a"]["addresses"] == {"lan": "%s:7100" % lab.addr("a")}
        assert plan["srv"]["addresses"] == {"cloud": "%s:%d" % (lab.addr("srv"), DEVICE_PORT),
                                            "lan->cloud": "%s:7101" % lab.addr("srv")}
        for host in lab.hosts:
            for ip in lab.addrs(host).values():
                assert ip.startswith("198.18.") or ip.startswith("198.19.")
        # one-way: lan dials into cloud, cloud cannot dial lan
        for host, port in (("srv", DEVICE_PORT), ("b", DEVICE_PORT)):
            lab.wait_line(lab.python(host, netlab.ECHO_SERVER, "0.0.0.0", port, ""), "LISTENING")
        assert probe(lab, "a", lab.addr("srv"), DEVICE_PORT, timeout=5) == "ok"
        assert probe(lab, "a", lab.addr("b"), DEVICE_PORT, timeout=5) == "ok"
        assert probe(lab, "srv", lab.addr("b"), DEVICE_PORT) in ("timeout", "unreachable")
        # a TCP round trip from a to b through b's relay: 2 x 50 ms
        host, port = plan["b"]["addresses"]["lan"].split(":")
        res = lab.exec("a", [sys.executable, "-c", PING, host, port, 20], timeout=30)
        rtts = json.loads(res.stdout)[2:]
        # the fastest round trip is the emulated delay plus the least scheduling noise: never
        # under 2 x 50 ms, and within 10% of it (the median also carries this busy machine's noise)
        assert min(rtts) >= 0.0995, rtts
        assert min(rtts) == pytest.approx(0.100, rel=0.10), rtts
        assert median(rtts) < 0.150, rtts
        rec = recorded(str(tmp_path))
    assert gone(rec) == []
    assert not [n for n in netlab.namespaces() if n.startswith(lab.prefix)]


@pytest.mark.netns
def test_round_trip_between_two_devices_in_namespaces(tmp_path, monkeypatch):
    netlab.require()
    monkeypatch.chdir(tmp_path)
    base, events, seen = measure_rtt(tmp_path, [], "namespaces")     # the layout, no conditions
    assert "emulated network (namespaces): no conditions" in events
    assert len(seen["namespaces"]) == 4 and not seen["processes"][2:]  # no relay: 2 devices
    rtts, events, seen = measure_rtt(tmp_path, ["lan:delay=50ms"], "namespaces", insecure=False)
    assert "emulated network (namespaces): lan delay=50ms" in events
    assert len(seen["namespaces"]) == 4           # a, b, controller, switch
    # fastest round trips (least scheduling noise): the delay adds 2 x 50 ms, within 10%
    assert min(rtts) - min(base) == pytest.approx(0.100, rel=0.10), (min(rtts), min(base), median(rtts))
    assert min(rtts) >= 0.0995, rtts
    assert gone(seen) == []


@pytest.mark.netns
def test_devices_behind_a_one_way_link_register_with_the_controller(tmp_path, monkeypatch):
    """The controller in the cloud cannot dial the office (nftables drops it): the office's
    devices dial the controller's address in the cloud and register; the stream runs, once."""
    from sensormesh.controller import runner
    from test_up_registering import office_to_cloud
    netlab.require()
    monkeypatch.chdir(tmp_path)
    model = load_model(office_to_cloud(tmp_path))
    got, events = [], []
    final = runner.up(model, count=60, insecure=True, on_event=events.append, network_mode="namespaces",
                      on_deliver=lambda device, step, values: got.extend(values), timeout=5.0)
    text = "\n".join(events)
    assert "emulated network (namespaces)" in text, text
    assert "a with controller at 198.18." in text and "b with controller at 198.18." in text, text
    assert len(got) >= 60 and got == list(range(len(got))), got[:20]
    assert final["c"]["steps"]["got"]["in"] == len(got)


@pytest.mark.netns
def test_ctrl_c_removes_namespaces_and_processes(tmp_path):
    netlab.require()
    rec = stop_with(tmp_path, "namespaces", signal.SIGINT)
    assert len(rec["namespaces"]) == 4 and len(rec["processes"]) == 4   # 2 devices, 2 relays
    assert gone(rec) == []
    assert recorded(str(tmp_path)) == NOTHING


@pytest.mark.netns
def test_after_sigkill_the_next_run_removes_namespaces_and_processes(tmp_path):
    netlab.require()
    rec = stop_with(tmp_path, "namespaces", signal.SIGKILL)
    left = gone(rec)
    assert any(x.startswith("namespace") for x in left)     # nobody but the next run removes these
    # its devices notice the controller's death and exit by themselves, sooner or later: whether
    # one still runs now is a race; that they are recorded for the next run is not
    assert recorded(str(tmp_path))["processes"], recorded(str(tmp_path))
    next_run_cleans(tmp_path, "namespaces", rec)


@pytest.mark.netns
def test_namespaces_of_a_dead_run_from_another_directory_are_removed_and_named(tmp_path, monkeypatch):
    # a run killed in another directory left its namespace and a record this directory does not
    # have: the next run here still removes the namespace, and says so
    import subprocess
    netlab.require()
    monkeypatch.chdir(tmp_path)
    dead = subprocess.Popen(["true"])
    dead.wait()
    name = "%s%dr0-h-x" % (netlab.FAMILY, dead.pid)
    subprocess.run(["ip", "netns", "add", name], check=True)
    events = []
    try:
        with Emulation(load_model(rtt_file(tmp_path)), ["lan:delay=5ms"], mode="namespaces",
                       on_event=events.append):
            assert name not in netlab.namespaces()
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
    assert "removed what an earlier run left behind: namespace %s" % name in events
