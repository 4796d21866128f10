# An external capacitive touch module (TTP223 and the like) wired as a digital input: its
# output pin is high while touched. pin: any GPIO (default 13). active_high=False for modules
# set to active-low output; pull: "up", "down" or None (the module drives the line itself).
import machine

from sensormesh.device.sensors.esp32 import pin as make_pin


class Touch:
    RATE_HZ = 50
    UNIT = "touched (bool)"
    MEASURES = ("touch", None)

    def __init__(self, pin=13, active_high=True, pull=None):
        self._pin = make_pin(pin, machine.Pin.IN, pull)
        self._active = 1 if active_high else 0

    def get(self):
        return self._pin.value() == self._active
