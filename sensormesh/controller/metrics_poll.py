"""The controller's metrics poller: every device's metrics and clock, while a pipeline runs.

    poller = MetricsPoller(sup, every=1.0)      # sup: a deployed Supervisor
    poller.subscribe(fn)                         # fn(event) for every snapshot and latency sample
    poller.start()                               # a task of sup.watch() from now on
    ...
    poller.stop()

It is one of the supervisor's periodic tasks (supervisor/watch.py), so it runs while the
supervisor watches (`sensormesh up`, `status --watch`), never while a failure is being handled,
along the same control paths (direct, through gateways, registered, keyed or not). Per device it
keeps a clock estimate (clocksync.py: a round of `{"clock"}` exchanges at its first poll and every
`ClockSync.every` seconds) and asks `{"metrics": {}}` once per period. The period is `every`
seconds, or longer with many devices (at most MAX_RATE polls a second, as for status polls), and
the devices are spread over it like the status polls (supervisor/detector.py: one slot of the
period at a time, never all devices at once). Subscribers get
plain dicts (docs/observability.md):

    {"kind": "metrics", "t": s, "device": name, "metrics": M, "offset": s, "offset_bound": s}
    {"kind": "latency", "t": s, "device": sink device, "sink": step, "origin": source device,
     "pipeline": name, "latency_s": s, "bound_s": s}

"t" is controller time as Unix seconds (the controller's monotonic clock, anchored to its wall
clock once, when the poller is made, so it never jumps); a metrics snapshot's "t" is the device's
"tick_us" converted (or the reply's arrival before the first clock estimate). Latency samples
whose origin device has no clock estimate yet wait (at most LATENCY_WAIT seconds, then they
count in `unconverted`).
"""
from __future__ import annotations

import time
from typing import Callable

from sensormesh.controller.clocksync import ClockSync
from sensormesh.controller.supervisor.detector import MAX_RATE, Slots
from sensormesh.controller.supervisor.watch import Periodic

LATENCY_WAIT = 10.0
MAX_WAITING = 10000
CLOCK_SLACK = 0.05     # s: how far outside [request sent, reply came] a converted tick may fall


