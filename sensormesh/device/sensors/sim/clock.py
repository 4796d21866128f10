# A sensor that reads the device's microsecond tick clock, for latency measurements.
from sensormesh.device.compat import ticks_us


class Clock:
    RATE_HZ = 1000
    UNIT = "microseconds of the device tick clock (int)"
    MEASURES = ("time", "µs")

    def __init__(self, seed=None):
        pass

    def get(self):
        return ticks_us()
