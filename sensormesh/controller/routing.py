"""Turn one cross-device edge of a placement into the pipe steps of every hop of its route.

`topology.link(a, b)` gives the route from the sender device to the receiver device: a list of
hops, each one TCP connection opened by its `dialer`. For every hop this module produces

  * on the hop's sending end a `pipe_out` (with `to`: the listener's address, when the sender
    dials; without `to` it waits for the receiver to pull),
  * on the hop's receiving end a `pipe_in` (with `from`: the sender's address, when the
    receiver dials: data then flows against the dial direction; without `from` it waits for
    the sender's push),

and on every gateway in between a relay: that hop's `pipe_in` feeding the next hop's
`pipe_out`, no processing. Each hop has its own edge id (`<edge>` for a one-hop route,
`<edge>@1`, `<edge>@2`, ... otherwise), so a relay can be redeployed on its own.

Addresses: each device's inventory entry has `addresses: {domain: "host:port"}` or a single
`address`. The dialer uses the listener's address in the domain the hop goes through (the
shared domain, or the `to` domain of the link it crosses). CPython only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sensormesh.controller.topology import Route


class RoutingError(ValueError):
    """No route, or no address to dial for one of its hops."""

    code = "routing"


def addresses_of(entry):
    """Inventory entry (or a plain address / {domain: address} mapping) -> {domain|None: addr}."""
    if isinstance(entry, str):
        return {None: entry}
    if "addresses" in entry or "address" in entry:
        out = dict(entry.get("addresses") or {})
        if entry.get("address"):
            out[None] = entry["address"]
        return out
    return dict(entry)


def hop_domain(hop):
    """The domain in which the dialer reaches the listener: "domain X" -> X, "link A->B" -> B
    (the dialer is in A, the listener in B), "same host" -> None."""
    via = hop.via
    if via.startswith("domain "):
        from sensormesh.controller.names import Unnamed, is_unnamed
        name = via[len("domain "):]
        return Unnamed(name) if is_unnamed(via) else name     # messages: "(in no named domain)"
    if via.startswith("link "):
        _, _, dst = via[len("link "):].partition("->")
        return dst
    return None


def dial_address(device, domain, inventory):
    """The address `device` listens on in `domain`; a single `address` serves every domain."""
    try:
        addrs = addresses_of(inventory[device])
    except KeyError:
        raise RoutingError("device %s has no address in the inventory" % device) from None
    if domain in addrs:
        return addrs[domain]
    if None in addrs:
        return addrs[None]
    if domain is None and addrs:   # same host: any of its addresses
        return next(iter(addrs.values()))
    from sensormesh.controller.names import NO_DOMAIN, domains_text
    if not addrs:
        raise RoutingError("device %s has no address at all: give it `address: host:port` (or "
                           "`addresses:` per domain), or mark it `local: true`" % device)
    here = domains_text([domain])
    if here == NO_DOMAIN:
        raise RoutingError("device %s has no address outside named domains: give it `address: host:port` "
                           "(it has addresses only in %s)" % (device, domains_text(addrs)))
    raise RoutingError("device %s has no address in %s (it has addresses in %s only)"
                       % (device, here, domains_text(addrs)))


def hop_address(device, hop, inventory):
    """The address the dialer of `hop` dials `device` at: an address kept for the hop's link
    ("A->B", an emulated network's shaped link) if the inventory has one, else the address in
    the hop's domain (dial_address)."""
    if hop.via.startswith("link "):
        addrs = addresses_of(inventory.get(device) or {})
        key = hop.via[len("link "):]
        if key in addrs:
            return addrs[key]
    return dial_address(device, hop_domain(hop), inventory)


@dataclass
class EdgeRoute:
    """The pipe steps of one edge over its route.

    steps: {device: [step dict, ...]} to merge into each device's assignment.
    out_id: the sending device's pipe_out step id (give it `inputs`).
    in_id: the receiving device's pipe_in step id (downstream steps take it as input).
    hop_edges: the edge id of each hop, in route order."""
    edge: str
    route: Route
    steps: dict = field(default_factory=dict)
    out_id: str = ""
    in_id: str = ""
    hop_edges: list = field(default_factory=list)

    @property
    def relays(self):
        return self.route.relays

    def hop_of(self, device):
        """Indexes of the hops that start or end at `device`."""
        return [i for i, h in enumerate(self.route.hops) if device in (h.src, h.dst)]


def hop_edge_id(edge, i, n):
    return edge if n == 1 else "%s@%d" % (edge, i + 1)


def edge_fragments(edge, src, dst, topology, inventory, time_frame=0, route=None, inputs=()):
    """Assignment fragments for edge `edge` from device `src` to device `dst`.

    topology: a Topology (its `link(src, dst)` gives the route unless `route` is given).
    inventory: {device: entry with `addresses`/`address`} (or {device: "host:port"}).
    time_frame: the edge's pipe_out time-frame (ms); relays forward at once (time-frame 0)
    so a route adds no batching delay. inputs: the sender-side step ids feeding the edge."""
    if route is None:
        got = topology.link(src, dst)
        if got is None:
            raise RoutingError("no route from %s to %s: %s" % (src, dst, topology.explain_no_route(src, dst)))
        route = got[1]
    hops = route.hops
    if not hops:
        raise RoutingError("edge %s: %s and %s are the same device; no pipe needed" % (edge, src, dst))
    n = len(hops)
    out = EdgeRoute(edge, route)
    prev_in = None
    for i, hop in enumerate(hops):
        eid = hop_edge_id(edge, i, n)
        out.hop_edges.append(eid)
        pout = {"id": "out:" + eid, "type": "pipe_out",
                "params": {"edge": eid, "time-frame": time_frame if i == 0 else 0}}
        pin = {"id": "in:" + eid, "type": "pipe_in", "params": {"edge": eid}}
        if hop.dialer == hop.src:
            pout["params"]["to"] = hop_address(hop.dst, hop, inventory)
        else:
            pin["params"]["from"] = hop_address(hop.src, hop, inventory)
        if i == 0:
            pout["inputs"] = list(inputs)
            out.out_id = pout["id"]
        else:
            pout["inputs"] = [prev_in]   # the relay: previous hop's pipe_in -> this pipe_out
        out.steps.setdefault(hop.src, []).append(pout)
        out.steps.setdefault(hop.dst, []).append(pin)
        prev_in = pin["id"]
    out.in_id = prev_in
    return out


def relay_assignment(pipeline, epoch, device, fragments):
    """A whole assignment for a gateway that only relays: the steps of `fragments` (EdgeRoute
    objects) on `device`."""
    steps = []
    for f in fragments:
        steps.extend(f.steps.get(device, []))
    return {"pipeline": pipeline, "epoch": epoch, "steps": steps}
