# The few differences between CPython and MicroPython that device code must not see.
#
# Everything a device imports runs on both interpreters; the differences live here and
# nowhere else: a millisecond tick clock, timeout errors, and which interpreter this is. The
# CPython side's functions are cpython_compat.py's, which a board never loads.
import sys
import time

MICROPYTHON = sys.implementation.name == "micropython"

# On a small MicroPython heap (a board without PSRAM: about 100 KB), collect garbage after every
# 1/12 of the heap has been allocated instead of only when an allocation fails. Long-lived
# objects (modules, connections, timers) then stay packed at the bottom of the heap instead of
# being spread between the garbage of imports and streams, which leaves free blocks large
# enough for a frame. Measured (benchmarks/bench_heap_streams.py, docs/performance.md): the two-stream
# device needs about 14 KB less heap. This module is the first one every device module
# imports, so it runs before the runtime's imports. Heaps over 512 KB keep MicroPython's default,
# and so does a threshold set before (a launcher that holds the heap to a board's sets it for that
# board's heap).
if MICROPYTHON:
    import gc
    if gc.threshold() < 0 and gc.mem_free() + gc.mem_alloc() <= 512 * 1024:
        gc.threshold((gc.mem_free() + gc.mem_alloc()) // 12)

if MICROPYTHON:
    ticks_ms = time.ticks_ms
    ticks_us = time.ticks_us
    ticks_diff = time.ticks_diff
else:
    # (the module by its last name: a board interns the names an import line holds, run or not)
    from sensormesh.device import cpython_compat
    ticks_ms = cpython_compat.ticks_ms
    ticks_us = cpython_compat.ticks_us
    ticks_diff = cpython_compat.ticks_diff


# Where the tick clock wraps (ticks_us: 2**30 on a 32-bit board); 0 = never (CPython).
TICK_PERIOD = time.ticks_add(0, -1) + 1 if MICROPYTHON else 0


def unix_time():
    """Seconds since 1970, on every port (the ESP32 epoch is 2000)."""
    t = time.time()
    if MICROPYTHON and time.gmtime(0)[0] == 2000:
        t += 946684800
    return t


# errno values for "would block" / "in progress" / timeouts, shared by both interpreters
# on Linux; ESP32 lwIP reports EINPROGRESS as 119 and timeouts as 110.
WOULD_BLOCK = (11, 115, 119, 110, 36)


def errno_of(exc):
    e = getattr(exc, "errno", None)
    if e is None and exc.args:
        e = exc.args[0]
    return e


# -- heap on MicroPython ---------------------------------------------------------------------
# A module's code lives in the heap on MicroPython (a .mpy is read into RAM, about twice its
# file size on the 64-bit unix port). Code a device needs once or rarely (argv parsing, shipped
# code loading at a deployment) is forgotten after use, and the collector runs after the steps
# that leave the most garbage (a deployment, a handshake), so the long-lived objects stay packed
# and the next frame finds a free block. Both do nothing on CPython.
def unload(name):
    """Forget module `name` (sys.modules and its package's attribute) so its code can be freed;
    the next import loads it again. `name` may be the module itself: a caller that has it names
    it without a string constant of its dotted name (~90 bytes while the caller is loaded)."""
    if not MICROPYTHON:
        return
    if type(name) is not str:
        name = name.__name__
    sys.modules.pop(name, None)
    parent, _, child = name.rpartition(".")
    pkg = sys.modules.get(parent)
    if pkg is not None:
        try:
            delattr(pkg, child)
        except (AttributeError, TypeError, KeyError):   # not there (MicroPython: KeyError)
            pass


# Does this device run from precompiled .mpy files (MicroPython)? Then a module loads again
# cheaply; from .py sources every load runs the compiler, which needs far more heap (and time)
# than keeping the module's code. The file this module was loaded from tells.
_MPY = MICROPYTHON and globals().get("__file__", "").endswith(".mpy")


def from_mpy():
    return _MPY


def forget(name):
    """Unload module `name` (or the module itself) when it loads again cheaply (from_mpy); else
    keep it."""
    if from_mpy():
        unload(name)


if MICROPYTHON:
    collect = gc.collect
else:
    collect = cpython_compat.collect
