# Simulated incremental rotary encoder: a position in steps that someone turns now and then.
from sensormesh.device.sensors.sim import Simulated


class Rotary(Simulated):
    RATE_HZ = 100
    UNIT = "position in steps (int)"
    MEASURES = ("position", "steps")

    def __init__(self, seed=1, start=0):
        super().__init__(seed)
        self.pos = start

    def value(self, n):
        if n % 50 == 0:
            r = self.uniform()
            if r < 0.3:
                self.pos -= 1
            elif r > 0.7:
                self.pos += 1
        return self.pos
