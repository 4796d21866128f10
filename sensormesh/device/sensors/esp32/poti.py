# A potentiometer (or any 0..3.3 V voltage) on an ADC pin.
#
# pin: an ADC1 GPIO, 32..39 (default 34). ADC2 pins (0, 2, 4, 12-15, 25-27) stop working
# while WiFi is on, so a device should not use them. atten: input attenuation in dB, one of
# 0, 2.5, 6, 11 (default 11: the full 0..3.3 V swing of a poti between 3V3 and GND).
# Value: {"raw": read_u16() 0..65535, "fraction": raw / 65535 rounded to 4 places}.
import machine

from sensormesh.device.sensors.poti_value import value
from sensormesh.device.sensors.esp32 import pin as make_pin

_ATTN = {0: "ATTN_0DB", 2.5: "ATTN_2_5DB", 6: "ATTN_6DB", 11: "ATTN_11DB"}


class Poti:
    RATE_HZ = 100
    UNIT = '{"raw": 0..65535, "fraction": 0.0..1.0}'
    MEASURES = {"raw": ("raw", None), "fraction": ("ratio", None)}

    def __init__(self, pin=34, atten=11):
        if atten not in _ATTN:
            raise ValueError("atten must be one of 0, 2.5, 6, 11 (dB), not %r" % (atten,))
        self._adc = machine.ADC(make_pin(pin), atten=getattr(machine.ADC, _ATTN[atten]))

    def get(self):
        raw = self._adc.read_u16()
        return value(raw)
