# User code for the shipping tests: what a user's pipeline file would define.
import json
import math
import statistics
from math import sqrt

OFFSET = 32
LIMITS = {"low": 28.0, "high": (30, 31)}
RATIO = 9 / 5


class Thing:
    pass


THING = Thing()


def fahrenheit(c: float) -> float:
    """Celsius to Fahrenheit."""
    return c * RATIO + OFFSET


def norm(v):
    return math.sqrt(sum(x * x for x in v))


def uses_sqrt(x):
    return sqrt(x)


def helper(x):
    return x * 2


def uses_helper(x):
    return helper(x) + 1


def uses_json(x):
    return json.dumps(x)


def uses_statistics(v):
    return statistics.mean(v)


def uses_numpy_inside(v):
    import numpy
    return float(numpy.mean(v))


def optional_machine(x):
    try:
        import machine
        return machine.freq()
    except ImportError:
        return x


def uses_machine(x):
    import machine
    return machine.freq() + x


def uses_match(x):
    match x:
        case 0:
            return "zero"
        case _:
            return "other"


def uses_ticks(x):
    import time
    return time.ticks_ms() + x


def uses_thing(x):
    return THING


def uses_limits(x):
    return x > LIMITS["high"][0]


def make_scaler(k):
    def scale(x):
        return x * k
    return scale


def make_bad_closure():
    t = Thing()

    def inner(x):
        return t
    return inner


double = make_scaler(2)
triple = make_scaler(3.5)
square = lambda x: x * x  # noqa: E731


def countdown(n):
    return 0 if n <= 0 else countdown(n - 1)


class Smoother:
    """A callable class: state across values."""

    alpha = OFFSET / 64

    def __init__(self):
        self.last = None

    def __call__(self, x):
        self.last = x if self.last is None else self.alpha * x + (1 - self.alpha) * self.last
        return self.last
