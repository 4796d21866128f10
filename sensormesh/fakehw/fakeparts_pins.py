# Models of the parts on plain pins of a simulated ESP32 (HC-SR04, MH-Z19B, rotary encoder);
# fakeparts.py loads this module the first time one of them is used.
import machine


class HCSR04:
    """Ultrasonic ranger on a trigger and an echo pin.

    A trigger pulse of at least 10 us starts a ping; DELAY_US after its falling edge the echo
    pin goes high for the round trip (58 us per cm). distance_cm=None: nothing in range, the
    echo stays high NO_OBJECT_US (38 ms, datasheet). echo_us overrides the round trip time;
    dead=True: the echo never rises (unplugged). Triggers during a ping are ignored."""

    DELAY_US = 460
    NO_OBJECT_US = 38000

    def __init__(self, trigger, echo, distance_cm=100.0, echo_us=None, dead=False):
        self.trigger = machine.Pin(trigger)
        self.echo = machine.Pin(echo)
        self.distance_cm = distance_cm
        self.echo_us = echo_us
        self.dead = dead
        self.pings = 0
        self._rise_us = None
        self._busy_until = -1
        self.trigger.fake_watch(self._on_trigger)

    def _on_trigger(self, state, level):
        now = machine.fake_clock.now
        if level:
            self._rise_us = now
            return
        rise, self._rise_us = self._rise_us, None
        if rise is None or now - rise < 10 or now < self._busy_until or self.dead:
            return
        self.pings += 1
        if self.echo_us is not None:
            width = self.echo_us
        elif self.distance_cm is None:
            width = self.NO_OBJECT_US
        else:
            width = int(self.distance_cm * 58)
        start = now + self.DELAY_US
        self.echo.fake_at(start, 1)
        self.echo.fake_at(start + width, 0)
        self._busy_until = start + width


class MHZ19B:
    """CO2 sensor's PWM output: cycles of CYCLE_US, high 2 ms + (cycle - 4 ms) * ppm / range.

    schedule(cycles, ppm=None, th_us=None, tl_us=None) queues that many cycles on the pin,
    starting with a rising edge at the current end of the queue (or now)."""

    CYCLE_US = 1004000

    def __init__(self, pin, ppm=400, range_ppm=5000):
        self.pin = machine.Pin(pin)
        self.ppm = ppm
        self.range_ppm = range_ppm
        self.next_us = machine.fake_clock.now + 1000

    def high_us(self, ppm=None):
        if ppm is None:
            ppm = self.ppm
        return 2000 + (self.CYCLE_US - 4000) * ppm // self.range_ppm

    def schedule(self, cycles=1, ppm=None, th_us=None, tl_us=None):
        if th_us is None:
            th_us = self.high_us(ppm)
        if tl_us is None:
            tl_us = self.CYCLE_US - th_us
        t = max(self.next_us, machine.fake_clock.now)
        for _ in range(cycles):
            self.pin.fake_at(t, 1)
            self.pin.fake_at(t + th_us, 0)
            t += th_us + tl_us
        self.next_us = t
        return t


class Quadrature:
    """Two-channel rotary encoder on pins a and b; A leads B when turned clockwise (+1).

    turn(steps, bounce=0) schedules the transitions, dt_us apart, after those already
    scheduled: 4 per step (one detent); with bounce=n every transition is preceded by n short
    back-and-forth glitches."""

    CW = ((1, 0), (1, 1), (0, 1), (0, 0))

    def __init__(self, a, b, dt_us=1000):
        self.a = machine.Pin(a)
        self.b = machine.Pin(b)
        self.dt_us = dt_us
        self.a.fake_set(0)
        self.b.fake_set(0)
        self.state = (0, 0)
        self.next_us = 0

    def _transitions(self, steps):
        order = self.CW if steps > 0 else tuple(reversed(self.CW[:3])) + ((0, 0),)
        out = []
        for _ in range(abs(steps)):
            for st in order:
                out.append(st)
        return out

    def turn(self, steps, bounce=0):
        t = max(self.next_us, machine.fake_clock.now) + self.dt_us
        for st in self._transitions(steps):
            pin = self.a if st[0] != self.state[0] else self.b
            level = st[0] if pin is self.a else st[1]
            for _ in range(bounce):
                pin.fake_at(t, level)
                pin.fake_at(t + 5, 1 - level)
                t += 10
            pin.fake_at(t, level)
            self.state = st
            t += self.dt_us
        self.next_us = t
        return t
