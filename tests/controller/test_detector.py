"""The failure detector's decisions (supervisor/detector.py) on a fake clock: spreading, misses,
stalls of the controller, the adaptive interval; and the metrics poller's spreading, on a
fake supervisor. No sockets, no sleeps."""
import math

import pytest

from sensormesh.controller import metrics_poll
from sensormesh.controller.supervisor import detector as det
from sensormesh.controller.supervisor.control import Request
from sensormesh.controller.supervisor.detector import Detector, Slots


def names(n):
    return ["b%03d" % i for i in range(n)]


def run_slots(d, start, count, answer=None, rtt=0.01):
    """Turn the detector through `count` slots from time `start`, answering every poll after
    `rtt` s unless answer(device) is false; returns (polls per device, suspects with times)."""
    polls, suspects = {}, []
    now = start
    waiting = []                      # (time of answer, device, sent)
    for _ in range(count):
        for dev in d.due(now):
            d.sent(dev, now)
            polls[dev] = polls.get(dev, 0) + 1
            if answer is None or answer(dev):
                waiting.append((now + rtt, dev, now))
        step = d.tick()
        # turns of the loop every 10 ms within the slot
        t = now
        while t < now + step - 1e-9:
            t = min(now + step, t + 0.01)
            for item in [w for w in waiting if w[0] <= t]:
                waiting.remove(item)
                d.answered(item[1], item[0], item[2])
            for dev, n in d.turn(t).items():
                suspects.append((t, dev, n))
        now += step
    return polls, suspects, now


def test_slots_spread_the_devices_evenly_and_poll_each_once_per_round():
    s = Slots(20)
    s.deal(names(200))
    sizes = [len(s.slot_of.get(i, ())) for i in range(20)]
    assert sizes == [10] * 20
    seen = []
    for _ in range(20):
        seen += s.next_group()
    assert sorted(seen) == names(200) and s.rounds == 1
    s.deal(names(7))             # fewer devices than slots: one at most in each
    assert max(len(g) for g in s.slot_of.values()) == 1 and sum(len(g) for g in s.slot_of.values()) == 7


def test_polls_go_out_a_slot_at_a_time_never_all_at_once():
    d = Detector(1.0, 5.0)
    d.watch(names(200))
    biggest = 0
    polls, suspects, _ = run_slots(d, 100.0, 60)
    for dev in names(200):
        assert polls[dev] == 3                      # three intervals: three polls each
    d2 = Detector(1.0, 5.0)
    d2.watch(names(200))
    for _ in range(20):
        biggest = max(biggest, len(d2.due(0.0)))
    assert biggest == math.ceil(200 / det.SLOTS)
    assert suspects == []


def test_a_silent_device_becomes_a_suspect_after_two_missed_polls_and_no_sooner():
    d = Detector(1.0, 5.0)
    d.watch(names(10))
    polls, suspects, _ = run_slots(d, 0.0, 20 * 8, answer=lambda dev: dev != "b003")
    assert [s[1] for s in suspects] == ["b003"] * len(suspects) and suspects, suspects
    t, dev, n = suspects[0]
    assert n == det.MISSES
    # first poll at its slot (< 1 s), each miss known a deadline (2 s) after its poll, the next
    # poll at the following slot: suspect after about 2 deadlines + 1 interval, not before 2 deadlines
    assert 2 * d.deadline() <= t <= 2 * d.deadline() + 2 * d.interval, t
    assert d.counts["late"] > 0                        # not polled again while a poll was in flight


def turns(d, t0, t1, step=0.05):
    """The loop turning every `step` s from t0 to t1; {device: misses} of the suspects found."""
    found = {}
    t = t0
    while t < t1 - 1e-9:
        t = min(t1, t + step)
        found.update(d.turn(t))
    return found


