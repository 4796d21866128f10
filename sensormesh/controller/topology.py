"""The network as the controller knows it: domains, gateways, one-way links, routes.

A *domain* is a group of devices that can all open TCP connections to each other. A device
listed in several domains is a *gateway*. A *link* joins two domains in one direction: every
device of `from` may open connections to every device of `to`, never the reverse. The
controller itself sits in one or more domains (or on a device's host).

From this the controller computes who can dial whom (`can_dial`, `dialer`), the route data
takes between two devices (`route`, `link`: hops over established connections, each hop
dialed by whichever end can), the route control takes to every device (`control_routes`:
direct, forwarded through gateways, or the device registers by dialing out), and what a
failure cuts off (`without`, `affected_by`). Syntax and semantics: docs/topology.md.

Graph work is done by networkx. The graph holds one node per device, one for the controller,
and two per domain: `("out", D)` (members leave through it) and `("in", D)` (members are
entered through it). A hop is exactly one `out -> in` edge (a domain, or a link in either
direction, since data may flow against the dial direction), so links never chain without a
device in between and the graph grows with memberships, not with the square of a domain.
CPython only.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from typing import Mapping

import networkx as nx

from sensormesh.controller.names import NO_DOMAIN, SHOWN, Unnamed, domains_text, is_unnamed, name_list


def _suggest(word, options):
    """' (did you mean 'x'?)' for the option closest to a misspelt name, or ''."""
    if not isinstance(word, str) or not options:
        return ""
    close = difflib.get_close_matches(word, [str(o) for o in options], n=1)
    return " (did you mean %r?)" % close[0] if close else ""


# Node name of the controller in routes; no device may have this name.
CONTROLLER = "controller"
# The domain of a network without a `network:` section: everyone reaches everyone.
DEFAULT_DOMAIN = "default"
DEFAULT_COST = 1


# ---------------------------------------------------------------------------------------------
# Errors: one base class carrying the key path, one named subclass per kind of mistake.


def format_path(path):
    """("network", "domains", "field", "devices", 2) -> "network.domains.field.devices[2]"."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += "[%d]" % part
        else:
            out += ("." if out else "") + str(part)
    return out or "<top>"


class TopologyError(ValueError):
    """A mistake in the `network:` section. `path` is the key path of the offending value
    (strings for mapping keys, ints for list indexes) so a file loader can point at its line."""

    code = "topology"

    def __init__(self, path, message):
        self.path = tuple(path)
        self.message = message
        super().__init__("%s: %s" % (format_path(self.path), message))


class NetworkSyntaxError(TopologyError):
    """Wrong type or shape, a missing or an unknown key."""
    code = "syntax"


class UnknownDeviceError(TopologyError):
    code = "unknown-device"


class DeviceWithoutDomainError(TopologyError):
    code = "device-without-domain"


class DuplicateDomainError(TopologyError):
    code = "duplicate-domain"


class DuplicateDeviceError(TopologyError):
    code = "duplicate-device"


class DuplicateLinkError(TopologyError):
    code = "duplicate-link"


class UnknownDomainError(TopologyError):
    code = "unknown-domain"


class SelfLinkError(TopologyError):
    code = "self-link"


class BadCostError(TopologyError):
    code = "bad-cost"


class EmptyDomainError(TopologyError):
    code = "empty-domain"


class ControllerPlacementError(TopologyError):
    """`controller:` missing where it is needed, ambiguous, or naming several hosts."""
    code = "controller"


class ReservedNameError(TopologyError):
    code = "reserved-name"


class UnreachableDomainError(TopologyError):
    code = "unreachable-domain"


# ---------------------------------------------------------------------------------------------
# Value types


@dataclass(frozen=True)
class Domain:
    name: str
    devices: tuple
    cost: float = DEFAULT_COST


@dataclass(frozen=True)
class Link:
    """Devices in `src` may open connections to devices in `dst`; not the reverse."""
    src: str
    dst: str
    cost: float = DEFAULT_COST


@dataclass(frozen=True)
class Hop:
    """One step of a route. Data flows src -> dst; `dialer` (src or dst) opens the TCP
    connection, the other end listens. `via` says what allows it: "domain field",
    "link office->cloud" or "same host"."""
    src: str
    dst: str
    dialer: str
    via: str
    cost: float

    @property
    def listener(self):
        return self.dst if self.dialer == self.src else self.src

    @property
    def against_dial(self):
        """True when data flows from the listening end to the dialing end."""
        return self.dialer == self.dst

    def __str__(self):
        via = NO_DOMAIN[1:-1] if is_unnamed(self.via) else self.via
        return "%s dials %s (%s)" % (self.dialer, self.listener, via)


