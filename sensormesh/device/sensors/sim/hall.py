# Simulated ESP32 hall sensor: a raw signed reading near zero, a magnet passing now and then.
from sensormesh.device.sensors.sim import Simulated


class Hall(Simulated):
    RATE_HZ = 100
    UNIT = "raw reading (int)"
    MEASURES = ("magnetic_field", None)

    def value(self, n):
        magnet = 60 if (n // 200) % 5 == 0 else 0
        return int(magnet + self.gauss() * 4)
