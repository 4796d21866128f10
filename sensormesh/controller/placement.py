# Placement: which device runs which step, and the assignments that follow from it.
#
# Sources run on the device that has their sensor, pinned steps (`on:`) where they are
# pinned; the rest is placed by one of three strategies:
#   central  everything else on the strongest device ("scenario one" of the original design)
#   edge     greedily, in topological order, on the device that adds the least traffic from the
#            step's inputs (their own device first) while CPU and memory allow ("scenario two")
#   optimal  minimum network traffic under CPU and memory limits, solved exactly as an integer
#            linear program with scipy.optimize.milp (HiGHS)
#
# Traffic is counted per *pipe*: a step's values cross to another device once per receiving
# device, however many steps there read them (the receiving device fans them out locally).
# A pipe costs its bytes/s times the link cost of the route (default: 1 between two devices).
#
# The link function link(a, b) -> (cost, route) or None (unreachable) is pluggable: route is
# the list of devices the values pass, a first and b last; devices in between run a relay.
# The default treats every pair of devices as one hop. The topology work plugs in hop counts
# and gateway routes through the same function (see link_for()).
#
# ILP (optimal), for a uniform link (every pair of distinct devices costs 1):
#   x[s,d] in {0,1}  step s runs on device d (only devices that can run s; fixed steps fixed)
#   sum_d x[s,d] = 1                                       every step somewhere
#   sum_s cpu[s] x[s,d] <= cap_cpu[d], same for memory     capacity
#   one consumer v:    y[u] >= x[u,d] - x[v,d]      for d in cand(u)      (y[u]=1 iff cut)
#   several consumers: w[u,d] >= x[v,d] - x[u,d]    for v, d in cand(v)   (w[u,d]=1 iff a pipe u->d)
#   minimise sum_u traffic[u] * (y[u] or sum_d w[u,d])
# For a non-uniform link, pair variables z[u,a,b] >= x[u,a] + x[v,b] - 1 carry cost(a, b) and
# unreachable pairs get x[u,a] + x[v,b] <= 1.
#
# Exact reduction for a uniform link: devices that host no fixed step and have the same
# (interpreter, cpu, memory) are interchangeable. In an optimal solution with the fewest
# blocks, no two blocks of steps on such devices could share one device (merging never adds
# traffic), so at most 1 + 2*cpu_total/cap_cpu + 2*mem_total/cap_mem of each kind are used.
# Only that many of each kind enter the ILP; the optimum is unchanged.
import math
import time

from sensormesh.controller.names import SHOWN, name_list
from sensormesh.controller.errors import PlacementError, Problem

STRATEGIES = ("central", "edge", "optimal")

# The strategy used when none is chosen (strategy=None, no --strategy): optimal, unless its
# problem is too large to build (more than PAIR_LIMIT pair variables), then FALLBACK, and the
# Placement's `fallback` says why. A strategy chosen by name is never replaced.
DEFAULT_STRATEGY = "optimal"
FALLBACK_STRATEGY = "edge"

# Placement fills a device's CPU up to this fraction of its estimate: the estimates are rough
# and a device that runs at 100% falls behind on pipes and control messages.
CPU_HEADROOM = 0.8

# Pipe batching (the `time-frame` of pipe_out): a sender sends at most this many frames per
# second per pipe. Below that rate every value goes on its own (no added latency); above it
# values are batched for 1000/N ms. MicroPython pays more per send, so it batches sooner.
PIPE_FRAMES_PER_S = {"cpython": 100, "micropython": 20}
# ... and a frame stays below half of the smallest frame limit a device accepts (codec: 16 KB),
# so a batch never has to be split.
PIPE_MAX_FRAME_BYTES = 8192

# The pair formulation (non-uniform links) is limited to this many pair variables.
PAIR_LIMIT = 400000

# A relay (a gateway's pipe_in feeding the next hop's pipe_out) costs CPU per value it passes
# (decode and re-encode) and heap for its two pipe ends and their frame buffers.
RELAY_CPU_PER_VALUE = 1.0
RELAY_MEMORY = 2000


def default_link(a, b):
    """Every device reaches every other directly at cost 1; the same device costs 0."""
    if a == b:
        return 0, [a]
    return 1, [a, b]


default_link.uniform = True
default_link.unit_cost = 1


def uniform_link(cost):
    """A link function where every pair of devices is one hop of the given cost."""
    def link(a, b):
        return (0, [a]) if a == b else (cost, [a, b])
    link.uniform = True
    link.unit_cost = cost
    return link


def link_for(model):
    """The link function for a model: its topology's, when there is one.

    sensormesh/controller/topology.py builds model.topology from the `network:` section; its
    `link(a, b) -> (cost, Route) | None` has this module's contract (docs/topology.md). A
    network of one domain and no links is uniform, and gets the fast uniform formulation."""
    topo = getattr(model, "topology", None)
    fn = getattr(topo, "link", None)
    if not callable(fn):
        return default_link
    domains = getattr(topo, "domains", None)
    if isinstance(domains, dict) and len(domains) == 1 and not getattr(topo, "links", ()):
        only = next(iter(domains.values()))
        if set(getattr(only, "devices", ())) >= set(model.devices):
            return uniform_link(getattr(only, "cost", 1))
    return fn


def route_devices(route):
    """The devices of a route, sender first: a list, or a topology Route (its .devices)."""
    return tuple(getattr(route, "devices", route))


# Hints of a producer that become parameters of every pipe_out carrying its output (every hop).
PIPE_HINTS = ("buffer", "spool")


def default_time_frame(rate, nbytes, interpreter):
    """ms of batching for a pipe carrying `rate` values/s of `nbytes` from `interpreter`."""
    limit = PIPE_FRAMES_PER_S.get(interpreter, 20)
    if rate <= limit:
        return 0
    tf = int(math.ceil(1000.0 / limit))
    per_frame = rate * nbytes * tf / 1000.0
    if per_frame > PIPE_MAX_FRAME_BYTES:
        tf = max(1, int(PIPE_MAX_FRAME_BYTES * 1000.0 / (rate * nbytes)))
    return tf


