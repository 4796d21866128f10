# Simulated ESP32 internal temperature: a chip running warm, drifting slowly, in degrees C.
from sensormesh.device.sensors.sim import Simulated, wave


class Temperature(Simulated):
    RATE_HZ = 10
    UNIT = "degrees C (float)"
    MEASURES = ("temperature", "°C")

    def value(self, n):
        return round(47.0 + wave(n, 600, 3.0) + self.gauss() * 0.2, 2)