@dataclass(frozen=True)
class Route:
    """A path of devices; consecutive devices are joined by one TCP connection each.

    `devices[0]` is where data (or control) starts, `devices[-1]` where it ends, the devices in
    between are relays: for data they run pass-through relay steps, for control they forward.
    `cost` is the sum of hop costs (each hop costs its domain's or link's cost, 1 by default),
    so with default costs it equals the number of hops."""
    devices: tuple
    hops: tuple = ()

    @property
    def src(self):
        return self.devices[0]

    @property
    def dst(self):
        return self.devices[-1]

    @property
    def relays(self):
        return self.devices[1:-1]

    @property
    def hop_count(self):
        return len(self.hops)

    @property
    def cost(self):
        return sum(h.cost for h in self.hops)

    def dialers(self):
        """[(dialer, listener), ...] per hop: who opens which connection."""
        return [(h.dialer, h.listener) for h in self.hops]

    def explain(self):
        """One line: the path, who dials each hop, the relays."""
        text = str(self)
        if self.hops:
            text += " (" + "; ".join(str(h) for h in self.hops)
            if self.relays:
                text += "; relay%s on %s" % ("s" if len(self.relays) > 1 else "",
                                              ", ".join(self.relays))
            text += ")"
        return text

    def __str__(self):
        return " -> ".join(self.devices)


@dataclass(frozen=True)
class ControlRoute(Route):
    """How the controller reaches a device. `devices[0]` is always CONTROLLER.

    mode: "local" (the controller runs on the device's host), "direct" (the controller dials
    the device), "register" (the device dials the controller and keeps the connection open),
    "forwarded" (through one or more gateways; see the hops for who dials each leg)."""

    @property
    def mode(self):
        if len(self.hops) == 1:
            hop = self.hops[0]
            if hop.via == "same host":
                return "local"
            return "direct" if hop.dialer == CONTROLLER else "register"
        return "forwarded"

    @property
    def parent(self):
        """The device (or CONTROLLER) that sends this device its control messages."""
        return self.devices[-2]

    @property
    def forwarders(self):
        return self.relays

    def explain(self):
        text = "%s: %s" % (self.mode, Route.explain(self))
        return text


# ---------------------------------------------------------------------------------------------
# The model


