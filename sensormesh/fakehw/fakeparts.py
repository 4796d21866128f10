# Models of the parts wired to a simulated ESP32 (see sensormesh/fakehw/__init__.py): what a
# test puts on the pins and buses of the fake `machine`. Timings and register maps follow the
# datasheets (MPU-6000/6050, HC-SR04, MH-Z19B).
import struct

import machine


class MPU6050:
    """Register model of an MPU-6050/6000 on I2C: 128 registers, auto-incrementing reads.

    Resets asleep (PWR_MGMT_1 = 0x40); while asleep the data registers read as zero.
    `regs` is writable from tests; set_raw() and set_physical() fill the data registers."""

    WHO_AM_I = 0x75
    PWR_MGMT_1 = 0x6B
    GYRO_CONFIG = 0x1B
    ACCEL_CONFIG = 0x1C
    DATA = 0x3B
    ACCEL_LSB = (16384, 8192, 4096, 2048)
    GYRO_LSB = (131.0, 65.5, 32.8, 16.4)

    def __init__(self, who_am_i=0x68):
        self.regs = bytearray(128)
        self.regs[self.WHO_AM_I] = who_am_i
        self.regs[self.PWR_MGMT_1] = 0x40
        self.writes = []

    def asleep(self):
        return bool(self.regs[self.PWR_MGMT_1] & 0x40)

    def read(self, reg, n):
        out = bytearray(n)
        for i in range(n):
            r = (reg + i) & 0x7F
            if self.asleep() and self.DATA <= r < self.DATA + 14:
                out[i] = 0
            else:
                out[i] = self.regs[r]
        return out

    def write(self, reg, data):
        for i in range(len(data)):
            r = (reg + i) & 0x7F
            self.writes.append((r, data[i]))
            if r != self.WHO_AM_I:
                self.regs[r] = data[i]

    def set_raw(self, accel=(0, 0, 0), temp=0, gyro=(0, 0, 0)):
        raw = struct.pack(">7h", accel[0], accel[1], accel[2], temp, gyro[0], gyro[1], gyro[2])
        for i in range(14):
            self.regs[self.DATA + i] = raw[i]

    def accel_lsb(self):
        return self.ACCEL_LSB[(self.regs[self.ACCEL_CONFIG] >> 3) & 3]

    def gyro_lsb(self):
        return self.GYRO_LSB[(self.regs[self.GYRO_CONFIG] >> 3) & 3]

    def set_physical(self, accel_g=(0.0, 0.0, 1.0), gyro_dps=(0.0, 0.0, 0.0), temp_c=25.0):
        """Data registers for these readings at the configured full-scale ranges."""
        a = self.accel_lsb()
        g = self.gyro_lsb()
        self.set_raw([_clamp16(round(v * a)) for v in accel_g],
                     _clamp16(round((temp_c - 36.53) * 340)),
                     [_clamp16(round(v * g)) for v in gyro_dps])


def _clamp16(v):
    return -32768 if v < -32768 else 32767 if v > 32767 else v


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
