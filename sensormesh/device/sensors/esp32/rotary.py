# Incremental rotary encoder (KY-040 and the like): two quadrature outputs A and B.
#
# pin_a, pin_b: GPIOs (default 25 and 26), pull: "up" (default; bare encoders switch to GND),
# "down" or None. transitions_per_step: quadrature transitions per reported step, 4 (default:
# one detent of the usual 20-detent encoder), 2 or 1. reverse: count the other way round.
# use_counter: True to use the hardware counter machine.Encoder (ESP32 PCNT, MicroPython
# 1.26+), False for the IRQ decoder, None (default) for the counter where the firmware has it.
#
# The IRQ decoder runs on both edges of both pins, reads the two levels and looks the
# (previous, current) pair up in a 16-entry transition table: +1/-1 for a valid quadrature
# step, 0 for no change, and rejected (counted in `errors`) when both levels changed at once
# (a missed edge). Contact bounce is a back-and-forth between two neighbouring states and
# cancels out. The handler only writes small ints into a preallocated array.
# Value: int, position in steps since start (floor of transitions / transitions_per_step).
from array import array

import machine

from sensormesh.device.sensors.esp32 import pin as make_pin

# index: previous AB state << 2 | current AB state (A is the high bit); 2 marks an invalid
# transition. Clockwise (A leads B): 00 -> 10 -> 11 -> 01 -> 00 counts +1 each.
_TABLE = array("b", [0, -1, 1, 2,
                     1, 0, 2, -1,
                     -1, 2, 0, 1,
                     2, 1, -1, 0])
_INVALID = 2

_Q = 0          # transitions counted
_PREV = 1       # last AB state
_ERR = 2        # invalid transitions seen


class Rotary:
    RATE_HZ = 100
    UNIT = "position in steps (int)"
    MEASURES = ("position", "steps")

    def __init__(self, pin_a=25, pin_b=26, pull="up", transitions_per_step=4, reverse=False,
                 use_counter=None, counter_id=0, filter_ns=1000):
        if transitions_per_step not in (1, 2, 4):
            raise ValueError("transitions_per_step must be 1, 2 or 4, not %r" % (transitions_per_step,))
        self._tps = transitions_per_step
        self._sign = -1 if reverse else 1
        self._a = make_pin(pin_a, machine.Pin.IN, pull)
        self._b = make_pin(pin_b, machine.Pin.IN, pull)
        if use_counter is None:
            use_counter = hasattr(machine, "Encoder")
        self.hardware = bool(use_counter)
        self._s = array("l", [0, (self._a.value() << 1) | self._b.value(), 0])
        if self.hardware:
            self._enc = machine.Encoder(counter_id, self._a, self._b, phases=4, filter_ns=filter_ns)
            return
        self._enc = None
        self._handler = self._edge          # one bound method, made once
        trig = machine.Pin.IRQ_RISING | machine.Pin.IRQ_FALLING
        self._a.irq(handler=self._handler, trigger=trig)
        self._b.irq(handler=self._handler, trigger=trig)

    def _edge(self, pin):
        # IRQ handler: small ints into self._s only.
        s = self._s
        cur = (self._a.value() << 1) | self._b.value()
        d = _TABLE[(s[_PREV] << 2) | cur]
        if d == _INVALID:
            s[_ERR] += 1
        else:
            s[_Q] += d
        s[_PREV] = cur

    @property
    def errors(self):
        return self._s[_ERR]

    def transitions(self):
        if self._enc is not None:
            return self._sign * self._enc.value()
        return self._sign * self._s[_Q]

    def get(self):
        return self.transitions() // self._tps

    def close(self):
        if self._enc is not None:
            self._enc.deinit()
        else:
            self._a.irq(handler=None)
            self._b.irq(handler=None)