class Topology:
    """Domains, links and the controller's place; answers reachability and route questions.

    Build it with `Topology.from_dict(network_section, device_names)` (validates) or directly
    from `Domain`/`Link` values (no validation: `without()` uses this for degraded networks)."""

    def __init__(self, domains, links=(), controller_domains=(), controller_host=None):
        self.domains = {d.name: d for d in domains}
        self.links = tuple(links)
        self.controller_host = controller_host
        cdoms = set(controller_domains)
        if controller_host is not None:
            cdoms |= {d.name for d in self.domains.values() if controller_host in d.devices}
        self.controller_domains = frozenset(cdoms)
        seen = {}
        for d in self.domains.values():
            for dev in d.devices:
                seen.setdefault(dev, set()).add(d.name)
        self.devices = tuple(seen)
        self._member_of = {dev: frozenset(doms) for dev, doms in seen.items()}
        self._member_of[CONTROLLER] = self.controller_domains
        self._links_by_pair = {}
        for link in self.links:
            key = (link.src, link.dst)
            old = self._links_by_pair.get(key)
            if old is None or link.cost < old.cost:
                self._links_by_pair[key] = link
        self._graph = self._build_graph()
        self._route_cache = {}
        self._control_cache = None

    # --- construction -------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, data, device_names=None, path=("network",)):
        """Parse and validate the `network:` section. `device_names`: the inventory's devices
        (None: the devices named in the domains). `data` None (no section): one domain holding
        every device and the controller. Raises the first TopologyError found; use
        `check(...)` to get all of them."""
        topo, errors = _parse(data, device_names, tuple(path))
        if errors:
            raise errors[0]
        return topo

    @classmethod
    def check(cls, data, device_names=None, path=("network",)):
        """All TopologyErrors of a `network:` section (empty list: valid). Shape errors come
        first; reachability is only checked once the shape is right."""
        return _parse(data, device_names, tuple(path))[1]

    @classmethod
    def single_domain(cls, device_names, name=None):
        """The network of a file without `network:`: everyone reaches everyone directly. Its
        domain is DEFAULT_DOMAIN, a name the user never wrote: messages say such a device is
        "(in no named domain)" (names.py)."""
        if name is None:
            name = Unnamed(DEFAULT_DOMAIN)
        return cls([Domain(name, tuple(device_names))], (), [name])

    def to_dict(self):
        """The `network:` section describing this topology (round-trips through from_dict)."""
        out = {"controller": [self.controller_host] if self.controller_host
               else sorted(self.controller_domains),
               "domains": {}}
        for d in self.domains.values():
            spec = {"devices": list(d.devices)}
            if d.cost != DEFAULT_COST:
                spec["cost"] = d.cost
            out["domains"][d.name] = spec
        if self.links:
            out["links"] = [dict({"from": l.src, "to": l.dst},
                                 **({"cost": l.cost} if l.cost != DEFAULT_COST else {}))
                            for l in self.links]
        return out

    def _build_graph(self):
        g = nx.DiGraph()
        g.add_node(CONTROLLER)
        g.add_nodes_from(self.devices)
        hop_edges = []
        for d in self.domains.values():
            hop_edges.append((("out", d.name), ("in", d.name), d.cost))
        for link in self._links_by_pair.values():
            # Both directions: a route may use the link against its dial direction.
            hop_edges.append((("out", link.src), ("in", link.dst), link.cost))
            hop_edges.append((("out", link.dst), ("in", link.src), link.cost))
        # Hop count first, cost second: every hop weighs more than all costs together.
        big = 1 + sum(c for _, _, c in hop_edges)
        for u, v, c in hop_edges:
            if g.has_edge(u, v) and g[u][v]["cost"] <= c:
                continue
            g.add_edge(u, v, cost=c, w=big + c)
        for node, doms in self._member_of.items():
            for dname in sorted(doms):
                g.add_edge(node, ("out", dname), w=0)
                g.add_edge(("in", dname), node, w=0)
        return g

    # --- facts --------------------------------------------------------------------------------

    def domains_of(self, device):
        """The domains a device (or CONTROLLER) is in."""
        try:
            return self._member_of[device]
        except KeyError:
            raise KeyError("unknown device %r" % (device,)) from None

    @property
    def gateways(self):
        """Devices in more than one domain."""
        return tuple(d for d in self.devices if len(self._member_of[d]) > 1)

    def _hop_options(self, a, b):
        """[(cost, a_can_dial, b_can_dial, via)] for a direct connection between a and b."""
        da, db = self.domains_of(a), self.domains_of(b)
        opts = []
        if a == b or (CONTROLLER in (a, b) and self.controller_host in (a, b)):
            opts.append((0, True, True, "same host"))
        for name in sorted(da & db):
            via = "domain " + name
            if is_unnamed(name):
                via = Unnamed(via)      # routing reads it as any via; messages as no domain
            opts.append((self.domains[name].cost, True, True, via))
        for (src, dst), link in sorted(self._links_by_pair.items()):
            via = "link %s->%s" % (src, dst)
            if src in da and dst in db:
                opts.append((link.cost, True, False, via))
            if src in db and dst in da:
                opts.append((link.cost, False, True, via))
        return opts

    def can_dial(self, a, b):
        """Can a open a TCP connection to b (directly, no relay)? a or b may be CONTROLLER."""
        return any(a_dials for _, a_dials, _, _ in self._hop_options(a, b))

    def dialer(self, src, dst):
        """Which end opens the connection for data flowing src -> dst over one hop: src when it
        can (the sender dials by default), else dst, else None (no direct connection)."""
        hop = self._hop(src, dst)
        return hop.dialer if hop else None

    def _hop(self, src, dst):
        opts = self._hop_options(src, dst)
        if not opts:
            return None
        # Cheapest; on a tie the sender dials; then by name for a stable answer.
        cost, src_dials, _, via = min(opts, key=lambda o: (o[0], not o[1], o[3]))
        return Hop(src, dst, src if src_dials else dst, via, cost)

    def _route_from_nodes(self, nodes, cls=Route):
        devs = tuple(n for n in nodes if isinstance(n, str))
        hops = tuple(self._hop(a, b) for a, b in zip(devs, devs[1:]))
        return cls(devs, hops)

    # --- data routes --------------------------------------------------------------------------

    def route(self, src, dst):
        """The route data takes from device src to device dst, or None when there is none.

        Fewest hops first, then lowest cost. Each hop is one TCP connection opened by
        whichever end can (see Hop.dialer); intermediate devices relay. The controller is
        never a relay for data."""
        self.domains_of(src), self.domains_of(dst)
        if CONTROLLER in (src, dst):
            raise ValueError("data routes are between devices; use control_route()")
        key = (src, dst)
        if key not in self._route_cache:
            hop = None if src == dst else self._hop(src, dst)
            if src == dst:
                r = Route((src,))
            elif hop is not None:
                # a direct connection: one hop weighs more than all costs together, so no route
                # of several hops is cheaper, and the cheapest one-hop option is the one _hop
                # picks (as _route_from_nodes would); a fleet asks this for every pair of devices
                r = Route((src, dst), (hop,))
            else:
                view = nx.subgraph_view(self._graph, filter_node=lambda n: n != CONTROLLER)
                try:
                    r = self._route_from_nodes(nx.shortest_path(view, src, dst, weight="w"))
                except nx.NetworkXNoPath:
                    r = None
            self._route_cache[key] = r
        return self._route_cache[key]

    def data_islands(self):
        """Groups of devices that can exchange data within but not between groups (one group
        in a well-joined network). Each is a tuple in device order; largest first."""
        view = nx.subgraph_view(self._graph, filter_node=lambda n: n != CONTROLLER)
        groups, done = [], set()
        for dev in self.devices:
            if dev not in done:
                comp = nx.descendants(view, dev) | {dev}
                group = tuple(d for d in self.devices if d in comp)
                done.update(group)
                groups.append(group)
        return sorted(groups, key=len, reverse=True)

    def explain_no_route(self, src, dst):
        """A sentence for a placement error when route(src, dst) is None (else None)."""
        if self.route(src, dst) is not None:
            return None
        def where(d):
            text = domains_text(self.domains_of(d))
            return "%s %s" % (d, text if text == NO_DOMAIN else "(%s)" % text)
        return ("no route from %s to %s: no gateway (a device in two domains) or link joins "
                "their domains, directly or through other domains; the controller does not "
                "relay data" % (where(src), where(dst)))

    def link(self, a, b):
        """The placement's pluggable link function: (cost, Route) or None if a cannot send to b.
        cost = sum of hop costs (= hop count with default costs); 0 on the same device."""
        r = self.route(a, b)
        return None if r is None else (r.cost, r)

    link_cost = link

    # --- control routes -----------------------------------------------------------------------

    def control_routes(self):
        """{device: ControlRoute} for every device the controller can reach. The routes form a
        tree (each device has one `parent`), so every forwarder has one upstream."""
        if self._control_cache is None:
            paths = nx.single_source_dijkstra_path(self._graph, CONTROLLER, weight="w")
            out = {}
            for dev in self.devices:
                if dev == self.controller_host:
                    out[dev] = ControlRoute((CONTROLLER, dev),
                                            (Hop(CONTROLLER, dev, CONTROLLER, "same host", 0),))
                elif dev in paths:
                    out[dev] = self._route_from_nodes(paths[dev], ControlRoute)
            self._control_cache = out
        return self._control_cache

    def control_route(self, device):
        """How the controller reaches `device` (ControlRoute), or None if it cannot."""
        self.domains_of(device)
        return self.control_routes().get(device)

    def registrations(self):
        """{device: upstream}: devices that must dial out and keep a control connection open
        to `upstream` (the controller or a gateway) because upstream cannot dial them."""
        out = {}
        for r in self.control_routes().values():
            for h in r.hops:
                if h.dialer == h.dst:
                    out[h.dst] = h.src
        return out

    def unreachable(self):
        """Devices the controller cannot reach for control, in device order."""
        routes = self.control_routes()
        return tuple(d for d in self.devices if d not in routes)

    # --- failures -----------------------------------------------------------------------------

    def without(self, devices):
        """This network with `devices` gone (failed); not validated, may have unreachable parts."""
        gone = set(devices)
        for d in gone:
            self.domains_of(d)
        doms = [Domain(d.name, tuple(x for x in d.devices if x not in gone), d.cost)
                for d in self.domains.values()]
        return Topology(doms, self.links, self.controller_domains, self.controller_host)

    def _neighbours(self, node):
        """Nodes one hop away from `node` (devices or CONTROLLER)."""
        out = set()
        for o in self._graph.successors(node):
            for i in self._graph.successors(o):
                out.update(self._graph.successors(i))
        out.discard(node)
        return out

    def affected_by(self, failed, edges=(), steps=None):
        """What the failure of `failed` devices does to a running placement.

        edges: iterable of (edge_id, src_device, dst_device) or (edge_id, src, dst, route) for
        the cross-device edges of the placement (route: the Route in use; default: the route
        this topology would pick). steps: optional {step_id: device}. Returns an Impact."""
        failed = tuple(dict.fromkeys(failed))
        degraded = self.without(failed)
        lost_control = degraded.unreachable()
        areas = self._areas(degraded, failed, lost_control)
        rerouted_control = {}
        old_routes = self.control_routes()
        for dev, r in degraded.control_routes().items():
            old = old_routes.get(dev)
            if old is not None and set(old.relays) & set(failed):
                rerouted_control[dev] = r
        edge_impacts = []
        for item in edges:
            edge_id, src, dst = item[0], item[1], item[2]
            old = item[3] if len(item) > 3 and item[3] is not None else self.route(src, dst)
            if not isinstance(old, Route) and old is not None:
                old = Route(tuple(old))
            edge_impacts.append(_edge_impact(degraded, failed, edge_id, src, dst, old))
        steps = steps or {}
        lost_steps = {s: d for s, d in steps.items() if d in failed}
        orphaned = {s: d for s, d in steps.items() if d in lost_control}
        return Impact(failed, areas, rerouted_control, edge_impacts, lost_steps, orphaned)

    def _areas(self, degraded, failed, lost):
        """Group devices the controller lost into connected areas, each with a sentence."""
        if not lost:
            return []
        sub = nx.subgraph_view(degraded._graph, filter_node=lambda n: n != CONTROLLER)
        reachable = set(degraded.control_routes()) | {CONTROLLER}
        areas, done = [], set()
        for dev in lost:
            if dev in done:
                continue
            # Hops are symmetric in the graph (a link is entered from both sides), so the
            # devices reachable from one lost device are its whole connected area.
            comp = nx.descendants(sub, dev) | {dev}
            members = tuple(d for d in degraded.devices if d in comp)
            done.update(members)
            touching = set()
            for m in members:
                touching |= self._neighbours(m) & set(failed)
            # The failed devices that joined this area to what is still reachable.
            cut = [f for f in failed if f in touching and self._neighbours(f) & reachable]
            if not cut:
                cut = [f for f in failed if f in touching]
            domains = sorted(set().union(*(degraded.domains_of(m) for m in members)))
            areas.append(Area(members, tuple(domains), tuple(cut),
                              _area_sentence(self, members, cut)))
        return areas

    # --- text ---------------------------------------------------------------------------------

    def describe(self):
        """Lines for `sensormesh plan`: domains, links, gateways, how control reaches devices."""
        lines = ["domains:"]
        width = max((len(n) for n in self.domains), default=0) + 1
        for d in self.domains.values():
            extra = "  [controller]" if d.name in self.controller_domains else ""
            cost = "" if d.cost == DEFAULT_COST else " (cost %g)" % d.cost
            members = ", ".join(d.devices) if len(d.devices) <= SHOWN else name_list(d.devices, shown=2 * SHOWN)
            lines.append("  %-*s %s%s%s" % (width, d.name + ":", members or "-", cost, extra))
        if self.links:
            lines.append("links (one-way, from dials into to):")
            for l in self.links:
                cost = "" if l.cost == DEFAULT_COST else " (cost %g)" % l.cost
                lines.append("  %s -> %s%s" % (l.src, l.dst, cost))
        if self.gateways:
            lines.append("gateways: " + ", ".join(
                "%s (%s)" % (g, ", ".join(sorted(self._member_of[g]))) for g in self.gateways))
        islands = self.data_islands()
        if len(islands) > 1:
            lines.append("data islands (no data route between them): " + "; ".join(
                ", ".join(group) for group in islands))
        lines.append("control:")
        routes = self.control_routes()
        for dev in self.devices:
            r = routes.get(dev)
            lines.append("  %s: %s" % (dev, r.explain() if r else "UNREACHABLE"))
        return lines

    def __repr__(self):
        return "Topology(domains=%r, links=%r, controller=%r)" % (
            {n: d.devices for n, d in self.domains.items()},
            [(l.src, l.dst) for l in self.links],
            self.controller_host or sorted(self.controller_domains))


