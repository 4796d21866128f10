# The Step methods a running step rarely calls (steps/__init__.py, Rarely): wiring at build time,
# push (tests, odd callers), flush and close at teardown, the counts of a status reply. A Step
# finds each through __getattr__ when its class does not define it; this module is loaded for the
# call and forgotten after it on a board running .mpy files. Each function takes the step first.
from sensormesh.device.steps import StepError


def setup(step, params, n_inputs):
    pass


def bad(step, text):
    return StepError("step '%s': %s" % (step.id, text))


def base_inlet(step, port):
    """The callable fn(value) for input `port`: bound once, called per value."""
    lo, hi = step.INPUTS
    if type(port) is not int or port < 0 or (hi is not None and port >= hi):
        raise step.bad("%s has no input port %r" % (step.TYPE, port))
    return step.put1 if port == 1 and hi == 2 else step.put


inlet = base_inlet


def push(step, value, port=0):
    if port == 0:
        step.put(value)
    else:
        step.inlet(port)(value)


def connect(node, target, port=0):
    """Send node's output to `target`: a step (its input `port`) or a callable."""
    from sensormesh.device.steps.make import connect   # wiring is build time: make.py
    connect(node, target, port)


def set_outputs(step, fns):
    """Replace the outputs with a list of callables fn(value)."""
    from sensormesh.device.steps.make import wire
    if step.SINK and fns:
        raise step.bad("%s is a sink and has no outputs" % step.TYPE)
    step.outputs = list(fns)
    wire(step, None, 0)


def inlet_many(step, port):
    """The callable fn(list of values) for input `port` when this step takes runs of values
    at once (put_many), else None: the upstream then calls inlet(port) per value."""
    if port == 0:
        if hasattr(step, "put_many"):
            return step.put_many
    return None


def put(step, value):
    raise NotImplementedError


def flush(step):
    pass


def close(step):
    pass


def out_count(step):
    return step.n_out


def base_stats(step):
    s = {"in": step.n_in, "out": step.out_count(), "dropped": step.dropped,
         "errors": step.errors}
    if step.last_error is not None:
        s["last_error"] = step.last_error
    return s


stats = base_stats
