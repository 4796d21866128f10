# ESP32 board drivers: one module per sensor kind, one class per module (the original design's rule), so
# a board imports only the drivers of the sensors it has. Only this package imports the
# board modules `machine`, `esp32` and `dht`. Wiring and units: docs/boards.md.
#
# Drivers that time signals read the tick clock from here. On a board it is the `time`
# module's; a `machine` that brings its own tick clock (the simulated hardware in
# sensormesh/fakehw, whose pins change level in simulated time) supplies it instead.
import time

import machine

_clock = machine if hasattr(machine, "ticks_us") else time
ticks_us = _clock.ticks_us
ticks_ms = _clock.ticks_ms
ticks_diff = _clock.ticks_diff
sleep_us = _clock.sleep_us

_PULLS = {None: -1, "none": None, "up": machine.Pin.PULL_UP, "down": machine.Pin.PULL_DOWN}


def pin(p, mode=None, pull=None):
    """A machine.Pin from a GPIO number (or a Pin, passed through); pull: "up", "down"."""
    if isinstance(p, machine.Pin):
        return p
    if type(p) is not int:
        raise ValueError("pin must be a GPIO number, not %r" % (p,))
    if pull not in _PULLS:
        raise ValueError("pull must be \"up\", \"down\" or \"none\", not %r" % (pull,))
    if mode is None:
        return machine.Pin(p)
    return machine.Pin(p, mode, _PULLS[pull])