def relay_loads(flows):
    """Sum the traffic each relay carries: flows is an iterable of (Route, rate) -> {device:
    rate}. The placement counts this against each gateway's capacity."""
    out = {}
    for route, rate in flows:
        for dev in route.relays:
            out[dev] = out.get(dev, 0) + rate
    return out


# ---------------------------------------------------------------------------------------------
# Failure analysis results


@dataclass(frozen=True)
class Area:
    """Devices the controller can no longer reach, the domains they are in, the failed devices
    that cut them off, and a sentence saying so."""
    devices: tuple
    domains: tuple
    cut_by: tuple
    sentence: str


@dataclass(frozen=True)
class EdgeImpact:
    """status: "ok" (route unaffected), "rerouted" (an alternative route exists: new_route),
    "cut" (no route left between the ends), "lost" (an end itself failed: its steps must be
    placed elsewhere)."""
    edge: object
    src: str
    dst: str
    status: str
    old_route: Route | None
    new_route: Route | None
    sentence: str

    @property
    def alternative(self):
        return self.new_route is not None and self.status == "rerouted"


@dataclass(frozen=True)
class Impact:
    failed: tuple
    areas: list
    rerouted_control: dict
    edges: list
    lost_steps: dict
    orphaned_steps: dict

    @property
    def unreachable(self):
        return tuple(d for a in self.areas for d in a.devices)

    @property
    def ok(self):
        return not self.areas and all(e.status == "ok" for e in self.edges) \
            and not self.lost_steps

    def lines(self):
        out = ["%s %s down" % (name_list(self.failed, last=" and "), "is" if len(self.failed) == 1 else "are")]
        out += [a.sentence for a in self.areas]
        for dev, r in self.rerouted_control.items():
            out.append("control of %s now goes %s" % (dev, r.explain()))
        # A fleet's failure touches hundreds of edges and steps: each kind of edge shows its
        # first few sentences and counts the rest, each list of steps its first few steps.
        total, shown = {}, {}
        for e in self.edges:
            total[e.status] = total.get(e.status, 0) + 1
        for e in self.edges:
            if e.status == "ok":
                continue
            shown[e.status] = shown.get(e.status, 0) + 1
            if total[e.status] <= SHOWN or shown[e.status] < SHOWN:
                out.append(e.sentence)
        for status, rest in (("rerouted", "with an alternative route"), ("cut", "with no route left"),
                             ("lost", "to or from the failed devices; their steps must be placed elsewhere")):
            if total.get(status, 0) > SHOWN:
                out.append("and %d more edges %s" % (total[status] - SHOWN + 1, rest))
        if self.lost_steps:
            out.append("steps lost with the failed devices: " + _first_few(
                ["%s (%s)" % (s, d) for s, d in self.lost_steps.items()], "steps"))
        if self.orphaned_steps:
            out.append("steps the controller can no longer reach (they may still run): " + _first_few(
                ["%s (%s)" % (s, d) for s, d in self.orphaned_steps.items()], "steps"))
        return out

    def __str__(self):
        return "\n".join(self.lines())


