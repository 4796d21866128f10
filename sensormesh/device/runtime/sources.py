# What a source (runtime.Source) does rarely: starting, closing and a failed read (its counts
# are report.py's).
# Source finds these through __getattr__ (steps/__init__.py, Rarely): this module is loaded per
# call and forgotten after it on a board running .mpy files (a free-running source keeps it
# loaded, free_running.py). Each function takes the source first; reading values on its schedule
# is runtime/__init__.py.
from sensormesh.device.schedule import sparse


def flush(src):
    pass


def start(src):
    src.running = True
    src.t0 = src.rt.loop.now()
    src.taken = 0
    src._tick()


def close(src):
    src.running = False
    if src.timer:
        src.timer.cancel()
        src.timer = None


def _read_failed(src, e):
    """A read of the sensor raised e: counted and logged (the 1st, 2nd, 4th... time)."""
    src.errors += 1
    src.last_error = "%s: %s" % (type(e).__name__, e)
    if sparse(src.errors):
        src.rt.log("source %s: sensor read failed: %s (%d so far)" % (src.id, src.last_error, src.errors))