class Pipe:
    """One step's values crossing from one device to another (over `route`)."""

    def __init__(self, producer, src, dst, consumers, route, cost, rate, nbytes):
        self.producer = producer
        self.src = src
        self.dst = dst
        self.consumers = consumers      # step ids on dst that read it
        self.route_obj = route          # what the link function returned (list or Route)
        self.route = list(route_devices(route))     # [src, relays..., dst]
        self.cost = cost                # link cost of the route
        self.rate = rate                # values/s
        self.bytes = nbytes             # bytes/value
        self.edge = "%s->%s" % (producer, dst)
        self.time_frame = 0
        self.options = {}               # pipe_out parameters from the producer's hints (buffer, spool)

    @property
    def traffic(self):
        return self.rate * self.bytes

    def __repr__(self):
        return "Pipe(%s, %s, %.1f B/s)" % (self.edge, "->".join(self.route), self.traffic)


class Placement:
    """Where every step runs, why, and what crosses the network."""

    def __init__(self, model, strategy, device_of, reasons, link, cpu_headroom, solver=None):
        self.model = model
        self.strategy = strategy
        self.device_of = dict(device_of)
        self.reasons = dict(reasons)
        self.link = link
        self.cpu_headroom = cpu_headroom
        self.solver = solver or {}
        self.fallback = None     # why the default strategy was replaced by this one (or None)
        self.pipes, self.objective = evaluate(model, self.device_of, link)
        self.traffic = {}
        for p in self.pipes:
            for a, b in zip(p.route, p.route[1:]):
                self.traffic[(a, b)] = self.traffic.get((a, b), 0.0) + p.traffic
            p.time_frame = model.hints[p.producer].get("batch") if "batch" in model.hints[p.producer] else \
                default_time_frame(p.rate, p.bytes, model.devices[p.src].interpreter)
            p.options = {k: model.hints[p.producer][k] for k in PIPE_HINTS if k in model.hints[p.producer]}
        self.loads = device_loads(model, self.device_of, self.pipes)

    @property
    def total_traffic(self):
        """Bytes per second on all links (a pipe over two hops counts twice)."""
        return sum(self.traffic.values())

    def rows(self):
        """[(step, type, device, why)] in topological order."""
        m = self.model
        return [(sid, m.steps[sid].type, self.device_of[sid], self.reasons[sid]) for sid in m.order]

    def table(self):
        """The placement as text: steps, links, device loads."""
        out = [_table(("step", "type", "device", "why"), self.rows())]
        if self.traffic:
            rows = [(a, b, format_rate(t), _few([p.edge for p in self.pipes if (a, b) in zip(p.route, p.route[1:])],
                                                "pipes"))
                    for (a, b), t in sorted(self.traffic.items(), key=lambda kv: -kv[1])]
            out.append(_table(("from", "to", "traffic", "pipes"), rows))
        else:
            out.append("no traffic between devices")
        if any(getattr(p.route_obj, "hops", None) for p in self.pipes):
            out.append(_table(("pipe", "route", "who dials (through)", "relays"), self.route_rows()))
        rows = []
        for d, (cpu, mem) in self.loads.items():
            dev = self.model.devices[d]
            if cpu or mem:
                rows.append((d, dev.interpreter, "%.0f%%" % (100.0 * cpu / dev.cpu_units),
                             "%.0f%%" % (100.0 * mem / dev.memory)))
        out.append(_table(("device", "interpreter", "cpu", "memory"), rows))
        tail = "strategy %s: %s between devices" % (self.strategy, format_rate(self.total_traffic))
        weighted = abs(self.objective - self.total_traffic) > 1e-6 * max(1.0, self.total_traffic)
        if weighted:   # link costs other than 1: the objective weighs each hop's bytes by its cost
            tail += ", cost %s" % _num(self.objective)
        if self.solver.get("gap") is not None:
            bound = self.solver["bound"]
            tail += " (MIP gap %.2g%%, bound %s, %.2f s)" % (
                100 * self.solver["gap"], _num(bound) if weighted else format_rate(bound), self.solver["seconds"])
        out.append(tail)
        return "\n\n".join(out)

    def route_rows(self):
        """[(pipe, route, who dials each hop, relays)] for every cross-device pipe: the route its
        values take, which end opens each hop's connection and through which domain or link
        (noting when data flows against the dial direction), and the gateways that relay it."""
        rows = []
        for p in self.pipes:
            hops = getattr(p.route_obj, "hops", None)
            if hops:
                dials = "; ".join("%s dials %s (%s)%s" % (h.dialer, h.listener, h.via,
                                                          ", data flows back" if h.against_dial else "")
                                  for h in hops)
            else:
                dials = "; ".join("%s dials %s" % (a, b) for a, b in zip(p.route, p.route[1:]))
            rows.append((p.edge, " -> ".join(p.route), dials, ", ".join(p.route[1:-1]) or "-"))
        return rows

    def assignments(self, epoch=0, include_empty=True):
        """One assignment per inventory device, in the JSON format of docs/architecture.md.

        A cross-device edge becomes, for every hop of its route, a pipe_out on the hop's sender
        and a pipe_in on its receiver; a device in the middle of a route relays (its pipe_in
        feeds the next hop's pipe_out). Edge ids are "<producer>-><receiving device>", hop ids
        "<edge>@1", "<edge>@2"... when a route has several hops (as routing.py names them).
        include_empty=False leaves out devices that run nothing."""
        m = self.model
        head = {d: [] for d in m.devices}       # pipe_ins and relays: before the local steps
        after = {}                              # producer -> its pipe_out, right after it
        in_id = {}                              # (producer, device) -> the pipe_in id there
        for p in self.pipes:
            steps, out_id, last_in = self._pipe_steps(p)
            in_id[(p.producer, p.dst)] = last_in
            for dev, lst in steps.items():
                for st in lst:
                    if st["id"] == out_id:
                        after.setdefault(p.producer, []).append(st)
                    else:
                        head[dev].append(st)
        per = {d: list(head[d]) for d in m.devices}
        for sid in m.order:
            d = self.device_of[sid]
            s = m.steps[sid]
            entry = {"id": sid, "type": s.type, "params": dict(m.device_params[sid])}
            if s.inputs:
                entry["inputs"] = [i if self.device_of[i] == d else in_id[(i, d)] for i in s.inputs]
            per[d].append(entry)
            per[d].extend(after.get(sid, ()))
        out = {}
        for d, steps in per.items():
            if not steps and not include_empty:
                continue
            local = [sid for sid in m.order if self.device_of[sid] == d]
            out[d] = {"pipeline": m.name, "epoch": epoch, "code": m.code_for(local), "steps": steps}
        return out

    def _pipe_steps(self, p):
        """({device: [pipe steps]}, id of the first pipe_out, id of the last pipe_in) for a pipe."""
        steps, out_id, in_id = self._pipe_hops(p)
        if p.options:
            for lst in steps.values():
                for st in lst:
                    if st["type"] == "pipe_out":
                        st["params"].update(p.options)
        return steps, out_id, in_id

    def _pipe_hops(self, p):
        route = p.route_obj
        if getattr(route, "hops", None):
            # a topology Route: routing.py knows who dials each hop and which address to use
            from sensormesh.controller import routing
            inventory = self.model.routing_inventory()
            try:
                frag = routing.edge_fragments(p.edge, p.src, p.dst, None, inventory, time_frame=p.time_frame,
                                              route=route, inputs=[p.producer])
            except routing.RoutingError as e:
                raise PlacementError(Problem(str(e), step=p.producer, device=p.src))
            for hop, eid in zip(route.hops, frag.hop_edges):
                # same host: a Unix socket when the listening end has one
                for st in frag.steps.get(hop.src, []) + frag.steps.get(hop.dst, []):
                    prm = st["params"]
                    if prm.get("edge") != eid:
                        continue
                    if "to" in prm:
                        prm["to"] = self._prefer_unix(hop.src, hop.dst, prm["to"])
                    if "from" in prm:
                        prm["from"] = self._prefer_unix(hop.dst, hop.src, prm["from"])
            return frag.steps, frag.out_id, frag.in_id
        steps = {}
        hops = list(zip(p.route, p.route[1:]))
        prev_in = None
        out_id = None
        for i, (a, b) in enumerate(hops):
            eid = p.edge if len(hops) == 1 else "%s@%d" % (p.edge, i + 1)
            pout = {"id": "out:" + eid, "type": "pipe_out",
                    "params": {"edge": eid, "to": self.address(a, b), "time-frame": p.time_frame if i == 0 else 0},
                    "inputs": [p.producer] if i == 0 else [prev_in]}
            pin = {"id": "in:" + eid, "type": "pipe_in", "params": {"edge": eid}}
            if i == 0:
                out_id = pout["id"]
            steps.setdefault(a, []).append(pout)
            steps.setdefault(b, []).append(pin)
            prev_in = pin["id"]
        return steps, out_id, prev_in

    def _prefer_unix(self, dialer, listener, addr):
        a, b = self.model.devices[dialer], self.model.devices[listener]
        if self.model.address_plan is None and a.same_host(b) and b.unix_path:
            return "unix:" + b.unix_path
        return addr

    def address(self, sender, receiver):
        """How `sender` reaches `receiver`: unix:PATH on one host when possible, else host:port."""
        a, b = self.model.devices[sender], self.model.devices[receiver]
        if self.model.address_plan is not None and receiver in self.model.address_plan:
            # an emulated network's address in the network's one domain (a uniform network)
            from sensormesh.controller import routing
            from sensormesh.controller.topology import DEFAULT_DOMAIN
            topo = self.model.topology
            domain = next(iter(topo.domains)) if topo is not None and len(topo.domains) == 1 \
                else DEFAULT_DOMAIN
            return routing.dial_address(receiver, domain, self.model.routing_inventory())
        if a.same_host(b) and b.unix_path:
            return "unix:" + b.unix_path
        if b.main_address is None:
            raise PlacementError(Problem("device %r has no address %s sends to; give it address: host:port"
                                         % (receiver, sender), device=receiver, key="address"))
        return b.main_address

    def __repr__(self):
        return "Placement(%s, %.1f B/s)" % (self.strategy, self.total_traffic)