def _first_few(items, what):
    """"a, b, c", or past SHOWN items "600 steps: a, b, c, d, e and 595 more", in their order."""
    if len(items) <= SHOWN:
        return ", ".join(items)
    return "%d %s: %s and %d more" % (len(items), what, ", ".join(items[:SHOWN - 1]), len(items) - SHOWN + 1)


def _join(names):
    names = list(names)
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]


def _area_sentence(topo, members, cut):
    groups = {}
    for m in members:
        groups.setdefault(tuple(sorted(topo.domains_of(m))), []).append(m)
    parts = []
    for doms, devs in groups.items():
        text = domains_text(doms)
        parts.append("%s %s" % (name_list(devs), text if text == NO_DOMAIN else "in " + text))
    many = len(members) > 1
    text = "%s %s unreachable from the controller" % (" and ".join(parts),
                                                       "are" if many else "is")
    if cut:
        kinds = ["gateway" if len(topo.domains_of(c)) > 1 else "relay" for c in cut]
        kind = kinds[0] if len(set(kinds)) == 1 else "gateway"
        if len(cut) == 1:
            text += ": %s only %s %s is down" % ("their" if many else "its", kind, cut[0])
        else:
            text += ": %s %ss %s are down" % ("their" if many else "its", kind, name_list(cut, last=" and "))
    return text


