# Simulated external touch module on a digital pin: touched or not, in short bursts.
from sensormesh.device.sensors.sim import Simulated


class Touch(Simulated):
    RATE_HZ = 50
    UNIT = "touched (bool)"
    MEASURES = ("touch", None)

    def value(self, n):
        return (n % 250) < 25
