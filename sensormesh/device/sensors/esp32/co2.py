# MH-Z19B CO2 sensor, PWM output (datasheet: Winsen MH-Z19B). The PWM cycle is 1004 ms
# (+-5 %); within it the output is high for Th = 2 ms + (cycle - 4 ms) * ppm / range, so
#     ppm = range * (Th - 2 ms) / (Th + Tl - 4 ms)
# pin: GPIO of the PWM output (default 35; the output is 3.3 V, no divider needed).
# range_ppm: the sensor's configured detection range, 2000, 5000 (default) or 10000.
#
# An IRQ on both edges times the phases with ticks_us(). The handler only writes small ints
# into a preallocated array (no allocation, no floats: it may run as a hard interrupt), and
# latches (Th, Tl) of each complete cycle with a sequence number; get() turns the latest
# pair into ppm. Value: int ppm, None before the first complete cycle or when the output has
# been silent for STALE_MS (then `last_error` says why).
from array import array

import machine

from sensormesh.device.sensors.esp32 import pin as make_pin, ticks_diff, ticks_ms, ticks_us

# slots of the state array
_T_RISE = 0     # ticks_us of the last rising edge
_T_FALL = 1     # ticks_us of the last falling edge
_TH = 2         # high time of the cycle in progress (valid when _FLAGS has HIGH_DONE)
_LTH = 3        # latched high time of the last complete cycle
_LTL = 4        # latched low time of the last complete cycle
_SEQ = 5        # complete cycles latched (wraps at 2**30)
_EDGES = 6      # edges seen (wraps at 2**30)
_FLAGS = 7      # ROSE: a rising edge started this cycle; HIGH_DONE: _TH is valid
_ROSE = 1
_HIGH_DONE = 2
_MASK = 0x3FFFFFFF

CYCLE_MIN_US = 900000
CYCLE_MAX_US = 1110000


class Co2:
    RATE_HZ = 1
    UNIT = "ppm (int)"
    MEASURES = ("carbon_dioxide", "ppm")
    STALE_MS = 2600

    def __init__(self, pin=35, range_ppm=5000):
        if range_ppm not in (2000, 5000, 10000):
            raise ValueError("range_ppm must be 2000, 5000 or 10000, not %r" % (range_ppm,))
        self.range_ppm = range_ppm
        self._s = array("l", [0, 0, 0, 0, 0, 0, 0, 0])
        self._value = None
        self._seen_edges = 0
        self._seen_ms = ticks_ms()
        self.last_error = "no complete PWM cycle yet"
        self._pin = make_pin(pin, machine.Pin.IN)
        self._handler = self._edge          # one bound method, made once
        self._pin.irq(handler=self._handler,
                      trigger=machine.Pin.IRQ_RISING | machine.Pin.IRQ_FALLING)

    def _edge(self, pin):
        # IRQ handler: small ints into self._s only.
        t = ticks_us()
        s = self._s
        s[_EDGES] = (s[_EDGES] + 1) & _MASK
        if pin.value():
            if s[_FLAGS] & _HIGH_DONE:
                s[_LTH] = s[_TH]
                s[_LTL] = ticks_diff(t, s[_T_FALL])
                s[_SEQ] = (s[_SEQ] + 1) & _MASK
            s[_T_RISE] = t
            s[_FLAGS] = _ROSE
        else:
            if s[_FLAGS] & _ROSE:
                s[_TH] = ticks_diff(t, s[_T_RISE])
                s[_FLAGS] = _ROSE | _HIGH_DONE
            s[_T_FALL] = t

    def close(self):
        self._pin.irq(handler=None)

    def cycle(self):
        """(seq, Th us, Tl us) of the last complete cycle, read consistently."""
        s = self._s
        for _ in range(4):
            seq = s[_SEQ]
            th = s[_LTH]
            tl = s[_LTL]
            if s[_SEQ] == seq:
                break
        return seq, th, tl

    def get(self):
        s = self._s
        now = ticks_ms()
        edges = s[_EDGES]
        if edges != self._seen_edges:
            self._seen_edges = edges
            self._seen_ms = now
        elif ticks_diff(now, self._seen_ms) > self.STALE_MS:
            self.last_error = "no PWM edge for %d ms: check wiring and 5 V supply" % ticks_diff(now, self._seen_ms)
            self._value = None
            return None
        seq, th, tl = self.cycle()
        if seq == 0:
            return self._value
        period = th + tl
        if period < CYCLE_MIN_US or period > CYCLE_MAX_US or th < 0:
            self.last_error = "PWM cycle of %d us (high %d us) is not the MH-Z19B's 1004 ms" % (period, th)
            return self._value
        ppm = ppm_of(th, tl, self.range_ppm)
        self.last_error = None
        self._value = ppm
        return ppm


def ppm_of(th_us, tl_us, range_ppm):
    """The datasheet's formula, rounded to the nearest ppm and clamped to 0..range."""
    num = range_ppm * (th_us - 2000)
    den = th_us + tl_us - 4000
    ppm = (2 * num + den) // (2 * den)
    if ppm < 0:
        return 0
    if ppm > range_ppm:
        return range_ppm
    return ppm