def _edge_impact(degraded, failed, edge_id, src, dst, old):
    label = "edge %s (%s -> %s)" % (edge_id, src, dst)
    dead_ends = [d for d in (src, dst) if d in failed]
    if dead_ends:
        return EdgeImpact(edge_id, src, dst, "lost", old, None, "%s: %s %s down; %s steps must "
                          "be placed elsewhere" % (label, _join(dead_ends),
                                                   "is" if len(dead_ends) == 1 else "are",
                                                   "its" if len(dead_ends) == 1 else "their"))
    broken = [d for d in (old.relays if old else ()) if d in failed]
    if old is not None and not broken:
        return EdgeImpact(edge_id, src, dst, "ok", old, old, "%s: unaffected" % label)
    new = degraded.route(src, dst)
    why = ("went through %s, which %s down" % (_join(broken), "is" if len(broken) == 1 else "are")
           if broken else "had no route")
    if new is not None:
        return EdgeImpact(edge_id, src, dst, "rerouted", old, new,
                          "%s %s; alternative route: %s" % (label, why, new.explain()))
    return EdgeImpact(edge_id, src, dst, "cut", old, None,
                      "%s %s; no alternative route: %s can no longer reach %s"
                      % (label, why, src, dst))


# ---------------------------------------------------------------------------------------------
# Parsing and validation of the `network:` section


