"""Local devices that must dial out for control: where `sensormesh up` tells them to register.

A device the controller's control route reaches only against a one-way link (the controller, or
the gateway before it, cannot dial it) keeps a control connection open to that upstream itself
(`register: "host:port"` in its configuration; docs/topology.md, control routes). For the devices
`up` starts, this module picks the addresses: the controller's listener, and each gateway's
address in the network the device dials it through (its Unix socket on one machine, its address
in the emulated network otherwise).
"""
from __future__ import annotations

import socket

from sensormesh.controller.topology import CONTROLLER


def _network_key(via):
    """The network a hop's `via` names ("domain field" -> "field", "link a->b" -> "a->b")."""
    return via.split(" ", 1)[1] if " " in via else via


def plan(model, emulation=None):
    """(listener, {device: (upstream, its address)}) for model's local devices that must
    register (upstream: "controller" or a gateway's name). listener: a listening socket for the
    controller to take registrations on (Supervisor(listen=...)), bound now, before the devices
    start, so their first dial finds it; None when no local device registers with the
    controller itself. emulation: the run's netlab Emulation, started, or None on one machine."""
    topo = model.topology
    if topo is None:
        return None, {}
    sock, dial_controller, regs = None, None, {}
    for route in topo.control_routes().values():
        for hop in route.hops:
            dev = model.devices.get(hop.dst)
            if hop.dialer != hop.dst or dev is None or not dev.local:
                continue
            if hop.src == CONTROLLER:
                if sock is None:
                    sock, dial_controller = _controller_listener(emulation)
                regs[hop.dst] = (CONTROLLER, dial_controller(hop.via))
            else:
                regs[hop.dst] = (hop.src, _gateway_address(model, emulation, hop.src, hop.via))
    return sock, regs


def _bind(host, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))
        s.listen(128)
    except OSError:
        s.close()
        raise
    return s


def _controller_listener(emulation):
    """(listening socket, fn(via) -> the address a device dials the controller at)."""
    if emulation is not None and emulation.mode == "namespaces":
        from sensormesh.netlab.emulation import DEVICE_PORT
        lab = emulation.lab
        with emulation.controller_context():       # the socket belongs to the controller's namespace
            sock = _bind("0.0.0.0", DEVICE_PORT)

        def dial(via):
            key = _network_key(via)
            dom = key.split("->", 1)[1] if "->" in key else key     # a link's addresses: in its `to`
            return "%s:%d" % (lab.addr(lab.controller_host, dom), DEVICE_PORT)
        return sock, dial
    sock = _bind("127.0.0.1", 0)
    addr = "127.0.0.1:%d" % sock.getsockname()[1]
    return sock, lambda via: addr


def _gateway_address(model, emulation, gateway, via):
    if emulation is not None:
        addrs = (emulation.plan.get(gateway) or {}).get("addresses") or {}
        addr = addrs.get(_network_key(via))
        if addr is None:
            raise ValueError("%s has no address in %s of the emulated network" % (gateway, via))
        return addr
    g = model.devices[gateway]
    if g.local:
        return "unix:" + g.unix_path
    return g.address
