# The built-in steps every device runs between its sources and its sinks: this module holds
# what they share at run time (Step, StepError, Outlet, emitter); each family of types lives in a
# module of its own (make.TYPES), imported when an assignment first names one of its types.
#
# A device builds its assignment into a chain of step objects that call each other directly,
# value by value: a step's put(value) does its work and hands the result to self.emit, which
# is the downstream step's own put (bound once at wiring) when there is one downstream, a
# small fan-out function when there are several. A chain of one-output steps therefore costs
# one Python call per step per value. Timing (window time frames, throttling) uses the
# loop's timers through ctx.call_later; no step reads the clock per value.
# Runs of values: a free-running source reads a run of values per loop turn and hands the list
# to emit_many; a step with put_many(values) (map, filter, pipe_out) takes the list at once and
# passes its own list on, so a chain of such steps costs one call per step per run, not per
# value. emit_many is the downstream's put_many when there is exactly one downstream that has
# one, else a loop calling emit per value; the result is the same values in the same order.
#
# Step protocol (the runtime relies on exactly this):
#   inlet(port) -> fn(value)   the callable an upstream calls for input `port` (the hot path)
#   inlet_many(port) -> fn(list) or None   the same for a run of values (put_many), if any
#   push(value, port=0)        the same for one value, looked up per call (tests, odd callers)
#   connect(target, port=0)    send output to a step (its inlet(port)) or to a callable
#   flush()                    emit what is held back (partial windows, throttled value);
#                              the runtime calls it upstream-first when it stops a chain
#   close()                    cancel timers, close files; emits nothing
#   stats() -> dict            "in", "out", "dropped", "errors" and per-type extras
# ctx, given by the runtime: now() ms, call_later(ms, fn) -> handle with cancel(),
# resolve("module:name") -> object, deliver(step_id, value), log(text); hold() and release()
# around the time a step with HOLDS = True keeps values back (windows, zip): acknowledged pipes
# acknowledge an input only once nothing derived from it is held (runtime/pipes.py).
#
# Losses are never silent: a value a step cannot process (user function raised, field
# missing, non-number in a numeric window) or has to discard (zip overflow, closing with
# unpaired zip values) counts in "dropped" (and, for exceptions, "errors"); errors are logged
# through ctx.log at the 1st, 2nd, 4th, 8th... occurrence. Values a step leaves out by
# design (filter, throttle, changes) show as in - out and are not "dropped".
# Parameters and semantics: docs/steps.md. Building a step from its spec and checking its
# parameters is make.py's work (loaded for a deployment, forgotten after it on a board).
#
# MicroPython shapes the hot methods (put, put1 and the _put_* variants). The VM keeps a
# function's state (arguments, locals, value stack, exception handlers) on the C stack only
# up to 11 words; a bigger one is allocated on the heap and freed on every call, and each
# free moves the allocator's next-free hint back to that block, so the values allocated
# next scan the used heap again: 20 to 60 times slower on the unix port with a busy heap. So hot methods take (self, value) only, keep few
# locals, catch with a bare "except Exception:" (no "as e") and call self.failed(value) with
# one argument; failed() gets the exception from sys.exc_info where the port has it.
# benchmarks/bench_steps.py shows the regression as a rate that falls on longer runs.
import sys

from sensormesh.device.schedule import sparse

_exc_info = getattr(sys, "exc_info", None)  # missing on some MicroPython ports (ESP32)


class StepError(Exception):
    """A step spec with an unknown type, a wrong number of inputs or a bad parameter."""


class _Missing:
    pass


NONE = _Missing()  # "no value yet": unequal to every value a sensor can produce

AGGS = ("mean", "min", "max", "sum", "count", "list")   # aggregates of window and sliding


def nowhere(value):
    # emit target of a step nobody has connected
    pass


def no_ctx_call():
    # hold()/release() of a ctx that has none (steps run outside a runtime, in tests)
    pass


