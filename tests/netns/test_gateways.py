"""Gateways in real namespaces: relays carry a pipeline across domains, a one-way link carries
data against its dial direction, control reaches devices through gateways, and a failed
gateway is routed around (the loss reported) or reported as the affected area.

The test process is the controller. Its sockets are opened inside the lab's controller
namespace (setns on this thread while a socket is created), so it reaches exactly what the
topology says the controller reaches. Devices are real processes in their namespaces: CPython
workers and a MicroPython unix-port device."""

import contextlib
import ctypes
import os
import sys

import pytest

from procs import ROOT, need_micropython
from sensormesh import transport
from sensormesh.controller.routing import edge_fragments
from sensormesh.controller.topology import Topology

PORT = 7410
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)

# field: esp-1 (MicroPython) [gw-1 gw-2]    office: [gw-1 gw-2] pc (+ controller)
TWO_GW = {"controller": ["office"],
          "domains": {"field": ["esp-1", "gw-1", "gw-2"], "office": ["gw-1", "gw-2", "pc"]}}
ONE_GW = {"controller": ["office"],
          "domains": {"field": ["esp-1", "gw-1"], "office": ["gw-1", "pc"]}}
# pc (office) may dial srv (cloud), never the reverse; srv's data flows to pc.
ONE_WAY = {"controller": ["office"], "domains": {"office": ["pc"], "cloud": ["srv"]},
           "links": [{"from": "office", "to": "cloud"}]}


