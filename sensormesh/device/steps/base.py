# The Step methods a running step rarely calls (steps/__init__.py, Rarely): push (tests, odd
# callers), flush and close at teardown (its counts are runtime/report.py's, wiring.py's its
# wiring).
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


# A step's last_error on a port that cannot say which exception it caught (Step.failed: "")
UNKNOWN = "an exception (this port does not say which)"


def failed(step, value, what):
    """The log line of a value the step could not process (Step.failed counts it and calls this
    at the 1st, 2nd, 4th, 8th... error)."""
    step.ctx.log("step '%s': %s, dropped %s: %s (%d so far)"
                 % (step.id, what, short(value), step.last_error or UNKNOWN, step.errors))


def short(value):
    """A value as text of at most 60 characters, for a log line or an error message."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
