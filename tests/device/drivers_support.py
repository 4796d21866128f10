# Shared by the tests/device/test_drivers_*.py modules (not a test module itself): puts the
# simulated hardware of sensormesh/fakehw first on sys.path, on CPython and MicroPython.
import sensormesh.fakehw

sensormesh.fakehw.install()

import machine  # noqa: E402  (the simulated one, now)

assert hasattr(machine, "fake_reset"), "the built-in machine module was imported before fakehw"


def fresh(start_us=0, encoder=True):
    """Forget all simulated hardware state; the clock starts at start_us."""
    machine.fake_reset(start_us, encoder)
    return machine


def heap_lock_available():
    try:
        import micropython
    except ImportError:
        return False
    return hasattr(micropython, "heap_lock")


def call_heap_locked(fn, arg):
    """fn(arg) with the heap locked: any allocation raises MemoryError. On CPython (no heap
    lock) fn(arg) runs unlocked and the result is False."""
    if not heap_lock_available():
        fn(arg)
        return False
    import micropython
    micropython.heap_lock()
    try:
        fn(arg)
    finally:
        micropython.heap_unlock()
    return True


def raises(exc, fn, *args, **kwargs):
    """The exception fn raised, which must be an exc; AssertionError when it raised none."""
    try:
        fn(*args, **kwargs)
    except exc as e:
        return e
    raise AssertionError("%s did not raise %s" % (getattr(fn, "__name__", fn), exc.__name__))


def close(a, b, tol=1e-9):
    return abs(a - b) <= tol