@contextlib.contextmanager
def in_ns(name):
    """Sockets created inside this block belong to network namespace `name`."""
    here = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    there = os.open("/var/run/netns/" + name, os.O_RDONLY)
    try:
        if _libc.setns(there, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns into %s" % name)
        yield
    finally:
        if _libc.setns(here, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns back to the test's namespace")
        os.close(there)
        os.close(here)


class Inbox:
    def __init__(self):
        self.messages = []
        self.closed = None

    def on_message(self, conn, msg):
        self.messages.append(msg)

    def on_close(self, conn, reason):
        self.closed = reason


def unwrap(msg, path):
    """Peel one {"forwarded": {"from": hop}} per forwarding hop; None if it is not from path."""
    for hop in path:
        f = msg.get("forwarded") if type(msg) is dict else None
        if f is None or f.get("from") != hop:
            return None
        msg = f["message"]
    return msg


class Controller:
    """Control sessions opened from the controller namespace; requests along a path of
    addresses (gateways first, the device last), forwarded as nested "forward" messages."""

    def __init__(self, lab, topo):
        self.lab = lab
        self.topo = topo
        self.loop = transport.Loop()
        self.sessions = {}

    def addr(self, dialer, target):
        ip = self.lab.dial_addr(dialer, target)
        assert ip is not None, "%s cannot dial %s" % (dialer, target)
        return "%s:%d" % (ip, PORT)

    def path(self, device, topo=None):
        """Addresses along the controller's control route to device (forwarding gateways)."""
        r = (topo or self.topo).control_route(device)
        assert r is not None, "the controller has no control route to %s" % device
        out = []
        for hop in r.hops:
            assert hop.dialer == hop.src, "%s must register (dial out): %s" % (hop.dst, hop)
            out.append(self.addr(hop.src if hop.src != "controller" else self.lab.controller_host,
                                 hop.dst))
        return out

    def session(self, addr):
        s = self.sessions.get(addr)
        if s is None or s[0].closed:
            box = Inbox()
            with in_ns(self.lab.ns(self.lab.controller_host)):
                conn = transport.dial(self.loop, addr, box)
            conn.send({"hello": {}})
            s = self.sessions[addr] = (box, conn)
        return s

    def replies(self, path, key):
        box = self.session(path[0])[0]
        out = []
        for m in box.messages:
            inner = unwrap(m, path[1:])
            if type(inner) is dict and key in inner:
                out.append(inner[key])
        return out

    def request(self, path, msg, key, timeout=10.0):
        before = len(self.replies(path, key))
        errors = len(self.replies(path, "error"))
        for hop in reversed(path[1:]):
            msg = {"forward": {"to": hop, "message": msg, "timeout": 3000}}
        box, conn = self.session(path[0])
        conn.send(msg)

        def done():
            return len(self.replies(path, key)) > before or (
                key != "error" and len(self.replies(path, "error")) > errors) or box.closed
        assert self.loop.run_until(done, int(timeout * 1000)), \
            "no %r from %s within %gs: %r" % (key, path, timeout, box.messages[-5:])
        got = self.replies(path, key)
        assert len(got) > before, "asked %s for %r, got %r (closed: %s)" % (
            path, key, box.messages[-3:], box.closed)
        return got[-1]

    def deploy(self, path, asg):
        return self.request(path, {"deploy": {"assignment": asg}}, "deployed")

    def wait(self, pred, timeout, what):
        assert self.loop.run_until(pred, int(timeout * 1000)), what()

    def close(self):
        for box, conn in self.sessions.values():
            conn.close()


def start_devices(lab, specs):
    """specs: {host: (interp, sensors)}; starts each and waits for its 'listening' line."""
    procs = {}
    env = dict(os.environ, PYTHONPATH=ROOT, PYTHONUNBUFFERED="1")
    for host, (interp, sens) in specs.items():
        args = ["--host", "0.0.0.0", "--port", PORT, "--name", host, "--sensors", sens]
        if interp == "micropython":
            argv = [need_micropython(), "-m", "sensormesh.device"] + args
        else:
            argv = [sys.executable, "-m", "sensormesh.cli", "worker"] + args
        procs[host] = lab.run(host, argv, cwd=ROOT, env=env)
    for host, p in procs.items():
        lab.wait_line(p, "listening on", timeout=30)
    return procs


def inventory(lab, hosts):
    return {h: {"addresses": {d: "%s:%d" % (ip, PORT) for d, ip in lab.addrs(h).items()}}
            for h in hosts}


def assignments(frag, epoch, source_params, pipeline="p"):
    """{device: assignment} for source on frag's first device -> relays -> callback sink."""
    src_dev, dst_dev = frag.route.src, frag.route.dst
    out = {}
    for dev, steps in frag.steps.items():
        steps = [dict(s) for s in steps]
        if dev == src_dev:
            steps.insert(0, {"id": "s", "type": "source", "params": source_params})
            for s in steps:
                if s["id"] == frag.out_id:
                    s["inputs"] = ["s"]
        if dev == dst_dev:
            steps.append({"id": "k", "type": "callback", "params": {"name": "out"},
                          "inputs": [frag.in_id]})
        out[dev] = {"pipeline": pipeline, "epoch": epoch, "steps": steps}
    return out


def delivered(ctl, path):
    vals = []
    for d in ctl.replies(path, "deliver"):
        vals += d["values"]
    return vals


def deploy_and_start(ctl, asgs, order):
    for dev in order:
        ctl.deploy(ctl.path(dev), asgs[dev])
    for dev in order:
        ctl.request(ctl.path(dev), {"start": {}}, "started")


@pytest.mark.netns
def test_source_and_sink_in_two_domains_through_a_gateway(make_lab):
    """(a) the relay on the gateway carries every value once, in order; (c) the controller
    reaches the MicroPython field device only through the gateway (forwarded control)."""
    lab = make_lab(ONE_GW, blocked="reject")
    topo = Topology.from_dict(ONE_GW, ["esp-1", "gw-1", "pc"])
    start_devices(lab, {"esp-1": ("micropython", "counter@0"), "gw-1": ("cpython", "counter@0"),
                        "pc": ("cpython", "counter@0")})
    ctl = Controller(lab, topo)
    try:
        # (c) no direct way in: the lab refuses it, the control route goes through gw-1
        assert lab.dial_addr("controller", "esp-1") is None
        assert lab.probe("controller", lab.addr("esp-1"), PORT)["result"] != "ok"
        esp = ctl.path("esp-1")
        assert len(esp) == 2 and esp[0] == ctl.addr("controller", "gw-1")
        info = ctl.request(esp, {"info": {}}, "info")
        assert info["name"] == "esp-1" and info["implementation"] == "micropython"
        # an address the gateway cannot reach is reported as unreachable, named
        err = ctl.request([esp[0]], {"forward": {"to": "198.18.1.1:1", "message": {"ping": 1},
                                                 "timeout": 3000}}, "error")
        assert err["code"] == "unreachable" and err["to"] == "198.18.1.1:1"

        n = 3000
        frag = edge_fragments("e1", "esp-1", "pc", topo, inventory(lab, ["esp-1", "gw-1", "pc"]),
                              time_frame=10)
        assert frag.relays == ("gw-1",)
        asgs = assignments(frag, 1, {"sensor": "counter", "count": n})
        deploy_and_start(ctl, asgs, ["pc", "gw-1", "esp-1"])
        pc = ctl.path("pc")
        ctl.wait(lambda: len(delivered(ctl, pc)) >= n, 60,
                 lambda: "pc got %d of %d" % (len(delivered(ctl, pc)), n))
        got = delivered(ctl, pc)
        assert got == list(range(n)), "values lost, repeated or out of order"
        st = ctl.request(esp, {"status": {}}, "status")["assignment"]["steps"]
        assert st["s"]["out"] == n and st[frag.out_id]["out"] == n
        assert st[frag.out_id]["dropped"] == 0 and st[frag.out_id]["pending"] == 0
        relay = ctl.request(ctl.path("gw-1"), {"status": {}}, "status")["assignment"]["steps"]
        assert relay["out:e1@2"]["out"] == n and relay["out:e1@2"]["dropped"] == 0
    finally:
        ctl.close()


@pytest.mark.netns
def test_one_way_link_data_flows_against_the_dial_direction(make_lab):
    """(b) srv in the cloud cannot dial pc; pc's pipe_in dials srv and pulls srv's data."""
    lab = make_lab(ONE_WAY, blocked="reject")
    topo = Topology.from_dict(ONE_WAY, ["pc", "srv"])
    start_devices(lab, {"srv": ("micropython", "counter@0"), "pc": ("cpython", "counter@0")})
    ctl = Controller(lab, topo)
    try:
        assert lab.probe("srv", lab.addr("pc"), PORT)["result"] != "ok"
        n = 2000
        frag = edge_fragments("up", "srv", "pc", topo, inventory(lab, ["pc", "srv"]), time_frame=5)
        hop = frag.route.hops[0]
        assert hop.dialer == "pc" and hop.against_dial
        asgs = assignments(frag, 1, {"sensor": "counter", "count": n})
        pin = [s for s in asgs["pc"]["steps"] if s["id"] == frag.in_id][0]
        assert pin["params"]["from"] == "%s:%d" % (lab.addr("srv"), PORT)
        deploy_and_start(ctl, asgs, ["srv", "pc"])
        pc = ctl.path("pc")
        ctl.wait(lambda: len(delivered(ctl, pc)) >= n, 60,
                 lambda: "pc got %d of %d" % (len(delivered(ctl, pc)), n))
        got = delivered(ctl, pc)
        assert got == list(range(n))
        st = ctl.request(ctl.path("srv"), {"status": {}}, "status")["assignment"]["steps"]
        assert st[frag.out_id]["out"] == n and st[frag.out_id]["connects"] == 1
    finally:
        ctl.close()


@pytest.mark.netns
def test_gateway_killed_mid_stream_rerouted_through_the_other_and_loss_reported(make_lab):
    """(d) the relay's gateway dies; the controller asks affected_by for the new route,
    redeploys through the second gateway; the stream resumes where the source left off and
    the values lost in between equal what the pipe stats report."""
    lab = make_lab(TWO_GW, blocked="reject")
    hosts = ["esp-1", "gw-1", "gw-2", "pc"]
    topo = Topology.from_dict(TWO_GW, hosts)
    inv = inventory(lab, hosts)
    start_devices(lab, {"esp-1": ("micropython", "counter@0"), "gw-1": ("cpython", "counter@0"),
                        "gw-2": ("cpython", "counter@0"), "pc": ("cpython", "counter@0")})
    ctl = Controller(lab, topo)
    try:
        n = 2000
        frag = edge_fragments("e1", "esp-1", "pc", topo, inv, time_frame=10)
        used = frag.relays[0]
        deploy_and_start(ctl, assignments(frag, 1, {"sensor": "counter", "count": n, "rate": 400}),
                         ["pc", used, "esp-1"])
        pc = ctl.path("pc")
        ctl.wait(lambda: len(delivered(ctl, pc)) >= 200, 30,
                 lambda: "pc got %d values before the kill" % len(delivered(ctl, pc)))
        lab.kill(used)

        impact = topo.affected_by([used], edges=[("e1", "esp-1", "pc", frag.route)],
                                  steps={"s": "esp-1", "k": "pc"})
        edge = impact.edges[0]
        assert edge.status == "rerouted" and impact.unreachable == ()
        other = edge.new_route.relays[0]
        assert other != used and "alternative route" in edge.sentence
        degraded = topo.without([used])
        esp = ctl.path("esp-1", degraded)
        assert esp[0] == ctl.addr("controller", other)
        # stop the sender (through the surviving gateway): its pipe stats say what is lost
        old = ctl.request(esp, {"stop": {}}, "stopped")["steps"]
        sent_old, pout = old["s"]["out"], old[frag.out_id]
        assert sent_old < n, "the source finished before the gateway died; nothing was tested"
        pc_in = ctl.request(pc, {"status": {}}, "status")["assignment"]["steps"][frag.in_id]["in"]
        ctl.wait(lambda: len(delivered(ctl, pc)) >= pc_in, 10, lambda: "deliveries from pc lag")
        # lost: what the pipe_out took in and pc never got. The stats break it down into values
        # written into the dead gateway, values waiting for a connection (pending), values
        # dropped on overflow, and the unshipped rest of the current time frame.
        assert pout["in"] == sent_old
        into_dead = pout["out"] - pc_in
        unshipped = pout["in"] - pout["out"] - pout["pending"] - pout["dropped"]
        assert into_dead >= 0 and unshipped >= 0
        reported_loss = into_dead + pout["pending"] + pout["dropped"] + unshipped
        assert reported_loss == pout["in"] - pc_in

        # redeploy the affected pipes over the new route; the source carries on counting
        new = edge_fragments("e1", "esp-1", "pc", degraded, inv, time_frame=10,
                             route=edge.new_route)
        assert new.relays == (other,)
        asgs = assignments(new, 2, {"sensor": "counter", "count": n - sent_old, "rate": 400})
        for dev in ["pc", other, "esp-1"]:
            ctl.deploy(ctl.path(dev, degraded), asgs[dev])
        for dev in ["pc", other, "esp-1"]:
            ctl.request(ctl.path(dev, degraded), {"start": {}}, "started")
        expect = n - reported_loss
        ctl.wait(lambda: len(delivered(ctl, pc)) >= expect, 60,
                 lambda: "pc got %d of %d after the reroute" % (len(delivered(ctl, pc)), expect))
        got = delivered(ctl, pc)
        assert len(got) == expect and got == sorted(set(got)), "repeated or out of order"
        missing = sorted(set(range(n)) - set(got))
        assert len(missing) == reported_loss
        assert all(pc_in <= v < sent_old for v in missing)
        assert got[-1] == n - 1
        st = ctl.request(ctl.path("esp-1", degraded), {"status": {}}, "status")["assignment"]["steps"]
        assert st[new.out_id]["dropped"] == 0
    finally:
        ctl.close()


@pytest.mark.netns
def test_only_gateway_killed_reports_the_affected_area(make_lab):
    """(e) with no second gateway, the field is cut off: affected_by says so in words, and the
    controller indeed loses its forwarded control of the field device."""
    lab = make_lab(ONE_GW, blocked="reject")
    hosts = ["esp-1", "gw-1", "pc"]
    topo = Topology.from_dict(ONE_GW, hosts)
    start_devices(lab, {"esp-1": ("micropython", "counter@0"), "gw-1": ("cpython", "counter@0"),
                        "pc": ("cpython", "counter@0")})
    ctl = Controller(lab, topo)
    try:
        esp = ctl.path("esp-1")
        assert ctl.request(esp, {"ping": 7}, "pong") == 7
        lab.kill("gw-1")
        box = ctl.session(esp[0])[0]
        ctl.wait(lambda: box.closed is not None, 10, lambda: "the gateway's session did not close")
        impact = topo.affected_by(["gw-1"], edges=[("e1", "esp-1", "pc")], steps={"s": "esp-1", "k": "pc"})
        text = str(impact)
        assert impact.unreachable == ("esp-1",)
        assert "esp-1 in domain field is unreachable from the controller: its only gateway gw-1 is down" in text
        assert "no alternative route: esp-1 can no longer reach pc" in text
        assert "s (esp-1)" in text
        assert impact.edges[0].status == "cut"
        # and the network agrees: the gateway is gone, nobody else leads into the field
        again = ctl.session(esp[0])[0]
        ctl.wait(lambda: again.closed is not None, 10, lambda: "a dead gateway accepted a connection")
        assert topo.without(["gw-1"]).control_route("esp-1") is None
    finally:
        ctl.close()


# esp-9 sits behind a one-way link: it may dial into the office, nobody may dial it.
DIAL_OUT = {"controller": ["office"], "domains": {"office": ["gw-1", "pc"], "edge": ["esp-9"]},
            "links": [{"from": "edge", "to": "office"}]}


@pytest.mark.netns
def test_device_behind_one_way_link_registers_and_is_controlled(make_lab, tmp_path):
    """A MicroPython device that can only dial out registers with the gateway (config
    `register`), and the controller reaches it by forwarding to its name."""
    lab = make_lab(DIAL_OUT, blocked="reject")
    topo = Topology.from_dict(DIAL_OUT, ["gw-1", "pc", "esp-9"])
    assert "esp-9" in topo.registrations()   # it must dial out to be controlled
    procs = start_devices(lab, {"gw-1": ("cpython", "counter@0")})
    cfg = tmp_path / "esp-9.json"
    cfg.write_text('{"register": "%s:%d"}' % (lab.addr("gw-1"), PORT))
    env = dict(os.environ, PYTHONPATH=ROOT)
    p = lab.run("esp-9", [need_micropython(), "-m", "sensormesh.device", "--port", PORT, "--name",
                          "esp-9", "--sensors", "counter@0", "--config", str(cfg)], cwd=ROOT, env=env)
    lab.wait_line(p, "listening on", timeout=30)
    lab.wait_line(procs["gw-1"], "device esp-9 registered", timeout=30)
    assert lab.probe("gw-1", lab.addr("esp-9"), PORT)["result"] != "ok"
    ctl = Controller(lab, topo)
    try:
        path = [ctl.addr("controller", "gw-1"), "esp-9"]
        st = ctl.request(path, {"status": {}}, "status")
        assert st["name"] == "esp-9"
        assert ctl.request(path, {"ping": 3}, "pong") == 3
        info = ctl.request(path, {"info": {}}, "info")
        assert info["implementation"] == "micropython"
    finally:
        ctl.close()