def test_a_late_answer_ends_the_run_of_misses():
    d = Detector(1.0, 5.0)
    d.watch(["a"])
    d.turn(0.0)
    d.sent("a", 0.0)
    assert turns(d, 0.0, 2.5) == {}              # one miss (deadline 2 s)
    assert d.missed == {"a": 1}
    d.answered("a", 2.6, 0.0)                    # the first poll's answer, late
    assert d.missed == {}
    assert d.deadline() > 2.6                    # and later answers may take as long
    t = 3.0
    d.sent("a", t)
    end = t + d.deadline() + 0.1
    assert turns(d, 2.6, end) == {}              # a miss again, but only one in a row
    d.sent("a", end)
    assert turns(d, end, end + d.deadline() + 0.1) == {"a": 2}    # two in a row: a suspect
    assert d.counts["stalls"] == 0


def test_a_stall_of_the_controller_is_not_held_against_the_devices():
    d = Detector(1.0, 5.0)
    d.watch(names(4))
    for t in (0.0, 0.01, 0.02):
        d.turn(t)
    for dev in names(4):
        d.sent(dev, 0.02)
    # the controller's loop does not turn for 6 s (a busy machine); the answers were waiting
    assert d.turn(6.02) == {}
    assert d.counts["stalls"] == 1 and d.counts["misses"] == 0 and d.stalled == pytest.approx(6.0)
    for dev in names(4):
        d.answered(dev, 6.03)
    assert d.turn(6.04) == {} and d.out == {}
    # without the stall (the loop turning all along) the same silence is a miss each
    d2 = Detector(1.0, 5.0)
    d2.watch(names(4))
    for dev in names(4):
        d2.sent(dev, 0.0)
    t = 0.0
    while t < 6.0:
        t += 0.05
        d2.turn(t)
    assert d2.counts["misses"] == 4


def test_deadlines_follow_the_interval_within_the_timeout():
    d = Detector(1.0, 5.0)
    assert d.deadline() == 2.0 and d.probe_deadline() == 5.0
    d = Detector(0.3, 1.5)
    assert d.deadline() == det.MIN_DEADLINE and d.probe_deadline() == 4.0
    d = Detector(10.0, 5.0)
    assert d.deadline() == 5.0 and d.probe_deadline() == 10.0
    with pytest.raises(ValueError, match="status interval must be more than 0"):
        Detector(0, 5.0)


def test_the_interval_has_a_floor_for_many_devices():
    d = Detector(1.0, 5.0)
    d.watch(names(100))
    assert d.interval == 1.0
    d.watch(names(500))
    assert d.interval == 500 / det.MAX_RATE == 2.0
    assert d.changes[-1][3] == "500 devices"


def test_the_interval_adapts_to_the_measured_cost_and_comes_back():
    d = Detector(1.0, 5.0, budget=0.05, max_interval=4.0)
    d.watch(names(50))
    now, cpu = 0.0, 0.0
    assert d.adapt(now, cpu) is None              # the first call opens the window
    # 20% of a core over the window: the interval doubles (at most twice per step), up to 4 s
    seen = []
    for _ in range(6):
        now += det.ADAPT_EVERY * d.interval
        cpu += 0.20 * det.ADAPT_EVERY * d.interval
        seen.append(d.adapt(now, cpu))
    assert seen[:2] == [2.0, 4.0] and d.interval == 4.0
    assert "20.0% of a core" in d.changes[-1][3]
    # 1% of a core: back down step by step to the floor (1 s for 50 devices)
    for _ in range(10):
        now += det.ADAPT_EVERY * d.interval
        cpu += 0.01 * det.ADAPT_EVERY * d.interval
        d.adapt(now, cpu)
    assert d.interval == 1.0
    # between half the budget and the budget: it stays
    d.interval = 2.0
    now += det.ADAPT_EVERY * d.interval
    cpu += 0.04 * det.ADAPT_EVERY * d.interval
    assert d.adapt(now, cpu) is None and d.interval == 2.0