class MetricsPoller:
    def __init__(self, sup, every: float = 1.0, clock: ClockSync | None = None):
        self.sup = sup
        self.every = float(every)
        self.clock = clock or ClockSync()
        self.latest: dict[str, dict] = {}        # device -> its last metrics snapshot (the event)
        self.errors: dict[str, str] = {}          # device -> why its last poll failed
        self.unconverted = 0                      # latency samples dropped for want of a clock
        self.polls = 0
        self._subs: list[Callable[[dict], None]] = []
        self._asked: dict[str, object] = {}       # device -> outstanding metrics Request
        self._syncing: dict[str, int] = {}        # device -> exchanges left in its clock round
        self._synced_at: dict[str, float] = {}
        self._waiting: list[tuple[float, str, dict, list]] = []   # latency samples without a clock yet
        self.running = False
        self.slots = Slots()                      # devices spread over the period
        self.task = Periodic("metrics", lambda: self.period() / self.slots.count, self.poll)
        self._next = None                         # when the next slot is due
        self.wall = time.time() - time.monotonic()   # monotonic -> Unix seconds

    # -- subscribers ----------------------------------------------------------------------------
    def subscribe(self, fn: Callable[[dict], None]) -> Callable[[], None]:
        """fn(event) for every metrics snapshot and latency sample; returns an unsubscribe."""
        self._subs.append(fn)

        def unsubscribe():
            if fn in self._subs:
                self._subs.remove(fn)
        return unsubscribe

    def _publish(self, event):
        for fn in list(self._subs):
            try:
                fn(event)
            except Exception as e:   # a broken view must not stop the poller
                self.errors["subscriber"] = "%s: %s" % (type(e).__name__, e)

    # -- running --------------------------------------------------------------------------------
    def start(self):
        """Polls from now on, one slot of the period at a time, while the supervisor watches."""
        self.running = True
        self._next = None
        if self.task not in self.sup.tasks:
            self.sup.tasks.append(self.task)
        self.poll()

    def stop(self):
        self.running = False
        if self.task in self.sup.tasks:
            self.sup.tasks.remove(self.task)

    def period(self):
        """Seconds in which every device is polled once: `every`, or longer for many devices."""
        return max(self.every, len(self.slots.members) / MAX_RATE)

    def poll(self):
        """Poll the slots that came due since the last call (at most one period's worth). The
        supervisor's watch() calls it (a task); loops of their own (`status --watch`, `top`)
        call it as often as they like."""
        now = time.monotonic()
        tick = self.period() / self.slots.count
        if self._next is None:
            self._next = now
        n = 0
        while now >= self._next - 1e-6 and n < self.slots.count:
            self._tick()
            self._next += tick
            n += 1
        if now >= self._next:             # behind by more than a period: on from now
            self._next = now + tick

    def devices(self) -> list[str]:
        """The devices the supervisor watches; all it has a control path to when it deployed
        nothing itself (`status --watch`)."""
        if self.sup.deployed:
            return list(self.sup._watched())
        return [d for d in self.sup.control_devices(sorted(self.sup.paths)) if not self.sup.health.down(d)]

    def _tick(self):
        """One slot: its devices get their metrics request (and a clock round when due)."""
        if not self.running or self.sup.health.busy:
            return
        try:
            now = time.monotonic()
            if self.slots.slot == 0:        # a new round: the devices now
                for d in self.slots.deal(self.devices()):
                    self._asked.pop(d, None)
            for d in self.slots.next_group():
                if d not in self._syncing and now - self._synced_at.get(d, -1e9) >= self.clock.every:
                    self._syncing[d] = self.clock.rounds
                    self._synced_at[d] = now
                    self._clock_exchange(d)
                if d not in self._asked:
                    self._ask(d)
            if self.slots.slot == 0:
                self.polls += 1             # rounds completed
        except Exception as e:   # never let the supervisor's watch see it
            self.errors["poller"] = "%s: %s" % (type(e).__name__, e)

    def _request(self, device, msg, keys, done):
        req = self.sup._send(device, msg, keys)
        if req.done:
            done(req)
        else:
            req.on_done = done
        return req

    # -- clock ----------------------------------------------------------------------------------
    def _clock_exchange(self, device):
        t0 = time.monotonic()

        def done(req):
            left = self._syncing.get(device, 0) - 1
            if req.error is None:
                try:
                    self.clock.add(device, t0, req.reply.get("clock"), req.t_done)
                except ValueError as e:
                    self.errors[device] = str(e)
                    left = 0
            else:
                self.errors[device] = req.error
                left = 0
            if left > 0 and self.running:
                self._syncing[device] = left
                self._clock_exchange(device)
            else:
                self._syncing.pop(device, None)
                self.clock.finish_round(device)
        self._request(device, {"clock": {"t0": int(t0 * 1e6)}}, ("clock",), done)

    def sync_now(self, device, timeout=None):
        """One clock round with one device, run to the end (the loop turns while it waits)."""
        self._synced_at[device] = time.monotonic()
        self._syncing[device] = self.clock.rounds
        self.running = True
        self._clock_exchange(device)
        deadline = time.monotonic() + (timeout or self.sup.timeout)
        while device in self._syncing and time.monotonic() < deadline:
            self.sup.loop.run_once(20)
            self.sup._expire()
        return self.clock.estimates.get(device)

    # -- metrics --------------------------------------------------------------------------------
    def ask_now(self, device):
        """Ask device's metrics now, outside its slot: a redeployment is about to stop it, and its
        counts of the epoch that ends would otherwise be known only up to its last poll."""
        if self.running:
            self._ask(device)

    def ask_all_now(self):
        """Ask every watched device that has no snapshot yet for its metrics now, outside the
        slots (the first view of `top` and `status --watch` then shows every device, not only the
        first slot's), and begin the next round a whole period from now, so that no device is
        asked again sooner and no rate spans less than a period."""
        if self.running:
            for d in self.devices():
                if d not in self._asked and d not in self.latest:
                    self._ask(d)
            self.slots.slot = 0
            self._next = time.monotonic() + self.period()

    def pending(self) -> bool:
        """True while a metrics request is out."""
        return bool(self._asked)

    def _ask(self, device):
        t_sent = time.monotonic()

        def done(req):
            self._asked.pop(device, None)
            if req.error is not None:
                self.errors[device] = req.error
                return
            m = req.reply.get("metrics") if isinstance(req.reply, dict) else None
            if not isinstance(m, dict):
                self.errors[device] = "metrics reply without a metrics object: %r" % (req.reply,)
                return
            self.errors.pop(device, None)
            self._snapshot(device, m, req.t_done, t_sent)
        self._asked[device] = self._request(device, {"metrics": {}}, ("metrics",), done)

    def _snapshot(self, device, m, t_reply, t_sent=None):
        off = self.clock.offset(device)
        t = t_reply
        if off is not None and isinstance(m.get("tick_us"), int):
            t, b = self.clock.to_controller_time(device, m["tick_us"], near=t_reply)
            lo = (t_sent if t_sent is not None else t_reply - self.sup.timeout) - b - CLOCK_SLACK
            if not lo <= t <= t_reply + b + CLOCK_SLACK:
                # the device read its clock while the request was out, so its estimate is wrong:
                # the device restarted (a board's tick clock begins again at 0) or its clock
                # jumped. Forget it and measure again now; latency samples wait for the new one.
                self.clock.forget(device)
                self.errors[device] = ("%s: its clock moved by %.3f s against the estimate (restarted?); "
                                       "measuring it again" % (device, t - t_reply))
                if device not in self._syncing:
                    self._syncing[device] = self.clock.rounds
                    self._synced_at[device] = time.monotonic()
                    self._clock_exchange(device)
                off, t = None, t_reply
        ev = {"kind": "metrics", "t": t + self.wall, "device": device, "metrics": m,
              "offset": off[0] / 1e6 if off else None, "offset_bound": off[1] / 1e6 if off else None}
        self.latest[device] = ev
        self._publish(ev)
        lat = m.get("latency")
        if isinstance(lat, list) and lat:
            self._waiting.append((t_reply, device, m, lat))
        if self._waiting:
            self._convert()

    def _convert(self):
        keep = []
        now = time.monotonic()
        for item in self._waiting:
            t_reply, device, m, lat = item
            rest = [s for s in lat if not self._latency(device, m, s, t_reply)]
            if rest:
                if now - t_reply > LATENCY_WAIT:
                    self.unconverted += len(rest)
                else:
                    keep.append((t_reply, device, m, rest))
        if sum(len(k[3]) for k in keep) > MAX_WAITING:
            self.unconverted += sum(len(k[3]) for k in keep)
            keep = []
        self._waiting = keep

    def _latency(self, device, m, sample, t_reply) -> bool:
        """Publish one latency sample; False when a clock it needs has no estimate yet."""
        if not (isinstance(sample, list) and len(sample) == 4 and isinstance(sample[2], int)
                and isinstance(sample[3], int)):
            return True                         # malformed: dropped, not retried
        sink, origin, t0, t1 = sample
        if device not in self.clock.estimates:
            return False
        t_sink, b_sink = self.clock.to_controller_time(device, t1, near=t_reply)
        if origin == device:
            period = m.get("tick_period") or 0
            d = t1 - t0
            if period:
                d = (d + period // 2) % period - period // 2
            lat, bound = d / 1e6, 1e-6
        else:
            if origin not in self.clock.estimates:
                return False
            t_read, b_read = self.clock.to_controller_time(origin, t0, near=t_sink)
            lat, bound = t_sink - t_read, b_sink + b_read
        self._publish({"kind": "latency", "t": t_sink + self.wall, "device": device, "sink": sink, "origin": origin,
                       "pipeline": m.get("pipeline"), "latency_s": lat, "bound_s": bound})
        return True
