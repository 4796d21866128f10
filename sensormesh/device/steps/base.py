# The Step methods a running step rarely calls (steps/__init__.py, Rarely): push (tests, odd
# callers), flush and close at teardown, its counts for a status reply (wiring is wiring.py's).
# A Step finds each through __getattr__ when its class does not define it; this module is loaded
# for the call and forgotten after it on a board running .mpy files. Each function takes the
# step first.
def push(step, value, port=0):
    if port == 0:
        step.put(value)
    else:
        step.inlet(port)(value)


def put(step, value):
    raise NotImplementedError


def flush(step):
    pass


def close(step):
    """Cancel the step's timer, if it has one, and close its user object (the instance of a
    shipped class a map or filter calls), if that has a close(); a family whose close does
    more defines its own."""
    timer = getattr(step, "timer", None)
    if timer is not None:
        timer.cancel()
        step.timer = None
    instance = getattr(step, "instance", None)
    if instance is not None:
        step.instance = None
        close = getattr(instance, "close", None)
        if close is not None:
            close()


def out_count(step):
    return step.n_out


def base_stats(step):
    s = {"in": step.n_in, "out": step.out_count(), "dropped": step.dropped, "errors": step.errors}
    if step.last_error is not None:
        s["last_error"] = step.last_error
    return s


stats = base_stats
