# Simulated MH-Z19B: CO2 in ppm in a room people come and go from.
from sensormesh.device.sensors.sim import Simulated, wave


class Co2(Simulated):
    RATE_HZ = 1
    UNIT = "ppm (int)"
    MEASURES = ("carbon_dioxide", "ppm")

    def value(self, n):
        return int(650 + wave(n, 1800, 250) + self.gauss() * 10)
