# The ESP32's capacitive touch input: a raw reading that drops when the pad (a wire, a coin,
# a piece of foil) is touched. pin: a touch GPIO, 0, 2, 4, 12-15, 27, 32 or 33 (default 4).
# Where "touched" begins depends on the pad; compare against a threshold downstream.
import machine

from sensormesh.device.sensors.esp32 import pin as make_pin


class Touchpad:
    RATE_HZ = 50
    UNIT = "raw reading (int), drops when touched"
    MEASURES = ("touch_raw", None)

    def __init__(self, pin=4):
        self._pad = machine.TouchPad(make_pin(pin))

    def get(self):
        return self._pad.read()
