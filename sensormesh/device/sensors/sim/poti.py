# Simulated potentiometer on a 16-bit ADC: someone turning the knob back and forth.
from sensormesh.device.sensors.poti_value import value
from sensormesh.device.sensors.sim import Simulated, wave


class Poti(Simulated):
    RATE_HZ = 100
    UNIT = '{"raw": 0..65535, "fraction": 0.0..1.0}'
    MEASURES = {"raw": ("raw", None), "fraction": ("ratio", None)}

    def value(self, n):
        raw = int(32768 + wave(n, 1000, 30000) + self.gauss() * 60)
        raw = 0 if raw < 0 else 65535 if raw > 65535 else raw
        return value(raw)
