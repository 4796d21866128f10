"""Watching: pings, suspicions and their second check, while deliveries come in.

`watch()` runs the loop and, between reads, the periodic tasks in `self.tasks`: the ping
(`status` to every watched device every `interval` s) and the recovery probe of failed devices
(recover.py). A failed ping, a closed control session or a gateway's "unreachable" makes a
device a suspect (health.py); `_confirm_suspects` checks each suspect once more, gateways
first, and hands the silent ones to re-placement (reroute.py).

To watch something more (metrics, another poll), add a `Periodic` to `self.tasks`; it runs in
the same loop, between reads, never while a change is being handled.
"""
from __future__ import annotations

import time
from typing import Callable

from sensormesh.controller.deliveries import Deliveries
from sensormesh.controller.deploy import dispatch


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
        self._pings = {}          # device -> outstanding status Request
        self._on_deliver = None
        self._on_event = None
        self.pending = []         # (device, message) delivered before watch() had a callback
        self.deliveries = Deliveries()   # callback values taken once, confirmed to the devices
        self.tasks = [
            Periodic("ping", lambda: self.interval, self._ping),
            Periodic("recover", lambda: self.recover_every, self._probe_failed,
                     when=lambda: bool(self.health.failed)),
        ]

    def watch(self, on_deliver: Callable[[str, str, list], None], until: Callable[[], bool],
              timeout: float | None = None, on_event: Callable[[str], None] | None = None) -> None:
        """Read deliveries and watch the devices until until() is true (or timeout seconds pass).

        on_deliver(device, step, values): callback-sink values. on_event(text): failures, the
        affected area, re-routes and the values they lost (also kept in self.events)."""
        if on_event is None:
            on_event = lambda text: on_deliver("", "", [{"error": text}])  # noqa: E731
        self._on_deliver, self._on_event = on_deliver, on_event
        try:
            for dev, m in self.pending:
                dispatch(dev, m, on_deliver, on_event)
            self.pending = []
            deadline = None if timeout is None else time.monotonic() + timeout
            for t in self.tasks:
                t.next = None
                t.due(time.monotonic())
            while not until():
                now = time.monotonic()
                if deadline is not None and now >= deadline:
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
                self._check_pings()
                if self.health.has_suspects() and not self.health.busy:
                    self._confirm_suspects()
        finally:
            self._on_deliver, self._on_event = None, None

    # -- pings ---------------------------------------------------------------------------------

    def _watched(self):
        return [d for d in self.control_devices(sorted(self.deployed)) if not self.health.down(d)]

    def _ping(self):
        for d in self._watched():
            r = self._pings.get(d)
            if r is None or r.done:
                self._pings[d] = self._send(d, {"status": {}}, ("status",))

    def _check_pings(self):
        for d, r in list(self._pings.items()):
            if r.done:
                del self._pings[d]
                if r.error is not None and not r.link_lost:   # a closed link suspects its own end
                    self._suspect(d, r.error)

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
        """Check the suspects once more (gateways first); the ones that stay silent failed."""
        with self.health.handling():
            for _ in range(len(self.model.devices) + 1):
                suspects = self.health.take_suspects()
                if not suspects:
                    return
                order = sorted(suspects, key=lambda d: len(self.paths[d].targets) if d in self.paths else 0)
                down = {}
                for d in order:
                    p = self.paths.get(d)
                    if p is not None and p.route is not None and set(p.route.relays) & set(down):
                        self.health.dismiss(d)    # behind a gateway that failed: handled by its re-route
                        continue
                    if self._hello([d]):
                        down[d] = suspects[d]
                    else:
                        self.health.answered(d)
                        self._event("%s answered again after %s" % (d, suspects[d]))
                if down:
                    for d, why in down.items():
                        self._event("%s failed: %s" % (d, why))
                    self._on_failure(down)
