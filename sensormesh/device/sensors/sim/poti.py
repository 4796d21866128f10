# Simulated potentiometer on a 16-bit ADC: someone turning the knob back and forth.
from sensormesh.device.compat import MICROPYTHON
from sensormesh.device.sensors.sim import Simulated, wave


class Poti(Simulated):
    RATE_HZ = 100
    UNIT = '{"raw": 0..65535, "fraction": 0.0..1.0}'
    MEASURES = {"raw": ("raw", None), "fraction": ("ratio", None)}

    def value(self, n):
        raw = int(32768 + wave(n, 1000, 30000) + self.noise.gauss() * 60)
        raw = 0 if raw < 0 else 65535 if raw > 65535 else raw
        return value(raw)


def value(raw):
    """{"raw": .., "fraction": ..} serialized in that key order on both interpreters. MicroPython
    iterates this two-key dict in the reverse of the order it was written (hash order), so there
    it is written the other way round."""
    fraction = round(raw / 65535, 4)
    if MICROPYTHON:
        return {"fraction": fraction, "raw": raw}
    return {"raw": raw, "fraction": fraction}
