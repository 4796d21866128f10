"""One observed run: the store, its file, the poller that feeds it and the views that read it.

`sensormesh up`, `status --watch` and `top` make one Observation, attach() it to their Supervisor
once it knows the placement, and call tick() from the controller's loop (several times a second);
tick() asks the poller for new snapshots and, under `up`, prints a line of rates every few seconds.
"""
import time

from sensormesh.controller.observe import files
from sensormesh.controller.observe.store import Store

LINE_EVERY = 5.0     # seconds between two lines of rates under `up`


def placement_info(model, placement):
    """What the views draw: devices, which step runs where, and each pipe's route (relays)."""
    info = {"devices": sorted(model.devices),
            "interp": {n: d.interpreter for n, d in model.devices.items()},
            "steps": {sid: {"type": s.type, "inputs": list(dict.fromkeys(s.inputs))} for sid, s in model.steps.items()},
            "order": list(model.order), "device_of": {}, "pipes": [], "strategy": None}
    if placement is not None:
        info["device_of"] = dict(placement.device_of)
        info["strategy"] = placement.strategy
        info["pipes"] = [{"edge": p.edge, "producer": p.producer, "src": p.src, "dst": p.dst,
                          "consumers": list(p.consumers), "route": list(p.route)} for p in placement.pipes]
    return info


def learned_placement(model, store):
    """{"device_of", "pipes"} of a pipeline that runs already, from the steps and pipe ends the
    devices report to the store (a pipe "<edge>" or its hops "<edge>@1", "<edge>@2", ... give
    the route), or None while no device has reported one of the pipeline's steps."""
    with store.lock:
        steps = dict(store.steps)
        ends = dict(store.pipes)
    device_of = {sid: dev for sid, dev in steps.items() if sid in model.steps}
    if not device_of:
        return None
    hops = {}          # edge -> {hop number: [sender, receiver]}
    for (dev, eid), p in ends.items():
        edge, _, k = eid.partition("@")
        try:
            k = int(k) if k else 1
        except ValueError:
            continue
        hop = hops.setdefault(edge, {}).setdefault(k, [None, None])
        hop[0 if p.get("dir") == "out" else 1] = dev
    readers = {}
    for sid in model.order:
        for i in dict.fromkeys(model.steps[sid].inputs):
            readers.setdefault(i, []).append(sid)
    pipes = []
    for edge in sorted(hops):
        producer, _, dst = edge.rpartition("->")
        if producer not in model.steps:
            continue
        route = []
        for k in sorted(hops[edge]):
            a, b = hops[edge][k]
            if not route:
                route.append(a or device_of.get(producer))
            route.append(b)
        route[-1] = route[-1] or dst
        consumers = [sid for sid in readers.get(producer, ()) if device_of.get(sid) == dst]
        pipes.append({"edge": edge, "producer": producer, "src": route[0], "dst": dst,
                      "consumers": consumers, "route": route})
    return {"device_of": device_of, "pipes": pipes, "strategy": None}


def make_poller(sup, model):
    """The poller that feeds the store for this Supervisor: every device's metrics and clock
    (controller/metrics_poll.py)."""
    from sensormesh.controller.metrics_poll import MetricsPoller
    return MetricsPoller(sup)