def test_devices_that_leave_take_their_polls_with_them():
    d = Detector(1.0, 5.0)
    d.watch(["a", "b"])
    d.sent("a", 0.0)
    d.sent("b", 0.0)
    d.watch(["b"])
    assert set(d.out) == {"b"}
    assert turns(d, 0.0, 3.0) == {}              # b missed once; a is not counted
    assert d.missed == {"b": 1}


def test_a_killed_device_is_detected_by_its_closed_session_not_by_misses():
    """The detector alone needs misses; a closed session skips them (watch.py) - here the
    bound that the detector itself gives a hung device, in intervals."""
    d = Detector(1.0, 5.0)
    d.watch(names(200))
    polls, suspects, _ = run_slots(d, 0.0, 20 * 10, answer=lambda dev: dev != "b100")
    t = suspects[0][0]
    bound = det.MISSES * d.deadline() + 2 * d.interval
    assert t <= bound, (t, bound)


# -- the metrics poller spreads its requests the same way --------------------------------------

class FakeTime:
    def __init__(self):
        self.now = 1000.0

    def monotonic(self):
        return self.now

    def time(self):
        return 1.7e9 + self.now


class FakeHealth:
    busy = False

    def down(self, d):
        return False


class FakeSup:
    def __init__(self, n):
        self.deployed = set(names(n))
        self.tasks = []
        self.health = FakeHealth()
        self.timeout = 5.0
        self.sent = []

    def _watched(self):
        return sorted(self.deployed)

    def control_devices(self, devices):
        return list(devices)

    def _send(self, device, msg, keys, timeout=None):
        self.sent.append((device, next(iter(msg))))
        return Request(device, keys, 1e12)         # never answered: the poller waits


def test_metrics_polls_are_spread_over_the_period(monkeypatch):
    clock = FakeTime()
    monkeypatch.setattr(metrics_poll, "time", clock)
    sup = FakeSup(100)
    p = metrics_poll.MetricsPoller(sup, every=1.0)
    p.start()
    per_slot = [len(sup.sent)]
    for _ in range(19):
        clock.now += 0.05
        before = len(sup.sent)
        p.poll()
        per_slot.append(len(sup.sent) - before)
    asked = [d for d, kind in sup.sent if kind == "metrics"]
    assert sorted(asked) == names(100)             # everyone once in one period
    # 5 devices a slot, each with a metrics request and its first clock exchange
    assert max(per_slot) == 10, per_slot
    # a caller that comes late catches up at most one period's worth of slots
    clock.now += 30.0
    before = len(sup.sent)
    p.poll()
    assert len(sup.sent) - before <= 200
    # many devices: the period grows so that at most MAX_RATE polls go out a second
    sup2 = FakeSup(1000)
    p2 = metrics_poll.MetricsPoller(sup2, every=1.0)
    p2.start()
    assert p2.period() == 1000 / det.MAX_RATE


def test_the_deadline_follows_slow_answers_on_a_loaded_machine():
    d = Detector(1.0, 5.0)
    d.watch(names(3))
    assert d.deadline() == 2.0
    t = 0.0
    for _ in range(30):                          # every answer takes 3 s (a machine at load 30)
        for dev in names(3):
            d.sent(dev, t)
            d.answered(dev, t + 3.0)
        t += 3.0
    assert 3.0 < d.deadline() <= 4 * 5.0, d.deadline()
    assert d.probe_deadline() >= 2 * d.deadline()
    for _ in range(60):                          # answers are quick again: back to 2 s
        for dev in names(3):
            d.sent(dev, t)
            d.answered(dev, t + 0.01)
        t += 1.0
    assert d.deadline() == 2.0
    # a deadline never grows past 4 timeouts, however slow
    for _ in range(50):
        d.sent("b000", t)
        d.answered("b000", t + 100.0)
        t += 100.0
    assert d.deadline() == 4 * 5.0
