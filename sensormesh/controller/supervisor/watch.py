"""Watching: status polls, suspicions and their confirmation, while deliveries come in.

`watch()` runs the loop and, between reads, the periodic tasks in `self.tasks`: the poll
(one slot of the status interval at a time: detector.py spreads the devices over the interval,
counts missed polls and adapts the interval) and the recovery probe of failed devices
(recover.py). A device becomes a suspect (health.py) when its control session closes, when a
gateway says it cannot reach it, when a poll fails outright, or after MISSES polls in a row
without an answer. `_confirm_suspects` probes the suspects directly (a fresh `hello`, gateways
first, with the detector's longer probe deadline) and hands the silent ones to re-placement
(reroute.py).

To watch something more (metrics, another poll), add a `Periodic` to `self.tasks`; it runs in
the same loop, between reads, never while a change is being handled.
"""
from __future__ import annotations

import time
from typing import Callable

from sensormesh.controller.deliveries import Deliveries
from sensormesh.controller.deploy import dispatch
from sensormesh.controller.supervisor.detector import Detector


class Periodic:
    """A task watch() runs every `every` seconds (first after one period) while when() holds."""

    __slots__ = ("name", "every", "run", "when", "next")

    def __init__(self, name, every, run, when=None):
        self.name = name
        self.every = every          # seconds, or a callable returning them (read at each run)
        self.run = run
        self.when = when
        self.next = None

    def period(self):
        return self.every() if callable(self.every) else self.every

    def due(self, now):
        if self.next is None:
            self.next = now + self.period()
        return now >= self.next and (self.when is None or self.when())

    def done(self, now):
        self.next = now + self.period()


