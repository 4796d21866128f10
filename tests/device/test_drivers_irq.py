# The original design's interrupt rule, proven: the IRQ handlers of co2 and rotary allocate nothing.
# On the MicroPython unix port each handler call runs under micropython.heap_lock(), where any
# allocation (a float, a big int, a list, a bound method) raises MemoryError. On CPython the
# same sequences run without the lock and check the decoded values only.
from drivers_support import call_heap_locked, fresh, heap_lock_available

import machine

from sensormesh.device.sensors import make


def _allocates(_):
    return [1, 2, 3]


def _float_math(x):
    return x * 0.5


def test_heap_lock_catches_allocation():
    if not heap_lock_available():
        return
    for fn in (_allocates, _float_math):
        try:
            call_heap_locked(fn, 3)
        except MemoryError:
            continue
        raise AssertionError("heap_lock did not stop %s from allocating" % fn.__name__)


def test_co2_handler_allocates_nothing():
    fresh()
    s = make({"kind": "co2", "driver": "esp32", "pin": 35, "range_ppm": 2000})
    pin = machine.Pin(35)
    set_level = pin.fake_set
    locked = False
    t = 1000
    for _ in range(3):           # three cycles of 1000 ppm at 2000 ppm range: Th 502 ms
        machine.fake_clock.now = t
        locked = call_heap_locked(set_level, 1) or locked
        machine.fake_clock.now = t + 502000
        locked = call_heap_locked(set_level, 0) or locked
        t += 1004000
    machine.fake_clock.now = t
    call_heap_locked(set_level, 1)
    assert s.get() == 1000
    # and the handler itself, called as the firmware would
    machine.fake_clock.now = t + 100
    pin.fake_state().level = 0
    call_heap_locked(s._handler, pin)
    assert locked == heap_lock_available()


def test_rotary_handler_allocates_nothing():
    fresh()
    a, b = machine.Pin(25), machine.Pin(26)
    a.fake_set(0)
    b.fake_set(0)
    r = make({"kind": "rotary", "driver": "esp32", "use_counter": False})
    set_a, set_b = a.fake_set, b.fake_set
    locked = False
    # two steps clockwise with bounce on every A edge, then one back
    cw = ((set_a, 1), (set_a, 0), (set_a, 1), (set_b, 1), (set_a, 0), (set_a, 1), (set_a, 0),
          (set_b, 0))
    for _ in range(2):
        for fn, level in cw:
            locked = call_heap_locked(fn, level) or locked
    for fn, level in ((set_b, 1), (set_a, 1), (set_b, 0), (set_a, 0)):
        call_heap_locked(fn, level)
    assert r.get() == 1 and r.errors == 0
    # an invalid transition (both changed) is also handled without allocating
    a.fake_state().level = 1
    b.fake_state().level = 1
    call_heap_locked(r._handler, a)
    assert r.errors == 1
    assert locked == heap_lock_available()
