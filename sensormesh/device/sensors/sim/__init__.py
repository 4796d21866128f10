# Simulated sensors for machines without hardware: plausible values in the real sensors'
# formats and units, deterministic for a given seed on CPython and MicroPython alike.
#
# Values depend on the sample index, not the wall clock, so a seed gives the same sequence on
# every interpreter. The generator is our own 32-bit xorshift: the interpreters' `random`
# modules produce different sequences for the same seed.
import math


def wave(n, period, amplitude):
    """A slow sine over the sample index: period in samples."""
    return amplitude * math.sin(6.283185307179586 * n / period)


class Simulated:
    """Base: counts samples and is its own noise source, a 32-bit xorshift: uniform() in
    [0, 1), gauss() roughly normal (sum of four uniforms)."""
    RATE_HZ = 10
    UNIT = ""

    def __init__(self, seed=1):
        self.n = 0
        self.s = (seed * 2654435761 + 1) & 0xFFFFFFFF or 1     # the generator's state

    def get(self):
        n = self.n
        self.n = n + 1
        return self.value(n)

    def uniform(self):
        s = self.s
        s ^= (s << 13) & 0xFFFFFFFF
        s ^= s >> 17
        s ^= (s << 5) & 0xFFFFFFFF
        self.s = s
        return (s >> 8) / 16777216.0

    def gauss(self):
        # Irwin-Hall with 4 terms, rescaled to unit variance: cheap and good enough for noise.
        return (self.uniform() + self.uniform() + self.uniform() + self.uniform() - 2.0) * 1.7320508
