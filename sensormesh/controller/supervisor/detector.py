"""Failure detection that scales: when each device is polled, what a missed poll means, and
how long the status interval is. Pure: no sockets and no clock of its own (every call takes
`now`, in seconds), so tests drive it with a fake clock; watch.py does the sending.

Spreading. The interval is cut into SLOTS slots and each watched device has one (device i of
n is in slot i * SLOTS // n): at every slot the devices in it get their status poll, so n
devices cost n / SLOTS polls per slot instead of n at once, once per interval each.

Misses. A poll that has no answer within `deadline()` (twice the interval, at least
MIN_DEADLINE, at most the supervisor's timeout; longer while the answers of all devices take
longer, as on a loaded machine: see deadline()) is a miss; an answer, even a late one, ends the
run of misses. MISSES misses in a row make the device a suspect, which the supervisor then
probes directly, with a longer deadline (`probe_deadline()`): only a device silent to that too
is failed. A device with a poll still unanswered is not polled again until that one counts as a
miss, so a slow device never piles up requests. (A closed control connection, or a gateway that
says it cannot reach the device, is a suspect at once: watch.py. That is how a killed device is
found, within milliseconds.)

A busy controller. When the controller's loop did not turn for STALL seconds or more (the
machine was busy, the process was not scheduled, or a failure was being handled), the polls in
flight and the slots move on by that gap: a device is not blamed for time in which the
controller did not read its answers.

The interval. It starts at the supervisor's `interval` and adapts (every ADAPT_EVERY intervals)
to the number of devices and to the controller's measured cost: never fewer than n / MAX_RATE
seconds (at most MAX_RATE polls a second), longer while the controller's CPU use over the last
window (all of it: polls, deliveries, everything) is above `budget` (a share of one core), shorter
again, down to that floor, once it is below half the budget. It never exceeds `max_interval`.
"""
from __future__ import annotations

SLOTS = 20            # slots per interval: polls go out in 20 small groups, not one burst
MISSES = 2            # polls missed in a row before a device is a suspect
MIN_DEADLINE = 2.0    # s: the least time a poll's answer may take before it counts as a miss
RTT_CAP = 4           # the answer-time deadline is at most 4 times the supervisor's timeout
STALL = 0.5           # s: a gap this long between two turns of the controller's loop is its own stall
MAX_RATE = 250.0      # polls per second the controller sends at most (about 3% of a core here)
BUDGET = 0.05         # share of one core the controller aims to stay under while watching
ADAPT_EVERY = 5       # intervals between two adaptations of the interval
MAX_FACTOR = 5        # the interval grows to at most 5 times what the supervisor was given


