# Simulated HC-SR04: distance in cm to something moving; now and then no echo (None).
from sensormesh.device.sensors.sim import Simulated, wave


class Ultrasonic(Simulated):
    RATE_HZ = 20
    UNIT = "cm (float), None when there was no echo"
    MEASURES = ("distance", "cm")

    def value(self, n):
        if self.uniform() < 0.02:
            return None
        return round(100.0 + wave(n, 400, 60.0) + self.gauss() * 0.5, 1)
