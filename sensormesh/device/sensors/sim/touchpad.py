# Simulated ESP32 TouchPad: a raw reading around 600 that drops under 200 while touched.
from sensormesh.device.sensors.sim import Simulated


class Touchpad(Simulated):
    RATE_HZ = 50
    UNIT = "raw reading (int), drops when touched"
    MEASURES = ("touch_raw", None)

    def value(self, n):
        base = 150 if (n % 250) < 25 else 600
        return int(base + self.gauss() * 8)