def _num(x):
    return "%.4g" % x


def _table(header, rows):
    rows = [tuple(str(c) for c in r) for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    line = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def device_loads(model, device_of, pipes):
    """{device: [cpu units/s, memory bytes]}: its steps plus the relays it runs for pipes."""
    loads = {d: [0.0, 0.0] for d in model.devices}
    for sid, d in device_of.items():
        loads[d][0] += model.costs[sid].cpu
        loads[d][1] += model.costs[sid].memory
    for p in pipes:
        for r in p.route[1:-1]:
            loads[r][0] += RELAY_CPU_PER_VALUE * p.rate
            loads[r][1] += RELAY_MEMORY
    return loads


def check_relay_loads(setup, placement):
    """Relays count against their device's capacity: a PlacementError when one is over."""
    for d, (cpu, mem) in placement.loads.items():
        if cpu > setup.cap_cpu[d] + 1e-6 or mem > setup.cap_mem[d] + 1e-6:
            relayed = [p.edge for p in placement.pipes if d in p.route[1:-1]]
            raise PlacementError(Problem(
                "%s: relaying %s on top of its steps needs %s of %s CPU units/s and %s of %s "
                "bytes; try --strategy optimal, which counts relays" % (
                    placement.strategy, name_list(relayed, what="pipes") if relayed else "nothing",
                    _amount(cpu), _amount(setup.cap_cpu[d]), _amount(mem), _amount(setup.cap_mem[d])), device=d))


def evaluate(model, device_of, link=default_link):
    """(pipes, objective) of a complete assignment of steps to devices.

    objective = sum over pipes of bytes/s * link cost. Raises PlacementError when a pipe has
    no route."""
    pipes, total = [], 0.0
    for u in model.order:
        cons = model.consumers[u]
        if not cons:
            continue
        src = device_of[u]
        by_dev = {}
        for v in cons:
            if device_of[v] != src:
                by_dev.setdefault(device_of[v], []).append(v)
        f = model.flows[u]
        for dst, vs in by_dev.items():
            r = link(src, dst)
            if r is None:
                why = why_no_route(model, link, src, dst)
                raise PlacementError(Problem("%s on %s cannot reach %s on %s (no route)%s"
                                             % (u, src, ", ".join(vs), dst, ": " + why if why else ""),
                                             step=u, device=src))
            cost, route = r
            p = Pipe(u, src, dst, vs, route, cost, f.rate, f.bytes)
            pipes.append(p)
            total += p.traffic * cost
    return pipes, total


def why_no_route(model, link, a, b):
    """Why link(a, b) is None, in words, or "" when nobody can say: the link function's own
    `explain(a, b)` (the supervisor's degraded network names failed devices), else the model's
    topology's explain_no_route."""
    for explain in (getattr(link, "explain", None),
                    getattr(getattr(model, "topology", None), "explain_no_route", None)):
        if callable(explain):
            try:
                why = explain(a, b)
            except Exception:   # an explanation is a nicety; the error stands without it
                why = None
            if why:
                return why
    return ""


def _down_text(why):
    return "down (%s)" % why if why and why != "down" else "down"


# -- the common part of every strategy ---------------------------------------------------------

class _Setup:
    """Candidates and capacities; raises PlacementError for what no strategy can fix."""

    def __init__(self, model, cpu_headroom, down=None):
        self.model = model
        self.cpu_headroom = cpu_headroom
        # devices known to be down (the supervisor's failed ones): {device: why}; nothing goes there
        if isinstance(down, dict):
            self.down = {d: w for d, w in down.items() if d in model.devices}
        else:
            self.down = {d: "down" for d in (down or ()) if d in model.devices}
        if not model.devices:
            raise PlacementError(Problem("the inventory is empty: there is nowhere to place steps"))
        self.cap_cpu = {d: dev.cpu_units * cpu_headroom for d, dev in model.devices.items()}
        self.cap_mem = {d: float(dev.memory) for d, dev in model.devices.items()}
        self.cpu = {s: model.costs[s].cpu for s in model.order}
        self.mem = {s: model.costs[s].memory for s in model.order}
        self.fixed, self.reasons, self.cand = {}, {}, {}
        problems = []
        by_interp = {}
        for d, dev in model.devices.items():
            by_interp.setdefault(dev.interpreter, []).append(d)
        for sid in model.order:
            s = model.steps[sid]
            interps = model.interpreters[sid]
            why = "; ".join(model.interpreter_reasons[sid]) or "no interpreter fits"
            if not interps:
                problems.append(Problem("can run nowhere: %s" % why, step=sid))
                continue
            fixed = model.fixed_device(sid)
            if fixed is not None:
                dev = model.devices[fixed]
                if dev.interpreter not in interps:
                    problems.append(Problem("must run on %s (%s) but needs %s: %s"
                                            % (fixed, dev.interpreter, "/".join(sorted(interps)), why),
                                            step=sid, device=fixed))
                    continue
                if s.type == "source":
                    spec = model.sensor_spec[sid]
                    label = spec["name"] if spec["name"] == spec["kind"] else "%s (%s)" % (spec["name"], spec["kind"])
                    if fixed in self.down:
                        problems.append(Problem("no live device has sensor %s: %s has it but is %s"
                                                % (label, fixed, _down_text(self.down[fixed])),
                                                step=sid, device=fixed))
                        continue
                    self.reasons[sid] = "has sensor %s" % label + (" (pinned)" if s.on else "")
                elif fixed in self.down:
                    problems.append(Problem("pinned to %s (on: %s), which is %s"
                                            % (fixed, fixed, _down_text(self.down[fixed])),
                                            step=sid, device=fixed))
                    continue
                else:
                    self.reasons[sid] = "pinned (on: %s)" % fixed
                self.fixed[sid] = fixed
                self.cand[sid] = [fixed]
                continue
            every = [d for i in sorted(interps) for d in by_interp.get(i, ())]
            cand = [d for d in every if d not in self.down]
            if not every:
                problems.append(Problem("needs %s (%s) but the inventory has only %s devices"
                                        % ("/".join(sorted(interps)), why, "/".join(sorted(by_interp))), step=sid))
                continue
            if not cand:
                groups = {}         # one reason, its devices in short (names.py)
                for d in every:
                    groups.setdefault(_down_text(self.down[d]), []).append(d)
                problems.append(Problem("needs %s (%s) and every such device is down: %s"
                                        % ("/".join(sorted(interps)), why,
                                           "; ".join("%s %s" % (name_list(devs), text)
                                                     for text, devs in sorted(groups.items()))),
                                        step=sid))
                continue
            fits = [d for d in cand if self.cpu[sid] <= self.cap_cpu[d] and self.mem[sid] <= self.cap_mem[d]]
            if not fits:
                problems.append(Problem("needs %s CPU units/s and %s bytes, more than any device it can "
                                        "run on has (largest: %s)" % (_amount(self.cpu[sid]), _amount(self.mem[sid]),
                                                                       _largest(model, cand, self)), step=sid))
                continue
            self.cand[sid] = fits
        if problems:
            raise PlacementError(problems)
        self.fixed_cpu = {d: 0.0 for d in model.devices}
        self.fixed_mem = {d: 0.0 for d in model.devices}
        for sid, d in self.fixed.items():
            self.fixed_cpu[d] += self.cpu[sid]
            self.fixed_mem[d] += self.mem[sid]
        for d in model.devices:
            over = []
            if self.fixed_cpu[d] > self.cap_cpu[d]:
                over.append("CPU %s of %s units/s" % (_amount(self.fixed_cpu[d]), _amount(self.cap_cpu[d])))
            if self.fixed_mem[d] > self.cap_mem[d]:
                over.append("memory %s of %s bytes" % (_amount(self.fixed_mem[d]), _amount(self.cap_mem[d])))
            if over:
                steps = [s for s, x in self.fixed.items() if x == d]
                problems.append(Problem("its sources and pinned steps (%s) alone need %s"
                                        % (name_list(steps, what="steps"), " and ".join(over)), device=d))
        if problems:
            raise PlacementError(problems)
        self.free = [s for s in model.order if s not in self.fixed]

    def fits(self, load_cpu, load_mem, sid, d):
        return load_cpu[d] + self.cpu[sid] <= self.cap_cpu[d] + 1e-9 and \
            load_mem[d] + self.mem[sid] <= self.cap_mem[d] + 1e-9


def _largest(model, cand, setup):
    d = max(cand, key=lambda x: (setup.cap_cpu[x], setup.cap_mem[x]))
    return "%s: %s units/s, %s bytes" % (d, _amount(setup.cap_cpu[d]), _amount(setup.cap_mem[d]))


def _few(items, what):
    """A table cell listing items: all of a few; of many (a gateway carrying a fleet's pipes) the
    first five and how many more, so the table keeps its width."""
    if len(items) <= SHOWN:
        return ", ".join(items)
    return "%d %s: %s, ... and %d more" % (len(items), what, ", ".join(items[:SHOWN - 1]), len(items) - SHOWN + 1)


def _amount(x):
    """A number of CPU units or bytes for a message: whole, and short when it is huge (a source
    whose rate is 1e300 needs 1e+300 units, not three hundred digits)."""
    return "%.0f" % x if abs(x) < 1e15 else "%.3g" % x


def place(model, strategy=None, link=None, cpu_headroom=CPU_HEADROOM, time_limit=60.0,
          mip_rel_gap=1e-4, reduce=True, down=None):
    """Place `model`'s steps on its devices. Returns a Placement; raises PlacementError.

    strategy: "central", "edge" or "optimal"; None (not chosen): optimal, or edge when optimal's
    problem is too large (more than PAIR_LIMIT device-pair variables), and then the Placement's
    `fallback` says so in a sentence (None otherwise).

    down: devices that must get nothing ({device: why} or a set), e.g. the supervisor's failed
    ones; a step pinned there, or a source whose sensor only such a device has, is an error.
    Every error names the step and where it is defined (file:line:col or module.py:line)."""
    _check_options(cpu_headroom, time_limit, mip_rel_gap)
    try:
        if strategy is not None:
            return _place(model, strategy, link, cpu_headroom, time_limit, mip_rel_gap, reduce, down)
        try:
            return _place(model, DEFAULT_STRATEGY, link, cpu_headroom, time_limit, mip_rel_gap, reduce, down)
        except TooLarge as e:
            pl = _place(model, FALLBACK_STRATEGY, link, cpu_headroom, time_limit, mip_rel_gap, reduce, down)
            pl.fallback = ("placed with the %s strategy: the default, %s, would need %s; choose a "
                           "strategy with --strategy" % (FALLBACK_STRATEGY, DEFAULT_STRATEGY, e.why))
            return pl
    except PlacementError as e:
        if not _locate(model, e.problems):
            raise
        raise PlacementError(e.problems) from None


def _check_options(cpu_headroom, time_limit, mip_rel_gap):
    """The words `sensormesh plan` gives its options, for the same values from Python."""
    def number(v):
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    if not (number(cpu_headroom) and 0.05 <= cpu_headroom <= 1):
        raise PlacementError(Problem("must be a fraction between 0.05 and 1, not %r" % (cpu_headroom,),
                                     key="cpu_headroom"))
    if not (number(time_limit) and time_limit > 0):
        raise PlacementError(Problem("must be a positive number of seconds, not %r" % (time_limit,), key="time_limit"))
    if not (number(mip_rel_gap) and 0 <= mip_rel_gap < 1):
        raise PlacementError(Problem("must be a fraction from 0 up to 1, not %r" % (mip_rel_gap,), key="mip_rel_gap"))


def _locate(model, problems):
    """Give each problem about a step the place the step is defined, and each problem about a
    device alone the place of its inventory entry; True if any changed."""
    changed = False
    for p in problems:
        if p.origin is not None:
            continue
        s = model.steps.get(p.step) if p.step is not None else None
        d = model.devices.get(p.device) if p.step is None and isinstance(p.device, str) else None
        where = s.origin if s is not None else getattr(d, "origin", None)
        if where:
            p.origin = where
            changed = True
    return changed


def _place(model, strategy, link, cpu_headroom, time_limit, mip_rel_gap, reduce, down):
    if strategy not in STRATEGIES:
        raise PlacementError(Problem("unknown strategy %r; use one of %s" % (strategy, ", ".join(STRATEGIES)),
                                     key="strategy"))
    link = link or link_for(model)
    setup = _Setup(model, cpu_headroom, down)
    try:
        if strategy == "central":
            device_of, reasons, solver = _central(setup, link), {}, None
        elif strategy == "edge":
            device_of, reasons = _edge(setup, link)
            solver = None
        else:
            device_of, reasons, solver = _optimal(setup, link, time_limit, mip_rel_gap, reduce)
        all_reasons = dict(setup.reasons)
        all_reasons.update(reasons)
        device_of.update(setup.fixed)
        chosen = _callbacks_to_room(setup, device_of, strategy, link)
        all_reasons.update(chosen)
        pl = Placement(model, strategy, device_of, all_reasons, link, cpu_headroom, solver)
    except TooLarge:
        raise               # not a route problem: nothing was placed (and the search takes seconds)
    except PlacementError:
        # a strategy fails where it notices; say why no placement can have a route, when that is it
        cause = _route_cause(setup, link)
        if cause is None:
            raise
        raise PlacementError(cause) from None
    check_relay_loads(setup, pl)
    if solver:
        # the ILP leaves out pipes between two fixed steps (a constant); put them back
        const = pl.objective - solver["objective"]
        solver["objective"] = pl.objective
        if solver.get("bound") is not None:
            solver["bound"] += const
    if strategy in ("central", "optimal"):
        _explain(pl, setup, keep=chosen)
    return pl


def _callbacks_to_room(setup, device_of, strategy, link):
    """Move each callback sink a strategy placed to the device, among those its input's values
    reach anyway, with the most memory to spare (then CPU); {sink: reason} for those with a
    choice.

    A callback sink hands its values to the controller from whichever device runs it, so among
    the devices that already have its values the choice adds no traffic. A strategy sees only
    traffic and would leave the sink with its input: on a board that also pipes those values to a
    PC, the board would send every value twice (to the PC and to the controller) and keep the
    code and buffers of the deliveries in its heap, while the PC could deliver them at no cost.
    Pinned sinks stay pinned; a tie keeps the strategy's choice. A move never adds a pipe (it
    may remove one), so the loads counted before the moves, relays included, bound those after."""
    m = setup.model
    try:
        loads = device_loads(m, device_of, evaluate(m, device_of, link)[0])
    except PlacementError:
        return {}           # no route: Placement() says so, as without this step
    load_cpu = {d: c for d, (c, _) in loads.items()}
    load_mem = {d: b for d, (_, b) in loads.items()}
    chosen = {}
    for sid in setup.free:
        s = m.steps[sid]
        if s.type != "callback" or m.consumers[sid] or len(set(s.inputs)) != 1:
            continue
        u = s.inputs[0]
        here = device_of[sid]
        load_cpu[here] -= setup.cpu[sid]
        load_mem[here] -= setup.mem[sid]
        reach = [device_of[u]] + [device_of[v] for v in m.consumers[u] if v != sid]
        options = [d for d in dict.fromkeys(reach) if d in setup.cand[sid] and setup.fits(load_cpu, load_mem, sid, d)]

        def room(d):
            return (setup.cap_mem[d] - load_mem[d] - setup.mem[sid], setup.cap_cpu[d] - load_cpu[d] - setup.cpu[sid])
        best = here
        for d in options:
            if room(d) > room(best):
                best = d
        device_of[sid] = best
        if set(options) - {best}:       # a choice was made here: say so, moved or not
            why = "with %s" % u if device_of[u] == best else "%s's values arrive here" % u
            chosen[sid] = "%s: %s; most memory to spare" % (strategy, why)
        load_cpu[best] += setup.cpu[sid]
        load_mem[best] += setup.mem[sid]
    return chosen


def _route_cause(setup, link):
    """A Problem naming why no placement gives every pipe a route, or None.

    Candidate devices are narrowed along every edge of the graph (a device stays a candidate
    for a producer only if some candidate of the consumer is reachable from it, and the
    reverse) until nothing changes; an edge left without a pair names the fixed steps (sources,
    pinned steps) at its ends, or upstream and downstream of it, whose devices have no route."""
    if _is_uniform(link):
        return None
    m = setup.model
    memo = {}

    def reach(a, b):
        if a == b:
            return True
        if (a, b) not in memo:
            memo[(a, b)] = link(a, b) is not None
        return memo[(a, b)]

    cand = {s: list(setup.cand[s]) for s in m.order}
    edges = m.edges()
    for _ in range(sum(len(c) for c in cand.values()) + 1):    # each round removes one or ends
        changed = False
        for u, v in edges:
            cu = [a for a in cand[u] if any(reach(a, b) for b in cand[v])]
            cv = [b for b in cand[v] if any(reach(a, b) for a in cu)]
            if not cu or not cv:
                return _no_route(setup, link, reach, u, v, cand)
            if len(cu) != len(cand[u]) or len(cv) != len(cand[v]):
                cand[u], cand[v] = cu, cv
                changed = True
        if not changed:
            return None
    return None


def _no_route(setup, link, reach, u, v, cand):
    m = setup.model

    def closure(start, nxt):
        seen, todo = [], [start]
        while todo:
            s = todo.pop()
            if s not in seen:
                seen.append(s)
                todo.extend(nxt(s))
        return seen

    ups = [s for s in closure(u, lambda s: m.steps[s].inputs) if s in setup.fixed]
    downs = [s for s in closure(v, lambda s: m.consumers[s]) if s in setup.fixed]
    for a in ups:
        for b in downs:
            da, db = setup.fixed[a], setup.fixed[b]
            if not reach(da, db):
                why = why_no_route(m, link, da, db)
                if a == u and b == v:
                    text = "%s on %s cannot send to %s on %s: no route" % (a, da, b, db)
                else:
                    free = [s for s in (u, v) if s not in setup.fixed]
                    text = "no route from %s on %s to %s on %s, which the pipeline joins through %s" % (
                        a, da, b, db, ", ".join(free) or "%s -> %s" % (u, v))
                step = next((s for s in (u, v) if s not in setup.fixed), u)
                return Problem(text + (": " + why if why else ""), step=step, device=da)
    sid = u if u not in setup.fixed else v
    return Problem("no device it can run on (%s) has a route %s %s (on %s)" % (
        name_list(setup.cand[sid]), "from its input" if sid == v else "to",
        u if sid == v else v, name_list(cand[u] if sid == v else cand[v])), step=sid)


def _central(setup, link):
    m = setup.model
    rank = sorted((d for d in m.devices if d not in setup.down),
                  key=lambda d: (-m.devices[d].cpu, -m.devices[d].memory, d))
    strongest = rank[0]
    load_cpu, load_mem = dict(setup.fixed_cpu), dict(setup.fixed_mem)
    device_of = {}
    for sid in setup.free:
        interps = m.interpreters[sid]
        d = next(x for x in rank if m.devices[x].interpreter in interps)
        if not setup.fits(load_cpu, load_mem, sid, d):
            raise PlacementError(Problem(
                "central: %s cannot also take step %r: it would need %s of %s CPU units/s and %s "
                "of %s bytes; try --strategy edge or optimal"
                % (d, sid, _amount(load_cpu[d] + setup.cpu[sid]), _amount(setup.cap_cpu[d]),
                   _amount(load_mem[d] + setup.mem[sid]), _amount(setup.cap_mem[d])), step=sid, device=d))
        load_cpu[d] += setup.cpu[sid]
        load_mem[d] += setup.mem[sid]
        device_of[sid] = d
    device_of.update(setup.fixed)
    evaluate(m, device_of, link)      # raises if a pipe has no route
    setup.strongest = strongest
    return device_of


def _edge(setup, link):
    m = setup.model
    load_cpu, load_mem = dict(setup.fixed_cpu), dict(setup.fixed_mem)
    device_of = dict(setup.fixed)
    reasons = {}
    hop_cost = {}       # (a, b) -> link(a, b)'s cost or None: a fleet asks for the same pairs often

    def cost_of(a, b):
        if (a, b) not in hop_cost:
            r = link(a, b)
            hop_cost[(a, b)] = None if r is None else r[0]
        return hop_cost[(a, b)]
    for sid in setup.free:
        s = m.steps[sid]
        ins = sorted(dict.fromkeys(s.inputs), key=lambda i: -m.flows[i].traffic)
        in_devs = [device_of[i] for i in ins]
        best, best_key = None, None
        here = in_devs[0] if in_devs and len(set(in_devs)) == 1 else None
        # every input on one device with room: nothing is cheaper (no traffic) nor comes before
        # it (its inputs' own device), so the search over every device would pick it too
        first = [here] if here in setup.cand[sid] and setup.fits(load_cpu, load_mem, sid, here) \
            and cost_of(here, here) == 0 else setup.cand[sid]
        for d in first:
            if not setup.fits(load_cpu, load_mem, sid, d):
                continue
            cost = 0.0
            for i in ins:
                c = cost_of(device_of[i], d)
                if c is None:
                    cost = None
                    break
                cost += m.flows[i].traffic * c
            if cost is None:
                continue
            spare = 1.0 - (load_cpu[d] + setup.cpu[sid]) / setup.cap_cpu[d] if setup.cap_cpu[d] else 0.0
            key = (cost, in_devs.index(d) if d in in_devs else len(in_devs), -spare, d)
            if best_key is None or key < best_key:
                best, best_key = d, key
        if best is None:
            where = ", ".join("%s on %s" % (i, device_of[i]) for i in ins)
            raise PlacementError(Problem("edge: no device with room that its inputs (%s) can reach: "
                                         "CPU or memory is full everywhere it can run" % where, step=sid))
        device_of[sid] = best
        load_cpu[best] += setup.cpu[sid]
        load_mem[best] += setup.mem[sid]
        if ins and best == in_devs[0]:
            reasons[sid] = "edge: with its input %s" % ins[0]
        elif best in in_devs:
            reasons[sid] = "edge: with its input %s" % ins[in_devs.index(best)]
        elif not in_devs:
            reasons[sid] = "edge: no inputs; a device with room that can run it"
        else:
            full = in_devs[0]
            why = "full" if m.devices[full].interpreter in m.interpreters[sid] else "cannot run it"
            reasons[sid] = "edge: nearest device with room (%s %s)" % (full, why)
    return device_of, reasons


def _explain(pl, setup, keep=()):
    """Reasons for steps that central/optimal placed (not for those in `keep`)."""
    m = pl.model
    sends = {}
    for p in pl.pipes:
        sends.setdefault(p.producer, []).append(p)
    for sid in setup.free:
        if sid in keep:
            continue
        d = pl.device_of[sid]
        if pl.strategy == "central":
            base = "central: strongest device" if d == setup.strongest else \
                "central: strongest %s device" % m.devices[d].interpreter
        else:
            base = "optimal"
        extra = []
        with_in = [i for i in dict.fromkeys(m.steps[sid].inputs) if pl.device_of[i] == d]
        if with_in and pl.strategy == "optimal":
            extra.append("with %s" % ", ".join(with_in))
        for p in sends.get(sid, ()):
            extra.append("sends %s to %s" % (format_rate(p.traffic), p.dst))
        if not extra and pl.strategy == "optimal":
            extra.append("least total traffic")
        sep = ": " if pl.strategy == "optimal" else "; "
        pl.reasons[sid] = base + (sep + "; ".join(extra) if extra else "")


def format_rate(bps):
    """12.3 B/s, 4.5 kB/s, 1.2 MB/s."""
    for unit, scale in (("MB/s", 1e6), ("kB/s", 1e3)):
        if bps >= scale:
            return "%.3g %s" % (bps / scale, unit)
    return "%.3g B/s" % bps


# -- optimal: the ILP ---------------------------------------------------------------------------

def _reduce_candidates(setup):
    """Exact reduction for uniform links (see the module comment): keep every device that hosts
    a fixed step, and of each kind of otherwise empty device only as many as could be used."""
    m = setup.model
    anchors = set(setup.fixed.values())
    groups = {}
    for d, dev in m.devices.items():
        if d not in anchors and d not in setup.down:
            groups.setdefault((dev.interpreter, dev.cpu, dev.memory), []).append(d)
    keep = set(anchors)
    for (interp, _, _), devs in groups.items():
        compat = [s for s in setup.free if interp in m.interpreters[s] and devs[0] in setup.cand[s]]
        if not compat:
            continue
        cap_c, cap_m = setup.cap_cpu[devs[0]], setup.cap_mem[devs[0]]
        tot_c = sum(setup.cpu[s] for s in compat)
        tot_m = sum(setup.mem[s] for s in compat)
        k = 1 + int(2 * tot_c / cap_c if cap_c else 0) + int(2 * tot_m / cap_m if cap_m else 0)
        keep.update(sorted(devs)[:min(len(devs), len(compat), k)])
    return {s: [d for d in setup.cand[s] if d in keep] for s in setup.cand}


def _is_uniform(link):
    return getattr(link, "uniform", False)


class TooLarge(PlacementError):
    """The optimal strategy's problem is too large to build; `why` says how large in words."""

    def __init__(self, problem, why):
        super().__init__(problem)
        self.why = why


def _pair_count(m, cand):
    """(how many pair variables the non-uniform formulation would have, before links leave any
    out; the step whose pairs take the count over PAIR_LIMIT, or None)."""
    n, over = 0, None
    for u in m.order:
        vs = m.consumers[u]
        if vs:
            n += len(cand[u]) * len({d for v in vs for d in cand[v]})
            if over is None and n > PAIR_LIMIT:
                over = u
    return n, over


def _optimal(setup, link, time_limit, mip_rel_gap, reduce):
    m = setup.model
    uniform = _is_uniform(link)
    cand = _reduce_candidates(setup) if (uniform and reduce) else dict(setup.cand)
    if not uniform:
        pairs, over = _pair_count(m, cand)
        if over is not None:    # said before anything is built: that would take seconds
            raise TooLarge(Problem(
                "optimal with this link function needs more than %d device-pair variables; "
                "pin more steps, or use --strategy edge" % PAIR_LIMIT, step=over),
                "%d device-pair variables here, more than its limit of %d" % (pairs, PAIR_LIMIT))
    # scipy and numpy load here, for an optimal problem that is built: a command that places
    # nothing or places otherwise starts without them, half a second sooner and 60 MB smaller
    import numpy as np
    from scipy import sparse
    from scipy.optimize import Bounds, LinearConstraint, milp
    t0 = time.perf_counter()

    # variables: x[s,d]
    xi = {}
    lb, ub, integ, cost = [], [], [], []

    def var(lo, hi, is_int, c):
        lb.append(lo)
        ub.append(hi)
        integ.append(1 if is_int else 0)
        cost.append(c)
        return len(lb) - 1

    for s in m.order:
        fixed = s in setup.fixed
        for d in cand[s]:
            xi[(s, d)] = var(1.0 if fixed else 0.0, 1.0, not fixed, 0.0)

    rows, cols, vals, rlo, rhi = [], [], [], [], []
    nrow = [0]

    def row(entries, lo, hi):
        r = nrow[0]
        for c, v in entries:
            rows.append(r)
            cols.append(c)
            vals.append(v)
        rlo.append(lo)
        rhi.append(hi)
        nrow[0] += 1

    for s in m.order:
        row([(xi[(s, d)], 1.0) for d in cand[s]], 1.0, 1.0)
    devs_used = sorted({d for s in m.order for d in cand[s]})
    cpu_terms = {d: [] for d in m.devices}       # capacity rows, filled below, emitted last
    mem_terms = {d: [] for d in m.devices}
    for (s, d), i in xi.items():
        if setup.cpu[s]:
            cpu_terms[d].append((i, setup.cpu[s]))
        if setup.mem[s]:
            mem_terms[d].append((i, setup.mem[s]))
    unit = getattr(link, "unit_cost", 1)

    for u in m.order:
        vs = m.consumers[u]
        traffic = m.flows[u].traffic
        if not vs:
            continue
        if uniform:
            if all(s in setup.fixed for s in [u] + vs):
                continue        # a constant: evaluate() counts it
            if len(vs) == 1:
                v = vs[0]
                y = var(0.0, 1.0, False, traffic * unit)
                for d in cand[u]:
                    e = [(y, 1.0), (xi[(u, d)], -1.0)]
                    if (v, d) in xi:
                        e.append((xi[(v, d)], 1.0))
                    row(e, 0.0, np.inf)
            else:
                targets = sorted({d for v in vs for d in cand[v]})
                for d in targets:
                    w = var(0.0, 1.0, False, traffic * unit)
                    for v in vs:
                        if (v, d) in xi:
                            e = [(w, 1.0), (xi[(v, d)], -1.0)]
                            if (u, d) in xi:
                                e.append((xi[(u, d)], 1.0))
                            row(e, 0.0, np.inf)
        else:
            zi = {}
            for a in cand[u]:
                for v in vs:
                    for b in cand[v]:
                        if a == b:
                            continue
                        r = link(a, b)
                        if r is None:
                            row([(xi[(u, a)], 1.0), (xi[(v, b)], 1.0)], -np.inf, 1.0)
                            continue
                        relays = route_devices(r[1])[1:-1]
                        c = r[0] * traffic
                        if c <= 0 and not relays:
                            continue
                        z = zi.get((a, b))
                        if z is None:
                            z = zi[(a, b)] = var(0.0, 1.0, False, c)
                            for g in relays:        # the gateways' relay work
                                cpu_terms[g].append((z, RELAY_CPU_PER_VALUE * m.flows[u].rate))
                                mem_terms[g].append((z, RELAY_MEMORY))
                        row([(z, 1.0), (xi[(u, a)], -1.0), (xi[(v, b)], -1.0)], -1.0, np.inf)

    for d in m.devices:
        free_here = any(s not in setup.fixed for s in m.order if (s, d) in xi)
        if free_here or len(cpu_terms[d]) > sum(1 for s in m.order if (s, d) in xi):
            if cpu_terms[d]:
                row(cpu_terms[d], -np.inf, setup.cap_cpu[d])
            if mem_terms[d]:
                row(mem_terms[d], -np.inf, setup.cap_mem[d])
    nvar = len(lb)
    A = sparse.csr_array((vals, (rows, cols)), shape=(nrow[0], nvar))
    build = time.perf_counter() - t0
    res = milp(np.array(cost), integrality=np.array(integ), bounds=Bounds(np.array(lb), np.array(ub)),
               constraints=[LinearConstraint(A, np.array(rlo), np.array(rhi))],
               options={"time_limit": time_limit, "mip_rel_gap": mip_rel_gap, "disp": False})
    seconds = time.perf_counter() - t0
    if res.x is None:
        if res.status == 2:
            raise PlacementError(_infeasible(setup))
        raise PlacementError(Problem("optimal: the solver stopped without a placement (%s) after %.1f s; "
                                     "raise time_limit or use --strategy edge" % (res.message, seconds)))
    device_of = {}
    for (s, d), i in xi.items():
        if res.x[i] > 0.5:
            device_of[s] = d
    solver = {"status": res.status, "message": res.message, "objective": float(res.fun),
              "gap": getattr(res, "mip_gap", None), "bound": getattr(res, "mip_dual_bound", None),
              "nodes": getattr(res, "mip_node_count", None), "seconds": seconds, "build_seconds": build,
              "variables": nvar, "binaries": int(sum(integ)), "constraints": nrow[0],
              "devices_in_model": len(devs_used), "time_limited": res.status == 1}
    return device_of, {}, solver


def _infeasible(setup):
    m = setup.model
    free_cpu = sum(setup.cpu[s] for s in setup.free)
    free_mem = sum(setup.mem[s] for s in setup.free)
    spare_cpu = sum(setup.cap_cpu[d] - setup.fixed_cpu[d] for d in m.devices)
    spare_mem = sum(setup.cap_mem[d] - setup.fixed_mem[d] for d in m.devices)
    biggest = max(setup.free, key=lambda s: setup.cpu[s]) if setup.free else None
    return Problem(
        "no placement fits the CPU and memory limits: steps to place need %s CPU units/s and %s "
        "bytes; the devices have %s units/s and %s bytes to spare (at %d%% CPU), not all of it where "
        "the steps can run%s" % (_amount(free_cpu), _amount(free_mem), _amount(spare_cpu), _amount(spare_mem),
                                 round(100 * setup.cpu_headroom),
                                 "; the largest is step %r (%s units/s)" % (biggest, _amount(setup.cpu[biggest]))
                                  if biggest else ""), step=biggest)
