"""Device clock offsets, estimated by the controller NTP-style over its control sessions.

An exchange: the controller notes t0 (its `time.monotonic()`), sends `{"clock": {"t0": ...}}` along
the device's control path (direct or through gateways), the device answers its tick clock
`tick_us` (`{"clock": {"t0", "tick_us", "period"}}`), the reply arrives at t2. The device read its
clock somewhere between t0 and t2, so

    offset = tick_us - (t0 + t2) / 2        (device microseconds minus controller microseconds)
    bound  = (t2 - t0) / 2                  (|true offset - offset| <= bound, whatever the delays)

A round is several exchanges one after the other; the one with the smallest round trip wins
(queueing only ever adds to a round trip). Rounds repeat (`ClockSync.every` seconds); between
rounds the bound grows by DRIFT_PPM of the estimate's age, for crystals that run apart.

MicroPython's `ticks_us` wraps (on a board at 2**30 us, about 18 minutes; the device says its
period). Offsets are kept modulo the period, and a tick is unwrapped by picking the turn of the
clock that puts it nearest to a controller time it is known to be close to (by default: now).
That is right as long as the tick is less than half a period (9 minutes on a board) from it.
"""
from __future__ import annotations

import time

DRIFT_PPM = 100.0          # crystals: tens of ppm; a bound that is generous on purpose
ROUNDS = 5                 # exchanges per round, the smallest round trip wins
EVERY = 10.0               # seconds between rounds


def now_us() -> float:
    return time.monotonic() * 1e6


class Estimate:
    """One device's clock: offset_us (device tick - controller us, modulo the period, nearest 0) within bound_us
    at controller time `at` (seconds), from an exchange with round trip rtt_us."""

    __slots__ = ("offset_us", "bound_us", "rtt_us", "at", "period", "samples")

    def __init__(self, offset_us, bound_us, rtt_us, at, period, samples=1):
        self.offset_us = offset_us
        self.bound_us = bound_us
        self.rtt_us = rtt_us
        self.at = at
        self.period = period
        self.samples = samples

    def bound_at(self, t: float) -> float:
        """The error bound (us) at controller time t (s): the exchange's, plus drift since."""
        return self.bound_us + abs(t - self.at) * DRIFT_PPM

    def as_dict(self):
        return {"offset_us": self.offset_us, "bound_us": self.bound_us, "rtt_us": self.rtt_us,
                "at": self.at, "period": self.period, "samples": self.samples}


def exchange(t0_s: float, tick_us: int, t2_s: float, period: int = 0) -> Estimate:
    """The estimate one exchange gives (controller times in seconds of time.monotonic())."""
    if t2_s < t0_s:
        raise ValueError("a clock reply cannot arrive before its request (t0 %r, t2 %r)" % (t0_s, t2_s))
    mid = (t0_s + t2_s) * 0.5e6
    off = tick_us - mid
    if period:
        # the turn nearest to 0, by subtracting whole periods: `(off + period / 2) % period`
        # would round off to the float spacing at period / 2 (512 us for the unix port's 2**62)
        off -= round(off / period) * period
    return Estimate(off, (t2_s - t0_s) * 0.5e6 + 1.0, (t2_s - t0_s) * 1e6, t2_s, period)


class ClockSync:
    """The controller's view of every device's clock."""

    def __init__(self, rounds: int = ROUNDS, every: float = EVERY):
        self.rounds = rounds
        self.every = every
        self.estimates: dict[str, Estimate] = {}
        self._round: dict[str, Estimate] = {}     # best exchange of the round in progress

    # -- feeding exchanges --------------------------------------------------------------------
    def add(self, device: str, t0_s: float, reply: dict, t2_s: float) -> Estimate:
        """One exchange's reply body ({"t0", "tick_us", "period"}) into the round in progress."""
        tick = reply.get("tick_us") if isinstance(reply, dict) else None
        if not isinstance(tick, int):
            raise ValueError("clock reply of %s has no integer tick_us: %r" % (device, reply))
        period = reply.get("period") or 0
        e = exchange(t0_s, tick, t2_s, period)
        best = self._round.get(device)
        if best is None or e.rtt_us < best.rtt_us:
            e.samples = (best.samples + 1) if best else 1
            self._round[device] = e
        else:
            best.samples += 1
        return e

    def finish_round(self, device: str) -> Estimate | None:
        """Make the round's best exchange the device's estimate (unless the old one, aged, is
        still tighter)."""
        best = self._round.pop(device, None)
        if best is None:
            return self.estimates.get(device)
        old = self.estimates.get(device)
        if old is None or best.bound_us <= old.bound_at(best.at):
            self.estimates[device] = best
        return self.estimates[device]

    def set(self, device: str, estimate: Estimate):
        self.estimates[device] = estimate

    def forget(self, device: str):
        self.estimates.pop(device, None)
        self._round.pop(device, None)

    # -- using them ---------------------------------------------------------------------------
    def offset(self, device: str) -> tuple[float, float] | None:
        """(offset_us, bound_us now) of a device, or None before its first exchange."""
        e = self.estimates.get(device)
        if e is None:
            return None
        return e.offset_us, e.bound_at(time.monotonic())

    def to_controller_time(self, device: str, tick_us: int, near: float | None = None) -> tuple[float, float]:
        """A device tick -> (controller time in seconds of time.monotonic(), error bound in s).

        `near`: a controller time the tick is known to be close to (default: now); a wrapping
        tick clock is unwrapped to the turn nearest to it. KeyError if the device has no estimate."""
        e = self.estimates.get(device)
        if e is None:
            raise KeyError("no clock estimate for device %r yet" % device)
        if near is None:
            near = time.monotonic()
        t_us = tick_us - e.offset_us
        if e.period:
            near_us = near * 1e6
            t_us += round((near_us - t_us) / e.period) * e.period
        t = t_us / 1e6
        return t, e.bound_at(t) / 1e6

    def tick_diff_us(self, device: str, a: int, b: int) -> int:
        """a - b of two ticks of the same device (its wrap-around accounted for)."""
        e = self.estimates.get(device)
        d = a - b
        if e is not None and e.period:
            half = e.period // 2
            d = (d + half) % e.period - half
        return d
