# User steps for alarm.yaml: plain functions, shipped to the boards as source.
import math

THRESHOLD_G = 1.01      # a board at rest reads 1 g +- 0.01 g of noise: about 1 reading in 6 passes


def magnitude(v):
    return math.sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2])


def shaking(g):
    return g > THRESHOLD_G