class Observation:
    """out: a .sqlite/.db/.csv path, None for .sensormesh/metrics-<pipeline>-<time>.sqlite, or
    False for no file. echo(text): where the line of rates goes (None: no line)."""

    def __init__(self, model, out=None, echo=None, line_every=LINE_EVERY, ring=None):
        self.model = model
        self.path = None
        writer = None
        if out is not False:
            self.path = out or files.default_path(model.name)
            writer = files.open_writer(self.path)
        self.store = Store(writer, **({"ring": ring} if ring else {}))
        self.echo = echo
        self.line_every = line_every
        self.next_line = time.monotonic() + line_every
        self.sup = None
        self.poller = None
        self.fallback = None
        self._placement = None
        self._learned = None
        self._seen = None
        self.names = {sid: (s.params or {}).get("name") or sid for sid, s in model.steps.items()}
        # what each sink's values measure (controller/units.py), shown beside its latest value
        from sensormesh.controller import units
        self.store.sink_units = {self.names[sid]: units.label(getattr(model, "units", {}).get(sid))
                                 for sid in model.steps if getattr(model, "units", {}).get(sid)}
        self.store.set_info(pipeline=model.name, started=time.time(), file=self.path or "",
                            placement=placement_info(model, None))

    def attach(self, sup):
        self.sup = sup
        self.poller = make_poller(sup, self.model)
        self.poller.subscribe(self.store.feed)
        self.poller.start()
        # devices that do not answer {"metrics"} (an older version): snapshots from their status
        from sensormesh.controller.observe.fromstatus import StatusPoller
        self.fallback = StatusPoller(sup, {n: d.interpreter for n, d in self.model.devices.items()})
        self.fallback.subscribe(self._from_status)
        # a re-route or recovery that stops a device to deploy it again resets its counts: its
        # last metrics are asked just before, and the stop's final counts recorded after, so the
        # values it counted since its last poll are not lost to the totals (and an experiment's
        # figures) when the next epoch counts from zero
        for name, fn in (("on_stopping", self._stopping), ("on_stopped", self._stopped)):
            lst = getattr(sup, name, None)
            if isinstance(lst, list):
                lst.append(fn)
        self._placement_changed()

    def _from_status(self, snap):
        dev = snap["device"]
        if dev not in getattr(self.poller, "latest", {}) and dev in getattr(self.poller, "errors", {}):
            self.store.feed(snap)

    def _stopping(self, dev):
        if self.poller is not None:
            self.poller.ask_now(dev)

    def _stopped(self, dev, final):
        """A device stopped for a redeployment: its final counts of the epoch that ended, as a
        snapshot after every other of that epoch (its metrics asked just before came first)."""
        if not isinstance(final, dict) or self.poller is None:
            return
        from sensormesh.controller.observe.fromstatus import hop_peers, metrics_from_status
        d = self.model.devices.get(dev)
        m = metrics_from_status(dev, {"assignment": final}, d.interpreter if d is not None else None,
                                hop_peers(getattr(self.sup, "placement", None)), pipe_steps=True)
        t = self.poller.wall + time.monotonic()
        last = (self.poller.latest.get(dev) or {}).get("t")
        if isinstance(last, (int, float)) and t <= last:
            t = last + 1e-6
        self.store.feed({"t": t, "device": dev, "metrics": m, "offset": None, "offset_bound": None})

    def detach(self):
        """No more polling (the devices are being stopped)."""
        if self.poller is not None:
            self.poller.stop()
        for name, fn in (("on_stopping", self._stopping), ("on_stopped", self._stopped)):
            lst = getattr(self.sup, name, None)
            if isinstance(lst, list) and fn in lst:
                lst.remove(fn)

    def _placement_changed(self):
        pl = getattr(self.sup, "placement", None)
        if pl is not None and pl is not self._placement:
            self._placement = pl
            self.store.set_info(placement=placement_info(self.model, pl))
        elif pl is None and self.sup is not None:
            # `top` and `status --watch` did not place the pipeline: where its steps run and the
            # pipes' routes are learned from what the devices report, for the views and the file
            with self.store.lock:
                seen = (dict(self.store.steps), {k: dict(v) for k, v in self.store.pipes.items()})
            if seen == self._seen:
                return                      # nothing new reported: the same placement
            self._seen = seen
            learned = learned_placement(self.model, self.store)
            if learned is not None and learned != self._learned:
                self._learned = learned
                info = placement_info(self.model, None)
                info.update(learned)
                self.store.set_info(placement=info)

    def settle(self, timeout=None):
        """Ask every watched device's metrics at once and wait (the loop turning) until each has
        answered or failed, at most `timeout` s (the supervisor's): the first round of `top` and
        `status --watch` then holds every device, not only those of the first of the poller's slots."""
        if self.poller is None or not hasattr(self.poller, "ask_all_now"):
            return
        self.poller.ask_all_now()
        deadline = time.monotonic() + (timeout if timeout is not None else getattr(self.sup, "timeout", 5.0))
        while self.poller.pending() and time.monotonic() < deadline:
            self.sup.loop.run_once(20)
            self.sup._expire()
        self.fallback.poll()

    def tick(self):
        """Called from the controller's loop: take new snapshots, print the line when it is due."""
        if self.poller is None:
            return False
        self.poller.poll()
        self.fallback.poll()
        self._placement_changed()
        self._health()
        if self.echo is not None and time.monotonic() >= self.next_line:
            self.next_line = time.monotonic() + self.line_every
            from sensormesh.controller.observe.top import rates_line
            self.echo(rates_line(self.store.view()))
        return False

    def _health(self):
        """Mark in the store the devices the supervisor counts as failed or cut off (and clear
        the mark once they are back), so no view shows a dead device's last rates as current."""
        health = getattr(self.sup, "health", None)
        if health is None:
            return
        for dev in self.model.devices:
            why = None
            if health.of(dev) == "cut-off":
                why = "cut off" + (": %s" % health.why[dev] if health.why.get(dev) else "")
            elif health.down(dev):
                # why the supervisor counts it as failed, else the poller's last error for it
                # (once the device counts as failed the poller stops asking it)
                err = health.why.get(dev) or getattr(self.poller, "errors", {}).get(dev) or ""
                if err.startswith(dev + ": "):
                    err = err[len(dev) + 2:]
                why = "down: " + (err if err and "no control route" not in err else "it does not answer")
            self.store.set_down(dev, why)

    def deliver(self, device, step, values):
        self.store.sink_values(self.names.get(step, step), values)

    def event(self, text):
        self.store.event(text)

    def close(self):
        self.store.close()
