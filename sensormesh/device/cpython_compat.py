# compat.py's CPython half: a tick clock on monotonic nanoseconds and a collector call that does
# nothing. A board never loads this module, so it pays neither for these functions' code nor for
# their names (a branch compat.py never takes on MicroPython would still be loaded with it).
import time

# CPython has no wrapping tick counter; monotonic nanoseconds never wrap, so plain arithmetic
# gives the same answers ticks_diff gives on MicroPython.
def ticks_ms():
    return time.monotonic_ns() // 1000000


def ticks_us():
    return time.monotonic_ns() // 1000


def ticks_diff(a, b):
    return a - b


def collect():
    pass