class Watch:
    """Pings, suspicions and the watch loop of a Supervisor (mixed into it).

    State it owns (set up by `_init_watch`): tasks, _pings, _on_deliver, _on_event, pending,
    deliveries."""

    def _init_watch(self):
        self._pings = {}          # device -> its last status poll (a Request)
        self._on_deliver = None
        self._on_event = None
        self.pending = []         # (device, message) delivered before watch() had a callback
        self.elsewhere = {}       # device -> what it reports instead of our running pipeline
        self.refusing = {}        # device -> the error it last answered a status poll with
        self._poll_epoch = {}     # device -> the epoch it had been given when its poll left
        self.stopped_here = set()  # devices this supervisor stopped to redeploy, until seen running again
        self.deliveries = Deliveries()   # callback values taken once, confirmed to the devices
        self.detector = Detector(self.interval, self.timeout, **self._detector_options)
        self.tasks = [
            Periodic("ping", self.detector.tick, self._ping),
            Periodic("recover", lambda: self.recover_every, self._probe_failed,
                     when=lambda: bool(self.health.failed)),
        ]

    def interval_now(self):
        """Seconds between two status polls of a device, as the detector has adapted them."""
        return self.detector.interval

    def watch(self, on_deliver: Callable[[str, str, list], None], until: Callable[[], bool],
              timeout: float | None = None, on_event: Callable[[str], None] | None = None,
              cut_short: Callable[[], str | None] | None = None) -> None:
        """Read deliveries and watch the devices until until() is true (or timeout seconds pass).

        on_deliver(device, step, values): callback-sink values. on_event(text): failures, the
        affected area, re-routes and the values they lost (also kept in self.events).
        cut_short(): why the run ends now (Ctrl-C, its duration) or None; the watch ends when it
        says so, and it is asked while a re-route or recovery waits for devices too, which then
        stops at once (until() is asked only between two turns of the watch: it may be slow or
        do work of its own)."""
        if on_event is None:
            on_event = lambda text: on_deliver("", "", [{"error": text}])  # noqa: E731
        self._on_deliver, self._on_event = on_deliver, on_event
        deadline = None if timeout is None else time.monotonic() + timeout

        def ending():
            if deadline is not None and time.monotonic() >= deadline:
                return "timeout"
            return cut_short() if cut_short is not None else None
        self.cut_short = ending
        try:
            for dev, m in self.pending:
                dispatch(dev, m, on_deliver, on_event)
            self.pending = []
            for t in self.tasks:
                t.next = None
                t.due(time.monotonic())
            while not until():
                now = time.monotonic()
                if ending():
                    return
                for t in self.tasks:
                    if not self.health.busy and t.due(now):
                        t.run()
                        t.done(time.monotonic())
                wait = min([t.next - now for t in self.tasks if t.next is not None and t.next > now] + [0.05])
                if deadline is not None:
                    wait = min(wait, deadline - now)
                self.loop.run_once(max(0, int(wait * 1000)))
                self._expire()
                self._check_pings(time.monotonic())
                if self.health.has_suspects() and not self.health.busy:
                    self._confirm_suspects()
                if self.unsubscribed and not self.health.busy:
                    self._resubscribe()
        finally:
            self._on_deliver, self._on_event = None, None
            self.cut_short = None

    # -- pings ---------------------------------------------------------------------------------

    def _watched(self):
        return [d for d in self.control_devices(sorted(self.deployed)) if not self.health.down(d)]

    def _ping(self):
        """One slot of the status interval: poll the devices in it (detector.py)."""
        det = self.detector
        if det.spread.slot == 0 or not det.spread.members:   # the watched devices, once a round
            det.watch(self._watched())
        now = time.monotonic()
        det.adapt(now, time.process_time())
        for d in det.due(now):
            if self.health.down(d):
                continue
            self._poll_epoch[d] = (self.assignments.get(d) or {}).get("epoch")
            req = self._send(d, {"status": {}}, ("status",))
            det.sent(d, now)
            self._pings[d] = req
            if req.done:
                self._poll_done(d, req)
            else:
                req.on_done = lambda r, d=d: self._poll_done(d, r)

    def _poll_done(self, d, req):
        if self._pings.get(d) is req:
            del self._pings[d]
        if req.error is None or req.code == "busy":
            self.detector.answered(d, req.t_done)   # (busy: it answered, it had no room for this poll)
            if req.error is None:
                self.refusing.pop(d, None)
                self._check_running(d, req.reply, self._poll_epoch.pop(d, None))
        elif req.answered:
            # it answered its poll with an error object: up (a sign of life, not a suspicion);
            # said once, and again when what it answers changes
            self.detector.answered(d, req.t_done)
            said = req.error[len(d) + 2:] if req.error.startswith(d + ": ") else req.error
            if self.refusing.get(d) != (req.code, said):
                self.refusing[d] = (req.code, said)
                self._event("%s is up, but refused its status request: %s (code %s)"
                            % (d, said, req.code if req.code is not None else "none given"))
        elif req.link_lost:
            self.detector.forget(d)          # a closed link suspects its own end (control.py)
        elif not req.expired:
            self.detector.forget(d)          # refused, unreachable, cannot connect: a suspect now
            self._suspect(d, req.error)
        # expired: the detector has counted it as a miss already (its deadline is shorter)

    def _check_running(self, d, reply, epoch):
        """A status answer from d, polled while it had been given `epoch`: one that says the
        pipeline is stopped there, or that d runs another pipeline or epoch, means someone else
        stopped or replaced it (`sensormesh stop FILE`, a `deploy`, from another terminal). It
        is noted in self.elsewhere (once per device) and reported; the watcher decides what
        to do (`up` ends). Not while the supervisor itself stops and deploys devices, nor for a
        device whose epoch changed since the poll left (its own redeployment) or that restarted
        (it runs nothing at all: the failure path handles it)."""
        asg = self.assignments.get(d)
        if self._on_event is None or self.health.busy or d not in self.deployed or asg is None \
                or self.health.down(d) or d in self.elsewhere or epoch is None or asg.get("epoch") != epoch:
            return
        a = ((reply or {}).get("status") or {}).get("assignment")
        if not isinstance(a, dict) or a.get("pipeline") is None:
            return
        ours = (asg.get("pipeline"), epoch)
        theirs = (a.get("pipeline"), a.get("epoch"))
        if d in self.stopped_here:      # stopped by this supervisor (a redeployment left unfinished)
            if theirs == ours and a.get("state") == "running":
                self.stopped_here.discard(d)
            return
        if theirs == ours:
            if a.get("state") != "empty":
                return        # running (or, for a moment, deployed and not yet started)
            why = "%s reports pipeline %s stopped" % (d, ours[0])
        elif a.get("state") == "empty":
            why = "%s reports pipeline %s (epoch %s) stopped instead of %s (epoch %s)" % (
                d, theirs[0], theirs[1], ours[0], ours[1])
        else:
            why = "%s runs pipeline %s (epoch %s), deployed from elsewhere, instead of %s (epoch %s)" % (
                d, theirs[0], theirs[1], ours[0], ours[1])
        self.elsewhere[d] = why
        self._event("stopped from elsewhere: " + why)

    def _check_pings(self, now):
        """Polls past the detector's deadline count as misses; enough in a row make a suspect."""
        for d, n in self.detector.turn(now).items():
            if not self.health.down(d):
                self._suspect(d, "no answer from %s within %gs to %d status polls in a row"
                              % (d, self.detector.deadline(), n))

    # -- suspicions ------------------------------------------------------------------------------

    def _suspect(self, dev, why):
        """A report against dev: while watching, a deployed device (or a gateway of one) becomes a
        suspect; outside watch() the caller handles the error itself."""
        if self.health.down(dev):
            return
        if self._on_event is not None and (dev in self.deployed or self._forwards_for_deployed(dev)):
            self.health.suspect(dev, why)

    def _forwards_for_deployed(self, dev):
        for d in self.deployed:
            p = self.paths.get(d)
            if p is not None and p.route is not None and dev in p.route.relays:
                return True
        return False

    def _confirm_suspects(self):
        """Probe the suspects directly, all of one depth at once (gateways first), with the
        detector's probe deadline; the ones that stay silent failed."""
        with self.health.handling():
            for _ in range(len(self.model.devices) + 1):
                suspects = self.health.take_suspects()
                if not suspects:
                    return
                probe = self.detector.probe_deadline()
                # the gateways on a suspect's control route are probed too (first): polls are
                # spread, so a silent gateway's devices may run out of polls before it does
                checks = dict(suspects)
                for d in suspects:
                    p = self.paths.get(d)
                    for g in (p.route.relays if p is not None and p.route is not None else ()):
                        if g not in checks and g in self.paths and not self.health.down(g):
                            checks[g] = None
                depth = lambda d: len(self.paths[d].targets) if d in self.paths else 0  # noqa: E731
                down = {}
                for level in sorted({depth(d) for d in checks}):
                    batch = []
                    for d in sorted(checks):
                        if depth(d) != level:
                            continue
                        p = self.paths.get(d)
                        if p is not None and p.route is not None and set(p.route.relays) & set(down):
                            if checks[d] is not None:
                                self.health.dismiss(d)    # behind a gateway that failed: handled by its re-route
                        else:
                            batch.append(d)
                    silent = self._hello(batch, probe) if batch else {}
                    for d in batch:
                        if d in silent:
                            down[d] = checks[d] or "no answer from %s within %gs to a probe (a device behind " \
                                "it missed its status polls)" % (d, probe)
                        elif checks[d] is not None:
                            self.health.answered(d)
                            self.detector.forget(d)
                            self._event("%s answered again after %s" % (d, suspects[d]))
                if down:
                    for d, why in down.items():
                        self._event("%s failed: %s" % (d, why))
                    self._on_failure(down)
