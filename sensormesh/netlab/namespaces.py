"""Linux network namespaces laid out from a pipeline file's `network:` section.

    with NetLab(topology_or_network_dict) as lab:
        proc = lab.run("esp-1", [sys.executable, "-m", "sensormesh.device", ...])
        lab.addr("esp-1"), lab.dial_addr("pc", "srv"), lab.kill("gw-1")

`sensormesh up --network` (emulation.py) runs local devices in these namespaces; the
integration tests (tests/netlab.py adds probes and echo servers) drive real devices in them.

What gets built (all inside namespaces; the root namespace's links and routes are untouched):

  * one namespace per host: every device, plus "controller" when the controller sits in
    domains rather than on a device's host;
  * one namespace "<prefix>-sw" holding one Linux bridge per domain (a switch);
  * a veth per (host, domain) from the host into its domain's bridge; the host side is named
    after the domain where that makes a valid interface name. Address 198.18.<d>.<h>/24
    (d = domain number from 1, h = host number from 1, so a host ends in the same number
    everywhere); only 198.18.0.0/15 is used;
  * hosts never forward IP (ip_forward=0): gateways relay at the application layer only;
  * if there are links, one router namespace "<prefix>-rt" with an interface (.254) on each
    linked domain, ip_forward=1 and an nftables forward chain: policy drop, established and
    related accepted, new connections accepted only from a link's `from` domain into its `to`
    domain. Hosts get routes to linked subnets through it (the replies need them too).

Every name starts with "smlab<pid>r<n>-" (the creating process id and a run number), so runs
do not collide and leftovers of dead runs are recognised and removed at the next start
(`cleanup_stale`). close() ends the processes started in the lab (by PID), deletes every
namespace (which removes its veths, bridges and nft tables with it) and checks that none is
left. Every wait is bounded. Needs root, iproute2 (`ip`) and nftables (`nft`); `preflight()`
says why when they are missing. CPython only.
"""

from __future__ import annotations

import ipaddress
import itertools
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from typing import Mapping

from sensormesh.controller.topology import CONTROLLER, Topology

FAMILY = "smlab"                      # every namespace this module makes starts with this
LAB_NET = ipaddress.ip_network("198.18.0.0/15")   # RFC 2544 benchmarking range, never routed
MAX_HOSTS = 253                       # host numbers 1..253; .254 is the router
MAX_DOMAINS = 511                     # /24s in the /15, minus 198.18.0.0/24
NFT_TABLE = "sensormesh_lab"
CMD_TIMEOUT = 60.0                    # one `ip`/`nft` command: milliseconds, but seconds while the kernel
                                      # is still removing many namespaces (their cleanup holds a lock)
KILL_TIMEOUT = 5.0                    # SIGTERM, then this long, then SIGKILL
_STALE = re.compile(r"^%s(\d+)r(\d+)-" % FAMILY)
_IFNAME = re.compile(r"^[A-Za-z0-9_-]{1,15}$")
_HOSTNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_runs = itertools.count()


class NetLabUnavailable(RuntimeError):
    """This machine cannot build namespaces (not root, tools missing, not permitted)."""


class NetLabError(RuntimeError):
    """A lab command failed or a bounded wait ran out."""


# ---------------------------------------------------------------------------------------------
# Commands and namespaces


def _cmd(argv, input=None, timeout=CMD_TIMEOUT, check=True):
    try:
        res = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise NetLabError("%s: no answer within %gs" % (" ".join(argv), timeout)) from None
    if check and res.returncode != 0:
        raise NetLabError("%s: exit %d: %s" % (" ".join(argv), res.returncode,
                                               (res.stderr or res.stdout).strip()))
    return res


def preflight():
    """Raise NetLabUnavailable saying why namespaces cannot be built here."""
    if sys.platform != "linux":
        raise NetLabUnavailable("the network lab needs Linux network namespaces (this is %s)"
                                % sys.platform)
    if os.geteuid() != 0:
        raise NetLabUnavailable("the network lab needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN); "
                                "run as root")
    missing = [(tool, pkg) for tool, pkg in (("ip", "iproute2"), ("nft", "nftables"))
               if shutil.which(tool) is None]
    if missing:
        raise NetLabUnavailable("the network lab needs %s: apt-get install -y %s" % (
            ", ".join("`%s`" % t for t, _ in missing), " ".join(p for _, p in missing)))
    probe = "%s%dr999999-probe" % (FAMILY, os.getpid())   # matches _STALE if left behind
    res = _cmd(["ip", "netns", "add", probe], check=False)
    if res.returncode != 0:
        raise NetLabUnavailable("cannot create a network namespace (`ip netns add`): %s"
                                % res.stderr.strip())
    try:
        res = _cmd(["ip", "netns", "exec", probe, "nft", "list", "tables"], check=False)
        if res.returncode != 0:
            raise NetLabUnavailable("nftables does not work in a namespace: %s"
                                    % res.stderr.strip())
    finally:
        _cmd(["ip", "netns", "del", probe], check=False)


