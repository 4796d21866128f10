"""Metrics snapshots from plain `status` replies, for devices (or controllers) without the metrics
poller: per step values in/out, per pipe values, frames, reconnects and queue, MicroPython's free
heap. Pipe steps are named "out:<edge>" / "in:<edge>" by the placement (placement.py), which is
how their edge is known. What status does not carry (loop busy time, step time, bytes, round-trip
times, latency) is simply absent from these snapshots; the views show "-" for it."""
import time


def hop_peers(placement):
    """{edge or hop id: (sending device, receiving device)} of a placement's pipes (hop ids
    "<edge>@N" for routes through relays, as placement.py names them)."""
    out = {}
    for p in getattr(placement, "pipes", None) or ():
        hops = list(zip(p.route, p.route[1:]))
        for i, (a, b) in enumerate(hops):
            out[p.edge if len(hops) == 1 else "%s@%d" % (p.edge, i + 1)] = (a, b)
    return out


def metrics_from_status(device, st, interp=None, peers=None, pipe_steps=False):
    """The metrics map M (docs/observability.md) that a status reply `st` of `device` implies;
    peers: hop_peers() of the placement, to name each pipe end's peer. pipe_steps: also count
    the pipe ends as steps ("in:<edge>", "out:<edge>" in/out), as a device's metrics reply does."""
    peers = peers or {}
    m = {"device": device, "interp": interp or ("micropython" if "mem_free" in st else "cpython"),
         "steps": {}, "pipes": {}, "mem": {}}
    if isinstance(st.get("mem_free"), int):
        m["mem"]["heap_free"] = st["mem_free"]
    steps = ((st.get("assignment") or {}).get("steps")) or {}
    for sid, s in steps.items():
        if not isinstance(s, dict) or "error" in s:
            continue
        if pipe_steps or not sid.startswith(("out:", "in:")):
            m["steps"][sid] = {"in": s.get("in", 0), "out": s.get("out", 0)}
        if sid.startswith("out:"):
            m["pipes"][sid[4:]] = {"dir": "out", "peer": peers.get(sid[4:], (None, None))[1], "values": s.get("out", 0),
                                   "reconnects": max(0, s.get("connects", 1) - 1),
                                   "queue": s.get("pending", 0) + s.get("unshipped", 0)}
        elif sid.startswith("in:"):
            m["pipes"][sid[3:]] = {"dir": "in", "peer": peers.get(sid[3:], (None, None))[0], "values": s.get("in", 0),
                                   "frames": s.get("frames", 0)}
    return m


class StatusPoller:
    """Hands out snapshots built from the Supervisor's latest status replies (it asks every device
    for its status once per `interval` while watching). poll() is called from the controller's
    loop; each new reply becomes one snapshot for every subscriber."""

    def __init__(self, sup, interps=None, clock=time.time):
        self.sup = sup
        self.interps = dict(interps or {})
        self.clock = clock
        self.subscribers = []
        self.seen = {}
        self._peers = (None, {})

    def subscribe(self, fn):
        self.subscribers.append(fn)

    def poll(self):
        pl = getattr(self.sup, "placement", None)
        if self._peers[0] is not pl:
            self._peers = (pl, hop_peers(pl))
        for dev, st in list(self.sup.last_status.items()):
            if self.seen.get(dev) is st or not isinstance(st, dict):
                continue
            self.seen[dev] = st
            snap = {"t": self.clock(), "device": dev, "metrics": metrics_from_status(dev, st, self.interps.get(dev), self._peers[1]),
                    "offset": None, "offset_bound": None}
            for fn in self.subscribers:
                fn(snap)