def _is_cost(value):
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value) and value > 0)


def _parse(data, device_names, base):
    errors = []

    def err(cls, path, message):
        errors.append(cls(base + tuple(path), message))

    known = None if device_names is None else list(dict.fromkeys(device_names))
    for name in known or ():
        if name == CONTROLLER:
            err(ReservedNameError, (), "a device may not be called %r: the name is reserved for "
                "the controller in routes" % CONTROLLER)
    if data is None:
        if errors:
            return None, errors
        return Topology.single_domain(known or ()), errors
    if not isinstance(data, Mapping):
        err(NetworkSyntaxError, (), "expected a mapping with domains:, links:, controller:, "
            "got %s" % type(data).__name__)
        return None, errors
    for key in data:
        if key not in ("controller", "domains", "links"):
            err(NetworkSyntaxError, (key,), "unknown key %r%s (expected controller, domains, "
                "links)" % (key, _suggest(key, ("controller", "domains", "links"))))

    domains = _parse_domains(data.get("domains"), known, err)
    links = _parse_links(data.get("links"), domains, err)
    controller_domains, controller_host = _parse_controller(data, domains, err)

    if known is not None:
        listed = {dev for d in domains.values() for dev in d.devices}
        for name in known:
            if name not in listed and name != CONTROLLER:
                err(DeviceWithoutDomainError, ("domains",), "device %r (in devices:) is in no "
                    "domain; list it under at least one domain" % name)
    for d in domains.values():
        if not d.devices and d.name not in controller_domains:
            err(EmptyDomainError, ("domains", d.name), "domain %r has no devices and the "
                "controller is not in it" % d.name)
    if errors:
        return None, errors

    topo = Topology(domains.values(), links, controller_domains, controller_host)
    reached = set(topo.control_routes())
    for d in domains.values():
        if d.devices and not reached & set(d.devices):
            err(UnreachableDomainError, ("domains", d.name), "domain %r (%s) cannot be reached "
                "from the controller, not even through gateways or links; list a device in it "
                "and in a reachable domain (a gateway), or add a link between it and a reachable "
                "domain" % (d.name, ", ".join(d.devices)))
    return (None if errors else topo), errors


def _parse_domains(raw, known, err):
    domains = {}
    if raw is None:
        err(NetworkSyntaxError, (), "missing key 'domains'")
        return domains
    if isinstance(raw, Mapping):
        entries = [((name,), name, spec) for name, spec in raw.items()]
    elif isinstance(raw, list):
        entries = []
        for i, item in enumerate(raw):
            if not isinstance(item, Mapping) or "name" not in item:
                err(NetworkSyntaxError, ("domains", i), "expected a mapping with name: and "
                    "devices:")
                continue
            spec = {k: v for k, v in item.items() if k != "name"}
            entries.append(((i,), item["name"], spec))
    else:
        err(NetworkSyntaxError, ("domains",), "expected a mapping of domain name -> devices")
        return domains
    for key, name, spec in entries:
        path = ("domains",) + key
        if not isinstance(name, str) or not name:
            err(NetworkSyntaxError, path, "a domain name must be a non-empty string, got %r"
                % (name,))
            continue
        if name in domains:
            err(DuplicateDomainError, path, "domain %r is defined twice" % name)
            continue
        cost = DEFAULT_COST
        if isinstance(spec, list):
            devs, dev_path = spec, path
        elif isinstance(spec, Mapping):
            for k in spec:
                if k not in ("devices", "cost"):
                    err(NetworkSyntaxError, path + (k,), "unknown key %r%s (expected devices, "
                        "cost)" % (k, _suggest(k, ("devices", "cost"))))
            devs, dev_path = spec.get("devices"), path + ("devices",)
            if devs is None:
                err(NetworkSyntaxError, path, "domain %r has no devices: list" % name)
                devs = []
            if "cost" in spec:
                if _is_cost(spec["cost"]):
                    cost = spec["cost"]
                else:
                    err(BadCostError, path + ("cost",), "cost must be a positive number, got %r"
                        % (spec["cost"],))
        else:
            err(NetworkSyntaxError, path, "expected a list of devices or {devices: [...]}")
            continue
        if not isinstance(devs, list):
            err(NetworkSyntaxError, dev_path, "expected a list of device names")
            devs = []
        members = []
        for i, dev in enumerate(devs):
            p = dev_path + (i,)
            if not isinstance(dev, str) or not dev:
                err(NetworkSyntaxError, p, "a device name must be a non-empty string, got %r"
                    % (dev,))
            elif dev == CONTROLLER:
                err(ReservedNameError, p, "%r is reserved; say where the controller is with "
                    "controller:" % CONTROLLER)
            elif known is not None and dev not in known:
                err(UnknownDeviceError, p, "unknown device %r%s (not in devices:)" % (dev, _suggest(dev, known)))
            elif dev in members:
                err(DuplicateDeviceError, p, "device %r is listed twice in domain %r"
                    % (dev, name))
            else:
                members.append(dev)
        domains[name] = Domain(name, tuple(members), cost)
    return domains


