# User steps for alarm.yaml: plain module-level functions, shipped to devices as source.
import math

OFFSET = 32.0


def fahrenheit(c):
    return c * 9 / 5 + OFFSET


def magnitude(v):
    return math.sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2])


def shaking(g):
    return g > 1.2