def emitter(outs):
    """The emit function for a list of downstream callables: with one downstream it *is* that
    callable (one call per step per value), with several a small fan-out."""
    if not outs:
        return nowhere
    if len(outs) == 1:
        return outs[0]
    outs = tuple(outs)

    def fan_out(value):
        for fn in outs:
            fn(value)
    return fan_out


def one_by_one(node):
    """The emit_many of a node whose downstream takes values one at a time (or that has several
    downstreams): its current emit once per value (the probe may have swapped that emit)."""
    def each(values):
        for v in values:
            node.emit(v)
    return each


class Outlet:
    """connect() for runtime objects that produce values but are not steps (sources, pipe_in)."""

    def flush(self):
        pass

    def connect(self, target, port=0):
        from sensormesh.device.steps.make import connect   # wiring is build time: make.py
        connect(self, target, port)


def _short(value):
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class Step:
    TYPE = "?"
    ARGS = ()           # the parameter names this step takes
    INPUTS = (1, 1)     # least and most inputs (None: no limit)
    SINK = False

    def __init__(self, sid, params, ctx, n_inputs=1):
        self.id = sid
        self.ctx = ctx
        self.params = params
        self.outputs = []
        self.emit = nowhere
        self.emit_many = nowhere
        self.n_in = 0
        self.n_out = 0
        self.dropped = 0
        self.errors = 0
        self.last_error = None
        self.setup(params, n_inputs)    # make.build checked the parameter names

    def setup(self, params, n_inputs):
        pass

    def bad(self, text):
        return StepError("step '%s': %s" % (self.id, text))

    # -- wiring ---------------------------------------------------------------------------------
    def inlet(self, port):
        """The callable fn(value) for input `port`: bound once, called per value."""
        lo, hi = self.INPUTS
        if type(port) is not int or port < 0 or (hi is not None and port >= hi):
            raise self.bad("%s has no input port %r" % (self.TYPE, port))
        return self.put1 if port == 1 and hi == 2 else self.put

    def push(self, value, port=0):
        if port == 0:
            self.put(value)
        else:
            self.inlet(port)(value)

    def connect(self, target, port=0):
        """Send this step's output to `target`: a step (its input `port`) or a callable."""
        from sensormesh.device.steps.make import connect   # wiring is build time: make.py
        connect(self, target, port)

    def set_outputs(self, fns):
        """Replace the outputs with a list of callables fn(value)."""
        from sensormesh.device.steps.make import wire
        if self.SINK and fns:
            raise self.bad("%s is a sink and has no outputs" % self.TYPE)
        self.outputs = list(fns)
        wire(self, None, 0)

    def inlet_many(self, port):
        """The callable fn(list of values) for input `port` when this step takes runs of values
        at once (put_many), else None: the upstream then calls inlet(port) per value."""
        if port == 0 and hasattr(self, "put_many"):
            return self.put_many
        return None

    # -- running --------------------------------------------------------------------------------
    def put(self, value):
        raise NotImplementedError

    what = "failed"

    def failed(self, value, what=None):
        """Count and (at the 1st, 2nd, 4th, 8th... error) log a value this step could not
        process, `what` (default self.what) saying why. Call it from the except block that
        caught the error; hot paths call it with the value only (see the MicroPython note)."""
        self.dropped += 1
        n = self.errors = self.errors + 1
        exc = _exc_info()[1] if _exc_info is not None else None
        if exc is None:
            self.last_error = "an exception (this port does not say which)"
        else:
            self.last_error = "%s: %s" % (type(exc).__name__, exc)
        if sparse(n):
            self.ctx.log("step '%s': %s, dropped %s: %s (%d so far)"
                         % (self.id, what or self.what, _short(value), self.last_error, n))

    def flush(self):
        pass

    def close(self):
        pass

    def out_count(self):
        return self.n_out

    def stats(self):
        s = {"in": self.n_in, "out": self.out_count(), "dropped": self.dropped,
             "errors": self.errors}
        if self.last_error is not None:
            s["last_error"] = self.last_error
        return s