def namespaces():
    """Names of all named network namespaces (`ip netns list`)."""
    out = _cmd(["ip", "netns", "list"]).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _wait_gone(pids, timeout):
    deadline = time.monotonic() + timeout
    while pids and time.monotonic() < deadline:
        pids = [p for p in pids if _pid_alive(p) and not _is_zombie(p)]
        if pids:
            time.sleep(0.02)
    return pids


def _is_zombie(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rpartition(")")[2].split()[0] == "Z"
    except OSError:
        return True


def destroy_namespace(name):
    """End what still runs in one of our namespaces (only lab processes run there), delete it."""
    res = _cmd(["ip", "netns", "pids", name], check=False)
    pids = [int(p) for p in res.stdout.split() if p.isdigit()]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        pids = _wait_gone(pids, KILL_TIMEOUT)
        if not pids:
            break
    _cmd(["ip", "netns", "del", name], check=False)


def cleanup_stale():
    """Delete namespaces left by lab runs whose test process is gone. Returns their names."""
    removed = []
    for name in namespaces():
        m = _STALE.match(name)
        if m and not _pid_alive(int(m.group(1))):
            destroy_namespace(name)
            removed.append(name)
    return removed


# ---------------------------------------------------------------------------------------------
# The lab


def _as_topology(spec):
    if isinstance(spec, Topology):
        return spec
    if not isinstance(spec, Mapping):
        raise TypeError("NetLab takes a Topology, a pipeline-file dict with network: or a "
                        "network: section")
    if "network" in spec:
        devices = spec.get("devices")
        if isinstance(devices, Mapping):
            names = list(devices)
        elif isinstance(devices, list):
            names = [d["name"] if isinstance(d, Mapping) else d for d in devices]
        else:
            names = None
        return Topology.from_dict(spec["network"], names)
    return Topology.from_dict(spec, None)


class NetLab:
    """Builds `topology` in namespaces on enter, removes everything on exit (even on errors).

    blocked: what the router does to a new connection against a link's direction: "drop"
    (the default, like a real firewall: the dialer times out) or "reject" (TCP reset, fast)."""

    def __init__(self, topology, blocked="drop", on_create=None):
        if blocked not in ("drop", "reject"):
            raise ValueError("blocked must be 'drop' or 'reject'")
        self.topology = _as_topology(topology)
        self.blocked = blocked
        self.on_create = on_create or (lambda name: None)   # told each namespace before it exists
        self.prefix = "%s%dr%d" % (FAMILY, os.getpid(), next(_runs))
        topo = self.topology
        self.domains = list(topo.domains)
        if len(self.domains) > MAX_DOMAINS:
            raise NetLabError("at most %d domains" % MAX_DOMAINS)
        # host -> domains it is wired into
        self.host_domains = {d: sorted(topo.domains_of(d), key=self.domains.index)
                             for d in topo.devices}
        self.controller_host = topo.controller_host
        if self.controller_host is None and topo.controller_domains:
            self.controller_host = CONTROLLER
            self.host_domains[CONTROLLER] = sorted(topo.controller_domains,
                                                   key=self.domains.index)
        if len(self.host_domains) > MAX_HOSTS:
            raise NetLabError("at most %d hosts" % MAX_HOSTS)
        for h in self.host_domains:
            if not _HOSTNAME.match(h):
                raise NetLabError("host name %r cannot be a namespace name" % h)
        self.hosts = list(self.host_domains)
        self._ifnames = {}
        for i, d in enumerate(self.domains):
            ok = _IFNAME.match(d) and d not in ("lo", "all", "default")
            self._ifnames[d] = d if ok else "d%d" % (i + 1)
        self._procs = {h: [] for h in self.hosts}
        self._outbuf = {}
        self._started = False
        self.stale_removed = []

    # --- names and addresses ------------------------------------------------------------------

    def ns(self, host):
        """The namespace name of a host ("controller" is the controller's host)."""
        if host not in self.host_domains:
            raise KeyError("no host %r in this lab (hosts: %s)" % (host, ", ".join(self.hosts)))
        return "%s-h-%s" % (self.prefix, host)

    @property
    def switch_ns(self):
        return self.prefix + "-sw"

    @property
    def router_ns(self):
        return self.prefix + "-rt"

    def subnet(self, domain):
        i = self.domains.index(domain) + 1
        return ipaddress.ip_network((int(LAB_NET.network_address) + 256 * i, 24))

    def _ip(self, domain, number):
        return str(self.subnet(domain).network_address + number)

    def ifname(self, domain):
        """Interface name of `domain` inside a host (or the router)."""
        return self._ifnames[domain]

    def addr(self, host, domain=None):
        """Address of `host` in `domain` (may be omitted when the host is in one domain)."""
        doms = self.host_domains.get(host)
        if doms is None:
            raise KeyError("no host %r in this lab" % (host,))
        if domain is None:
            if len(doms) != 1:
                raise ValueError("%s is in %s: say which domain" % (host, ", ".join(doms)))
            domain = doms[0]
        if domain not in doms:
            raise ValueError("%s is not in domain %s" % (host, domain))
        return self._ip(domain, self.hosts.index(host) + 1)

    def addrs(self, host):
        """{domain: address} of a host."""
        return {d: self.addr(host, d) for d in self.host_domains[host]}

    def dial_addr(self, dialer, target):
        """The address of `target` that `dialer` can open a connection to: in a shared domain,
        else behind a link from one of dialer's domains. None when it cannot dial target."""
        mine, theirs = self.host_domains[dialer], self.host_domains[target]
        for d in theirs:
            if d in mine:
                return self.addr(target, d)
        for link in self.topology.links:
            if link.src in mine and link.dst in theirs:
                return self.addr(target, link.dst)
        return None

    # --- life cycle ---------------------------------------------------------------------------

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def start(self):
        preflight()
        self.stale_removed = cleanup_stale()     # names, for the caller to say what it removed
        self._remove_own()
        self._started = True
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def own_namespaces(self):
        return [n for n in namespaces() if n.startswith(self.prefix + "-")]

    def _remove_own(self):
        for name in self.own_namespaces():
            destroy_namespace(name)

    def close(self):
        """Stop every process started here, delete every namespace; raise if one is left."""
        if not self._started:
            return
        for host in self.hosts:
            self.kill(host)
        left = []
        for attempt in range(3):
            self._remove_own()
            left = self.own_namespaces()
            if not left:
                break
        self._started = False
        if left:
            raise NetLabError("namespaces left behind: %s" % ", ".join(left))

    # --- building -----------------------------------------------------------------------------

    def _ipn(self, ns, *args):
        return _cmd(["ip", "-n", ns] + [str(a) for a in args])

    def _sysctl(self, ns, values):
        # /proc/sys/net shows the namespace of the process reading it.
        script = "; ".join("echo %s > /proc/sys/%s%s" % (v, k.replace(".", "/"),
                                                         " 2>/dev/null || true" if opt else "")
                           for k, v, opt in values)
        _cmd(["ip", "netns", "exec", ns, "sh", "-ec", script])

    def _new_ns(self, ns, forward):
        self.on_create(ns)
        _cmd(["ip", "netns", "add", ns])
        self._ipn(ns, "link", "set", "lo", "up")
        self._sysctl(ns, [
            ("net.ipv4.ip_forward", 1 if forward else 0, False),
            ("net.ipv4.conf.all.rp_filter", 0, False),
            ("net.ipv4.conf.default.rp_filter", 0, False),
            # No IPv6: no router solicitations or DAD chatter on the lab bridges.
            ("net.ipv6.conf.all.disable_ipv6", 1, True),
            ("net.ipv6.conf.default.disable_ipv6", 1, True),
        ])

    def _plug(self, ns, port, ifname, domain, number):
        """A veth from namespace `ns` (as `ifname`) into the bridge of `domain` (as `port`)."""
        sw = self.switch_ns
        self._ipn(sw, "link", "add", port, "type", "veth", "peer", "name", ifname, "netns", ns)
        self._ipn(sw, "link", "set", port, "master", "br%d" % (self.domains.index(domain) + 1),
                  "up")
        self._ipn(ns, "addr", "add", "%s/24" % self._ip(domain, number), "dev", ifname)
        self._ipn(ns, "link", "set", ifname, "up")

    def _build(self):
        sw = self.switch_ns
        self._new_ns(sw, forward=False)
        for i, _ in enumerate(self.domains):
            self._ipn(sw, "link", "add", "br%d" % (i + 1), "type", "bridge")
            self._ipn(sw, "link", "set", "br%d" % (i + 1), "up")
        for hi, host in enumerate(self.hosts):
            ns = self.ns(host)
            self._new_ns(ns, forward=False)
            for d in self.host_domains[host]:
                self._plug(ns, "h%dd%d" % (hi + 1, self.domains.index(d) + 1), self.ifname(d),
                           d, hi + 1)
        links = self.topology.links
        if not links:
            return
        rt = self.router_ns
        self._new_ns(rt, forward=True)
        linked = [d for d in self.domains if any(d in (l.src, l.dst) for l in links)]
        for d in linked:
            self._plug(rt, "r%d" % (self.domains.index(d) + 1), self.ifname(d), d, 254)
        rules = ["iifname %s oifname %s ct state new accept"
                 % (json.dumps(self.ifname(l.src)), json.dumps(self.ifname(l.dst)))
                 for l in links]
        if self.blocked == "reject":
            rules += ["meta l4proto tcp reject with tcp reset",
                      "reject with icmpx type admin-prohibited"]
        ruleset = ("table inet %s {\n chain forward {\n"
                   "  type filter hook forward priority filter; policy drop;\n"
                   "  ct state established,related accept\n"
                   "  ct state invalid drop\n  %s\n }\n}\n") % (NFT_TABLE, "\n  ".join(rules))
        _cmd(["ip", "netns", "exec", rt, "nft", "-f", "-"], input=ruleset)
        for host in self.hosts:
            self._route_links(host)

    def _route_links(self, host):
        """Routes from `host` to each linked subnet it is not on, through the router."""
        mine = self.host_domains[host]
        for target in self.domains:
            if target in mine:
                continue
            dial = [l.src for l in self.topology.links if l.dst == target and l.src in mine]
            answer = [l.dst for l in self.topology.links if l.src == target and l.dst in mine]
            # Prefer leaving through a domain the link lets us dial from; else one that can
            # at least carry replies to connections the other side opened.
            via = (dial or answer or [None])[0]
            if via is None:
                continue
            self._ipn(self.ns(host), "route", "add", str(self.subnet(target)), "via",
                      self._ip(via, 254), "dev", self.ifname(via))

    # --- processes ----------------------------------------------------------------------------

    def run(self, host, argv, **popen):
        """Start `argv` inside the host's namespace; returns the Popen (text mode; stdout piped
        with stderr merged into it, unless given). The lab ends it on kill(host) or close()."""
        if not self._started:
            raise NetLabError("the lab is not started")
        popen.setdefault("stdin", subprocess.DEVNULL)
        popen.setdefault("stdout", subprocess.PIPE)
        popen.setdefault("stderr", subprocess.STDOUT)
        popen.setdefault("text", True)
        proc = subprocess.Popen(["ip", "netns", "exec", self.ns(host)] + [str(a) for a in argv],
                                **popen)
        self._procs[host].append(proc)
        return proc

    def python(self, host, code, *args, **popen):
        """Run `python -u -c code args...` in the host's namespace."""
        return self.run(host, [sys.executable, "-u", "-c", code] + list(args), **popen)

    def exec(self, host, argv, timeout=CMD_TIMEOUT, check=True):
        """Run a command in the host's namespace to completion (bounded); CompletedProcess."""
        return _cmd(["ip", "netns", "exec", self.ns(host)] + [str(a) for a in argv],
                    timeout=timeout, check=check)

    def kill(self, host, timeout=KILL_TIMEOUT):
        """Stop every process started on `host` (SIGTERM, then SIGKILL), and anything they left
        running in its namespace."""
        for proc in self._procs.get(host, []):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout)
            for f in (proc.stdout, proc.stderr, proc.stdin):
                if f:
                    f.close()
        self._procs[host] = []
        if self._started and host in self.host_domains:
            res = _cmd(["ip", "netns", "pids", self.ns(host)], check=False)
            pids = [int(p) for p in res.stdout.split() if p.isdigit()]
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            _wait_gone(pids, timeout)

    def isolate(self, host):
        """Pull the host's cables: its interfaces go down (a gateway failure without killing
        the process)."""
        for d in self.host_domains[host]:
            self._ipn(self.ns(host), "link", "set", self.ifname(d), "down")

    def wait_line(self, proc, needle, timeout=10.0):
        """Read the process's stdout until a line containing `needle`; return that line.
        Raises NetLabError on timeout or end of output, with what was read. Reads the pipe's
        file descriptor directly (a buffered readline could hide lines from select)."""
        deadline = time.monotonic() + timeout
        buf = self._outbuf.setdefault(proc.pid, bytearray())
        seen = []
        fd = proc.stdout.fileno()
        for _ in range(100000):
            while b"\n" in buf:
                line, _, rest = bytes(buf).partition(b"\n")
                buf[:] = rest
                text = line.decode(errors="replace")
                seen.append(text)
                if needle in text:
                    return text
            left = deadline - time.monotonic()
            if left <= 0:
                break
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise NetLabError("output ended before a line with %r; got: %r"
                                      % (needle, seen + [buf.decode(errors="replace")]))
                buf += chunk
        raise NetLabError("no line with %r within %gs; got: %r" % (needle, timeout, seen))