class Slots:
    """Devices dealt over `count` slots of a period (device i of n in slot i * count // n);
    next_group() gives the devices of one slot after the other, round and round."""

    def __init__(self, count=SLOTS):
        self.count = int(count)
        self.members = ()          # the devices, in slot order
        self.slot_of = {}          # slot -> devices in it
        self.slot = 0              # the slot given next
        self.rounds = 0            # full rounds given so far

    def deal(self, devices):
        """The devices now (a stable order); returns the ones no longer among them."""
        devices = tuple(devices)
        if devices == self.members:
            return set()
        gone = set(self.members) - set(devices)
        self.members = devices
        n = len(devices)
        self.slot_of = {}
        for i, d in enumerate(devices):
            self.slot_of.setdefault(i * self.count // n, []).append(d)
        return gone

    def next_group(self):
        group = self.slot_of.get(self.slot, ())
        self.slot = (self.slot + 1) % self.count
        if self.slot == 0:
            self.rounds += 1
        return list(group)


class Detector:
    """Poll slots, misses and the adaptive interval for the devices one supervisor watches."""

    def __init__(self, interval, timeout, budget=BUDGET, max_interval=None, misses=MISSES, slots=SLOTS,
                 max_rate=MAX_RATE):
        if interval <= 0:
            raise ValueError("the status interval must be more than 0 s, not %r" % (interval,))
        self.base = float(interval)
        self.interval = float(interval)
        self.timeout = float(timeout)
        self.budget = float(budget)
        self.max_interval = float(max_interval) if max_interval is not None else MAX_FACTOR * self.base
        self.misses_allowed = int(misses)
        self.max_rate = float(max_rate)
        self.spread = Slots(slots)
        self.out = {}              # device -> deadline of its poll in flight
        self.sent_at = {}          # device -> when that poll went out
        self.missed = {}           # device -> polls missed in a row
        self.rtt = {}              # device -> seconds its last answer took
        self.srtt = None           # smoothed answer time over all devices (s) and its deviation
        self.rttvar = 0.0
        self.last_turn = None      # when the controller's loop last turned
        self.next_deadline = None  # the earliest deadline in self.out (None: nothing in flight)
        self._window = None        # (time, cpu seconds) at the start of the adaptation window
        self.counts = {"polls": 0, "answers": 0, "misses": 0, "suspects": 0, "stalls": 0, "late": 0}
        self.stalled = 0.0         # seconds of controller stalls forgiven so far
        self.changes = []          # (time, old interval, new interval, why)

    # -- timing ------------------------------------------------------------------------------------

    def tick(self):
        """Seconds between two slots."""
        return self.interval / self.spread.count

    def deadline(self):
        """Seconds a poll's answer may take before it counts as a miss: twice the interval (at
        least MIN_DEADLINE, at most the timeout), or longer while answers take longer (the
        smoothed answer time plus four deviations, as TCP sets its retransmission timeout; at
        most RTT_CAP times the timeout)."""
        fixed = min(max(2 * self.interval, MIN_DEADLINE), max(self.timeout, MIN_DEADLINE))
        if self.srtt is None:
            return fixed
        return max(fixed, min(self.srtt + 4 * self.rttvar, RTT_CAP * max(self.timeout, MIN_DEADLINE)))

    def probe_deadline(self):
        """Seconds the confirming probe of a suspect may take."""
        return max(self.timeout, 2 * self.deadline())

    def floor(self):
        """The shortest interval for the number of devices watched."""
        return max(self.base, len(self.spread.members) / self.max_rate)

    # -- the watched devices -------------------------------------------------------------------------

    def watch(self, devices):
        """The devices to watch now (in a stable order); slots are dealt again when it changes."""
        gone = self.spread.deal(devices)
        for d in gone:
            self.out.pop(d, None)
            self.sent_at.pop(d, None)
            self.missed.pop(d, None)
        if gone:
            self._recompute_deadline()
        if self.interval < self.floor():
            self._set_interval(None, self.floor(), "%d devices" % len(self.spread.members))

    # -- polls ---------------------------------------------------------------------------------------

    def due(self, now):
        """The devices to poll in this slot (those without a poll in flight); moves to the next."""
        out = []
        for d in self.spread.next_group():
            if d in self.out:
                self.counts["late"] += 1
                continue
            out.append(d)
        return out

    def sent(self, device, now):
        dl = now + self.deadline()
        self.out[device] = dl
        self.sent_at[device] = now
        self.counts["polls"] += 1
        if self.next_deadline is None or dl < self.next_deadline:
            self.next_deadline = dl

    def answered(self, device, now, sent=None):
        """An answer to a poll of device (sent at `sent`, if known): its run of misses ends."""
        self.counts["answers"] += 1
        self.missed.pop(device, None)
        t0 = self.sent_at.get(device) if sent is None else sent
        if t0 is not None:
            r = self.rtt[device] = max(0.0, now - t0)
            if self.srtt is None:
                self.srtt, self.rttvar = r, r / 2
            else:
                self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - r)
                self.srtt = 0.875 * self.srtt + 0.125 * r
        if device in self.out and (sent is None or self.sent_at.get(device) == sent):
            del self.out[device]
            del self.sent_at[device]

    def forget(self, device):
        """No verdict on the poll in flight (it failed for a reason handled elsewhere)."""
        self.out.pop(device, None)
        self.sent_at.pop(device, None)
        self.missed.pop(device, None)

    def turn(self, now):
        """Call at every turn of the controller's loop. Forgives a stall of the controller, then
        counts the polls past their deadline as misses; returns {device: polls missed in a row}
        of the devices that became suspects now."""
        if self.last_turn is not None:
            gap = now - self.last_turn
            if gap >= STALL:
                self._forgive(gap)
        self.last_turn = now
        if self.next_deadline is None or now < self.next_deadline:
            return {}
        suspects = {}
        for d, dl in list(self.out.items()):
            if dl <= now:
                del self.out[d]
                self.sent_at.pop(d, None)
                self.counts["misses"] += 1
                n = self.missed.get(d, 0) + 1
                if n >= self.misses_allowed:
                    self.missed.pop(d, None)
                    suspects[d] = n
                    self.counts["suspects"] += 1
                else:
                    self.missed[d] = n
        self._recompute_deadline()
        return suspects

    def _forgive(self, gap):
        self.counts["stalls"] += 1
        self.stalled += gap
        for d in self.out:
            self.out[d] += gap
        for d in self.sent_at:
            self.sent_at[d] += gap
        if self.next_deadline is not None:
            self.next_deadline += gap

    def _recompute_deadline(self):
        self.next_deadline = min(self.out.values()) if self.out else None

    # -- the interval ----------------------------------------------------------------------------------

    def adapt(self, now, cpu):
        """Call once per slot with the controller's CPU seconds so far; every ADAPT_EVERY
        intervals it sets the interval from the CPU share of that window. Returns the new
        interval when it changed, else None."""
        if self._window is None:
            self._window = (now, cpu)
            return None
        t0, c0 = self._window
        if now - t0 < ADAPT_EVERY * self.interval:
            return None
        self._window = (now, cpu)
        share = (cpu - c0) / (now - t0) if now > t0 else 0.0
        floor = self.floor()
        new = self.interval
        if share > self.budget:
            new = min(self.max_interval, self.interval * min(2.0, share / self.budget))
            why = "the controller used %.1f%% of a core (budget %.1f%%)" % (100 * share, 100 * self.budget)
        elif share < self.budget / 2 and self.interval > floor:
            new = self.interval / 1.5
            why = "the controller used %.1f%% of a core (budget %.1f%%)" % (100 * share, 100 * self.budget)
        else:
            why = "%d devices" % len(self.spread.members)
        new = min(max(new, floor), max(self.max_interval, floor))
        if abs(new - self.interval) < 1e-9:
            return None
        return self._set_interval(now, new, why)

    def _set_interval(self, now, new, why):
        self.changes.append((now, self.interval, new, why))
        self.interval = new
        return new

    def state(self):
        """A summary for status and tests."""
        return {"interval": self.interval, "devices": len(self.spread.members), "deadline": self.deadline(),
                "in_flight": len(self.out), "stalled_s": round(self.stalled, 3), **self.counts}
