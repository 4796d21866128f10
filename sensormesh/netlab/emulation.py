"""An emulated network for a pipeline's local devices: `sensormesh up FILE --network SPEC`.

The pipeline file's `network:` section (domains, gateways, one-way links; one domain `default`
without it) is laid out for real, and every connection that crosses an emulated domain or link
goes through a shaping relay (shaping.py) that adds the conditions given with `--network`.

Addresses are the whole trick. Every local device listens on one TCP port of its own. For each
network it can be dialed in (each of its domains, and each link into one of them) it gets an
address; where that network has conditions the address is a relay's, which forwards to the
device's port. The routing inventory (`model.address_plan`) hands these addresses to pipes,
relays on gateways and the controller's control sessions alike, so the relay sits on exactly
the connections that cross the network: data pipes, gateway hops and control. A hop over a
link a->b is shaped by domain a, the link and domain b together (spec.hop_condition).

Two layouts, same addresses logic:

  loopback    (no root needed) devices listen on 127.0.0.1 ports, one relay process holds every
              relay on 127.0.0.1; the domains and links are a plan the routing follows, not a
              wall (nothing stops a process dialing another port).
  namespaces  (root) namespaces.NetLab builds a namespace per device (and the controller),
              a bridge per domain and nftables for one-way links, addresses in 198.18.0.0/15;
              a relay process runs in each namespace whose device has a shaped network and
              listens on the device's own address there. The controller's sessions are opened
              from its namespace (`controller_context`).

Everything started or created is recorded first (state.py), removed by close(), and removed
by the next run in the same directory when this one crashed. CPython only.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import sys
import tempfile
import zlib

from sensormesh.controller.local import free_port
from sensormesh.controller.topology import Topology
from sensormesh.netlab import shaping
from sensormesh.netlab import spec as specs_mod
from sensormesh.netlab import state as state_mod

MODES = ("auto", "loopback", "namespaces")
DEVICE_PORT = 7000          # in namespaces every device has its own addresses: one fixed port
RELAY_PORT = 7100           # first relay port in a device's namespace
_CLONE_NEWNET = 0x40000000


class EmulationError(RuntimeError):
    """The emulated network cannot be built or used; the message says why."""


def check_mode(model, mode):
    """Raise EmulationError when `mode` "namespaces" cannot hold model's network here: a device
    that is not local (a namespace holds only a device that runs here), or a machine that
    cannot build namespaces (not root, tools missing). Other modes always can."""
    if mode != "namespaces":
        return
    remote = sorted(d.name for d in model.devices.values() if not d.local) if model is not None else []
    if remote:
        raise EmulationError("in network namespaces every device runs here, so every device of the "
                             "file must be local: true (not: %s); --network-mode loopback keeps the "
                             "others at their addresses, unshaped" % ", ".join(remote))
    from sensormesh.netlab import namespaces
    try:
        namespaces.preflight()
    except namespaces.NetLabUnavailable as e:
        raise EmulationError("cannot build network namespaces: %s (--network-mode loopback needs "
                             "no root)" % e) from None


def network_keys(topology, device):
    """The networks `device` can be dialed in: ("domain D", key D) for its domains and
    ("link A->B", key "A->B") for links into them, as (via, key, domain of the address)."""
    mine = topology.domains_of(device)
    out = [("domain " + d, d, d) for d in sorted(mine)]
    for link in topology.links:
        if link.dst in mine:
            key = "%s->%s" % (link.src, link.dst)
            out.append(("link " + key, key, link.dst))
    return out


class Emulation:
    """Lays out model's network for its local devices, with `--network` conditions.

    specs: `--network` strings (or spec.NetworkSpec). mode: "auto" (namespaces when root and
    the tools are there, else loopback, saying why), "loopback" or "namespaces" (fail without).
    on_event(text) gets notes. Use as a context manager or start()/close()."""

    def __init__(self, model, specs, mode="auto", workdir=None, on_event=None, python=None,
                 seed=None):
        if mode not in MODES:
            raise EmulationError("network mode must be one of %s, not %r" % (", ".join(MODES), mode))
        self.model = model
        self.topology = model.topology if model.topology is not None else \
            Topology.single_domain(list(model.devices))
        try:
            self.conditions = specs_mod.resolve(list(specs), self.topology)
        except specs_mod.NetworkSpecError as e:
            raise EmulationError(str(e)) from None
        self.requested = mode
        self.mode = None
        self.workdir = workdir or os.getcwd()
        self.on_event = on_event or (lambda text: None)
        self.python = python or sys.executable
        self.seed = seed
        self.lab = None
        self.state = None
        self.relays = []             # shaping.RelayProcess
        self.plan = {}               # device -> {"addresses": {key: "host:port"}}
        self.listen = {}             # device -> (host, port) it listens on
        self.shaped = []             # (device, key, address, Condition) of every relay
        self._tmp = None
        self._started = False

    # --- life cycle -----------------------------------------------------------------------

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()
        return False

    def local_devices(self):
        return [d for d in self.model.devices.values() if d.local]

    def _choose_mode(self):
        if self.requested == "loopback":
            return "loopback"
        remote = sorted(d.name for d in self.model.devices.values() if not d.local)
        if remote and self.requested == "auto":
            self.on_event("%s not local: true, so the network is emulated on loopback (in "
                          "namespaces every device must run here)" % ", ".join(remote))
            return "loopback"
        from sensormesh.netlab import namespaces
        try:
            namespaces.preflight()
            return "namespaces"
        except namespaces.NetLabUnavailable as e:
            if self.requested == "namespaces":
                raise EmulationError("cannot build network namespaces: %s" % e) from None
            self.on_event("%s; emulating the network on loopback instead (same conditions, "
                          "domains and links are followed but not enforced)" % e)
            return "loopback"

    def start(self):
        """Clean what crashed runs left here, build the network, start the relays."""
        removed = state_mod.cleanup_leftovers(self.workdir)
        if removed:
            self.on_event("removed what an earlier run left behind: %s" % ", ".join(removed))
        self.mode = self._choose_mode()
        self.state = state_mod.RunState(self.workdir)
        self.state.save()
        self._started = True
        try:
            self._tmp = tempfile.mkdtemp(prefix="sensormesh-net-")
            self.state.add_file(self._tmp)
            if self.mode == "namespaces":
                self._build_namespaces()
            else:
                self._build_loopback()
            self.model.address_plan = self.plan
        except BaseException as e:
            self.close()
            from sensormesh.netlab.namespaces import NetLabError
            if isinstance(e, (NetLabError, OSError, shaping.ShapingError)):
                raise EmulationError("cannot build the emulated network: %s" % e) from None
            raise
        return self

    def close(self):
        """Stop every relay, delete every namespace (and what runs there), forget the run."""
        if not self._started:
            return
        self._started = False
        if getattr(self.model, "address_plan", None) is self.plan:
            self.model.address_plan = None
        for r in self.relays:
            r.stop()
        self.relays = []
        errors = []
        if self.lab is not None:
            try:
                self.lab.close()
            except Exception as e:      # report, but still forget the rest
                errors.append(str(e))
            self.lab = None
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
        if errors:
            raise EmulationError("; ".join(errors))
        self.state.close()

    # --- layout ---------------------------------------------------------------------------

    def _relay_entry(self, dev, key, via, listen, target):
        cond = specs_mod.hop_condition(via, self.conditions)
        if cond is None or not cond.shaped:
            return None
        seed = None if self.seed is None else zlib.crc32(("%s|%s|%s" % (self.seed, dev, key)).encode())
        return {"name": "%s@%s" % (dev, key), "listen": listen, "target": target,
                "forward": cond.to_dict(), "backward": cond.to_dict(), "seed": seed,
                "condition": cond}

    def _start_relays(self, entries, what, wrap=()):
        path = os.path.join(self._tmp, "relays-%d.json" % len(self.relays))
        r = shaping.spawn([{k: v for k, v in e.items() if k != "condition"} for e in entries],
                          path, what, python=self.python, wrap=wrap)
        self.relays.append(r)
        self.state.add_process(r.proc.pid, "shaping relay " + what)
        r.wait_ready()
        return r.addresses

    def _build_loopback(self):
        entries, direct = [], {}
        for dev in self.local_devices():
            port = free_port()
            self.listen[dev.name] = ("127.0.0.1", port)
            real = "127.0.0.1:%d" % port
            self.plan[dev.name] = {"addresses": {}}
            for via, key, _dom in network_keys(self.topology, dev.name):
                e = self._relay_entry(dev.name, key, via, "127.0.0.1:0", real)
                if e is None:
                    direct[(dev.name, key)] = real
                else:
                    entries.append(e)
        got = self._start_relays(entries, "on loopback") if entries else {}
        for e in entries:
            dev, key = e["name"].split("@", 1)
            self.shaped.append((dev, key, got[e["name"]], e["condition"]))
        for dev in self.local_devices():
            addrs = self.plan[dev.name]["addresses"]
            for via, key, _dom in network_keys(self.topology, dev.name):
                addrs[key] = direct.get((dev.name, key)) or got["%s@%s" % (dev.name, key)]
            # on its own host (the controller on the device's host): no network in between
            self.plan[dev.name]["address"] = "127.0.0.1:%d" % self.listen[dev.name][1]

    def _build_namespaces(self):
        from sensormesh.netlab import namespaces
        remote = sorted(d.name for d in self.model.devices.values() if not d.local)
        if remote:
            raise EmulationError("in network namespaces every device runs here, so every device "
                                 "of the file must be local: true (not: %s); --network-mode "
                                 "loopback keeps the others at their addresses, unshaped"
                                 % ", ".join(remote))
        self.lab = namespaces.NetLab(self.topology, on_create=self.state.add_namespace)
        self.lab.start()
        if self.lab.stale_removed:    # of dead runs whose record is elsewhere (another directory)
            self.on_event("removed what an earlier run left behind: %s" % ", ".join(
                "namespace " + n for n in self.lab.stale_removed))
        for dev in self.local_devices():
            if dev.name not in self.lab.host_domains:
                raise EmulationError("device %s is in no domain of the network" % dev.name)
            self.listen[dev.name] = ("0.0.0.0", DEVICE_PORT)
            addrs = {}
            entries = []
            for i, (via, key, dom) in enumerate(network_keys(self.topology, dev.name)):
                ip = self.lab.addr(dev.name, dom)
                e = self._relay_entry(dev.name, key, via, "%s:%d" % (ip, RELAY_PORT + i),
                                      "127.0.0.1:%d" % DEVICE_PORT)
                if e is None:
                    addrs[key] = "%s:%d" % (ip, DEVICE_PORT)
                else:
                    entries.append(e)
                    addrs[key] = e["listen"]
                    self.shaped.append((dev.name, key, e["listen"], e["condition"]))
            if entries:
                self._start_relays(entries, "in %s's namespace" % dev.name,
                                   wrap=["ip", "netns", "exec", self.lab.ns(dev.name)])
            self.plan[dev.name] = {"addresses": addrs, "address": "127.0.0.1:%d" % DEVICE_PORT}

    # --- what local.py and runner.py use --------------------------------------------------

    def listen_address(self, dev):
        """(host, port) the local device must listen on."""
        return self.listen[dev.name]

    def unix_path(self, dev):
        """The device's Unix socket: private to this run (nothing dials it in an emulated
        network; two runs of one file must not collide on the file's default path)."""
        return os.path.join(self._tmp, dev.name + ".sock")

    def command(self, dev, argv):
        """The argv that starts the local device inside its part of the network."""
        if self.mode == "namespaces":
            return ["ip", "netns", "exec", self.lab.ns(dev.name)] + list(argv)
        return list(argv)

    def started(self, dev, pid):
        """Record a device process (removed after a crash like everything else)."""
        self.state.add_process(pid, "device " + dev.name)

    @contextlib.contextmanager
    def controller_context(self):
        """Sockets the calling thread opens inside this block belong to the controller's place
        in the network (its namespace; loopback: nothing changes)."""
        if self.mode != "namespaces":
            yield
            return
        host = self.lab.controller_host
        libc = ctypes.CDLL(None, use_errno=True)
        here = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        there = os.open("/var/run/netns/" + self.lab.ns(host), os.O_RDONLY)
        try:
            if libc.setns(there, _CLONE_NEWNET) != 0:
                raise EmulationError("cannot enter the controller's namespace: %s"
                                     % os.strerror(ctypes.get_errno()))
            try:
                yield
            finally:
                if libc.setns(here, _CLONE_NEWNET) != 0:
                    raise EmulationError("cannot return from the controller's namespace: %s"
                                         % os.strerror(ctypes.get_errno()))
        finally:
            os.close(there)
            os.close(here)

    def describe(self):
        """Lines for the user: the layout and every shaped network."""
        out = ["emulated network (%s): %s" % (self.mode, "; ".join(
            "%s %s" % (specs_mod.target_label(t), c) for t, c in self.conditions.items())
            or "no conditions")]
        for dev, key, addr, cond in self.shaped:
            out.append("  %s in %s through a shaping relay at %s (%s)" % (dev, key, addr, cond))
        return out
