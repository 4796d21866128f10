# The less used half of the simulated `machine` (see machine.py): machine.py loads this module
# the first time a test or driver touches one of these names, through its module __getattr__.
from machine import _gpio_of, _pin_state, fake_clock

_TOUCH_PINS = (0, 2, 4, 12, 13, 14, 15, 27, 32, 33)


class Signal:
    def __init__(self, pin, invert=False):
        self._p = pin
        self._inv = invert

    def value(self, v=None):
        if v is None:
            return self._p.value() ^ (1 if self._inv else 0)
        self._p.value((1 if v else 0) ^ (1 if self._inv else 0))


def time_pulse_us(pin, pulse_level, timeout_us=1000000):
    """Like the firmware's: wait for the pin to reach pulse_level (-2 on timeout), then time
    how long it stays there (-1 on timeout). Waiting runs the simulated clock's events."""
    s = pin._s
    c = fake_clock
    start = c.now
    while s.level != pulse_level:
        t = c.next_time()
        if t is None or t - start >= timeout_us:
            c.run_until(start + timeout_us)
            return -2
        c.step()
    start = c.now
    while s.level == pulse_level:
        t = c.next_time()
        if t is None or t - start >= timeout_us:
            c.run_until(start + timeout_us)
            return -1
        c.step()
    return c.now - start


class TouchPad:
    def __init__(self, pin):
        gpio = _gpio_of(pin)
        if gpio not in _TOUCH_PINS:
            raise ValueError("invalid pin for touchpad")
        self._s = _pin_state(gpio)
        self.threshold = 0

    def read(self):
        return self._s.touch

    def config(self, value):
        self.threshold = value


# -- hardware quadrature counter (MicroPython 1.26+ on ESP32) -------------------------------

# (previous AB state << 2 | new AB state) -> count change; 2 = both inputs changed (invalid)
_QUAD = (0, -1, 1, 2, 1, 0, 2, -1, -1, 2, 0, 1, 2, 1, -1, 0)


class Encoder:
    """PCNT-style counter: counts every valid quadrature transition (phases=4)."""

    def __init__(self, id, phase_a=None, phase_b=None, phases=1, filter_ns=0, **kwargs):
        self.id = id
        self._count = 0
        self._a = _pin_state(_gpio_of(phase_a))
        self._b = _pin_state(_gpio_of(phase_b))
        self._div = 4 // phases
        self._state = (self._a.level << 1) | self._b.level
        self._a.watchers.append(self._edge)
        self._b.watchers.append(self._edge)
        self.invalid = 0

    def _edge(self, state, level):
        cur = (self._a.level << 1) | self._b.level
        d = _QUAD[(self._state << 2) | cur]
        self._state = cur
        if d == 2:
            self.invalid += 1
        else:
            self._count += d

    def value(self, v=None):
        old = self._count // self._div
        if v is not None:
            self._count = v * self._div
        return old

    def deinit(self):
        for s in (self._a, self._b):
            if self._edge in s.watchers:
                s.watchers.remove(self._edge)


resets = 0


def reset():
    global resets
    resets += 1
    raise SystemExit("machine.reset()")


def soft_reset():
    reset()


def unique_id():
    return b"\x24\x0a\xc4\x00\x00\x01"


def freq(hz=None):
    return 240000000


def idle():
    pass


def lightsleep(ms=None):
    if ms:
        fake_clock.advance(ms * 1000)


def disable_irq():
    return 0


def enable_irq(state=0):
    pass