def _parse_links(raw, domains, err):
    links = []
    if raw is None:
        return links
    if not isinstance(raw, list):
        err(NetworkSyntaxError, ("links",), "expected a list of {from: A, to: B}")
        return links
    seen = set()
    for i, item in enumerate(raw):
        path = ("links", i)
        if not isinstance(item, Mapping):
            err(NetworkSyntaxError, path, "expected {from: DOMAIN, to: DOMAIN, cost: N}")
            continue
        ok = True
        for k in item:
            if k not in ("from", "to", "cost"):
                err(NetworkSyntaxError, path + (k,), "unknown key %r%s (expected from, to, cost)"
                    % (k, _suggest(k, ("from", "to", "cost"))))
                ok = False
        ends = []
        for k in ("from", "to"):
            v = item.get(k)
            if v is None:
                err(NetworkSyntaxError, path, "link without %r" % k)
                ok = False
            elif not isinstance(v, str):
                err(NetworkSyntaxError, path + (k,), "expected a domain name, got %r" % (v,))
                ok = False
            elif v not in domains:
                err(UnknownDomainError, path + (k,), "unknown domain %r%s; domains: %s"
                    % (v, _suggest(v, domains), ", ".join(domains)))
                ok = False
            ends.append(v)
        cost = item.get("cost", DEFAULT_COST)
        if not _is_cost(cost):
            err(BadCostError, path + ("cost",), "cost must be a positive number, got %r"
                % (cost,))
            ok = False
        if not ok:
            continue
        src, dst = ends
        if src == dst:
            err(SelfLinkError, path, "link from domain %r to itself: devices of a domain already "
                "reach each other" % src)
        elif (src, dst) in seen:
            err(DuplicateLinkError, path, "link %s -> %s is given twice" % (src, dst))
        else:
            seen.add((src, dst))
            links.append(Link(src, dst, cost))
    return links


def _parse_controller(data, domains, err):
    raw = data.get("controller")
    if raw is None:
        if len(domains) == 1:
            return set(domains), None
        if domains:
            err(ControllerPlacementError, (), "missing key 'controller': with several domains, "
                "say which domain(s) the controller is in, or the device whose host it runs on")
        return set(), None
    entries = [((), raw)] if isinstance(raw, str) else (
        [((i,), v) for i, v in enumerate(raw)] if isinstance(raw, list) else None)
    if not entries:
        err(NetworkSyntaxError, ("controller",), "expected a domain name, a device name or a "
            "list of domain names")
        return set(), None
    device_doms = {}
    for d in domains.values():
        for dev in d.devices:
            device_doms.setdefault(dev, set()).add(d.name)
    cdoms, hosts = set(), []
    for key, name in entries:
        path = ("controller",) + key
        if not isinstance(name, str):
            err(NetworkSyntaxError, path, "expected a name, got %r" % (name,))
        elif name in domains and name in device_doms:
            err(ControllerPlacementError, path, "%r is both a domain and a device; rename one"
                % name)
        elif name in domains:
            cdoms.add(name)
        elif name in device_doms:
            hosts.append((path, name))
        else:
            err(UnknownDomainError, path, "%r is neither a domain nor a device in a domain%s"
                % (name, _suggest(name, list(domains) + list(device_doms))))
    if hosts and (len(hosts) > 1 or cdoms):
        err(ControllerPlacementError, hosts[-1][0], "the controller runs in one place: give "
            "domain names, or the one device whose host it runs on")
        return cdoms, None
    host = hosts[0][1] if hosts else None
    if host:
        cdoms |= device_doms[host]
    return cdoms, host
