# The built-in steps every device runs between its sources and its sinks: this module holds
# what they share (Step, StepError, Outlet, emitter, build); each family of types lives in a
# module of its own (TYPES below), imported when an assignment first names one of its types.
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
# Parameters and semantics: docs/steps.md.
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


def batch_emit(node, target, port):
    """node.emit_many after node.outputs changed: the one downstream's batch inlet (its
    inlet_many(port), a fn(list)) when it has one, else the values one by one."""
    many = None
    if len(node.outputs) == 1 and target is not None and hasattr(target, "inlet_many"):
        many = target.inlet_many(port)
    return many or one_by_one(node)


class Outlet:
    """connect() for runtime objects that produce values but are not steps (sources, pipe_in)."""

    def connect(self, target, port=0):
        self.outputs.append(target.inlet(port) if hasattr(target, "inlet") else target)
        self.emit = emitter(self.outputs)
        self.wired = self.emit
        self.emit_many = batch_emit(self, target, port)


def _short(value):
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def key_path(step, key):
    """field/alarm key -> list of keys: "accel.0" -> ["accel", 0]; 3 -> [3]; ["a", 1] as is."""
    if type(key) is int:
        return [key]
    if type(key) is list and key:
        for k in key:
            if type(k) is not int and (type(k) is not str or not k):
                raise step.bad("key %r: list items must be names or indexes" % (key,))
        return key
    if type(key) is not str or not key:
        raise step.bad("key must be a name, an index or a dotted path, got %r" % (key,))
    out = []
    for part in key.split("."):
        if not part:
            raise step.bad("key %r has an empty part" % key)
        digits = part[1:] if part[0] == "-" else part
        out.append(int(part) if digits.isdigit() else part)
    return out


def dig(value, path):
    # An int part also finds a dict's string key ("0"): JSON objects only have string keys.
    for k in path:
        try:
            value = value[k]
        except Exception:
            if type(k) is not int or type(value) is not dict:
                raise
            value = value[str(k)]
    return value



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
        for name in params:
            if name not in self.ARGS:
                raise self.bad("unknown parameter '%s' (%s takes: %s)"
                               % (name, self.TYPE, ", ".join(self.ARGS) or "none"))
        self.setup(params, n_inputs)

    def setup(self, params, n_inputs):
        pass

    # -- parameters (build time only) ---------------------------------------------------------
    def bad(self, text):
        return StepError("step '%s': %s" % (self.id, text))

    def int_param(self, name, default, least):
        v = self.params.get(name, default)
        if v is None:
            raise self.bad("%s needs parameter '%s'" % (self.TYPE, name))
        if type(v) is float:
            try:
                if v == int(v):
                    v = int(v)
            except (OverflowError, ValueError):
                pass
        if type(v) is not int or v < least:
            raise self.bad("%s must be an integer >= %d, got %r" % (name, least, v))
        return v

    def num_param(self, name, default, least=None):
        v = self.params.get(name, default)
        if v is None:
            raise self.bad("%s needs parameter '%s'" % (self.TYPE, name))
        if (type(v) is not int and type(v) is not float) or v != v:
            raise self.bad("%s must be a number, got %r" % (name, v))
        if least is not None and v < least:
            raise self.bad("%s must be >= %s, got %r" % (name, least, v))
        return v

    def choice_param(self, name, default, choices):
        v = self.params.get(name, default)
        if v not in choices:
            raise self.bad("%s must be one of %s, got %r" % (name, "|".join(choices), v))
        return v

    def str_param(self, name, default):
        v = self.params.get(name, default)
        if type(v) is not str or not v:
            raise self.bad("%s must be a non-empty string, got %r" % (name, v))
        return v

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
        if self.SINK:
            raise self.bad("%s is a sink and has no outputs" % self.TYPE)
        if hasattr(target, "inlet"):
            fn = target.inlet(port)
        elif callable(target) and port == 0:
            fn = target
        else:
            raise self.bad("cannot connect to %r port %r" % (target, port))
        self.outputs.append(fn)
        self._wire(target, port)

    def set_outputs(self, fns):
        """Replace the outputs with a list of callables fn(value)."""
        if self.SINK and fns:
            raise self.bad("%s is a sink and has no outputs" % self.TYPE)
        self.outputs = list(fns)
        self._wire(None, 0)

    def _wire(self, target, port):
        self.emit = emitter(self.outputs)
        self.emit_many = batch_emit(self, target, port)

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


# Step type -> the family module (sensormesh/device/steps/<family>.py) that holds its class.
# A family is imported the first time an assignment names one of its types (as sensors.make
# imports one driver per kind), so a board pays in heap only for the steps it runs.
TYPES = {
    "map": "user", "filter": "user", "field": "field", "window": "windows", "sliding": "windows",
    "zip": "joins", "combine_latest": "joins", "merge": "joins", "throttle": "change",
    "changes": "change", "alarm": "alarm", "print": "sinks", "csv": "sinks", "callback": "callback",
    "ema": "filters", "delta": "filters", "calibrate": "filters", "clamp": "filters",
    "median": "filters", "quantile": "filters", "heartbeat": "filters", "debounce": "filters",
    "timeout": "filters", "mqtt_out": "mqtt", "mqtt_in": "mqtt",
}


def family(name):
    """The family module `name` of TYPES' values, imported on first use."""
    mod = __import__("sensormesh.device.steps." + name)
    return getattr(mod.device.steps, name)


def step_class(kind):
    """The class of step type `kind` (imports its family); None for an unknown type."""
    fam = TYPES.get(kind) if type(kind) is str else None
    if fam is None:
        return None
    return family(fam).CLASSES[kind]


def build(spec, ctx):
    """{"id", "type", "params", "inputs"} -> a step object connected to nothing yet.

    Raises StepError naming the step, and the parameter when one is wrong."""
    sid = spec.get("id") if type(spec) is dict else None
    if type(sid) is not str or not sid:
        raise StepError("step spec needs an 'id' string: %s" % _short(spec))
    kind = spec.get("type")
    cls = step_class(kind)
    if cls is None:
        raise StepError("step '%s': unknown step type %r (built-in: %s)"
                        % (sid, kind, ", ".join(sorted(TYPES))))
    params = spec.get("params")
    if params is None:
        params = {}
    if type(params) is not dict:
        raise StepError("step '%s': params must be an object, got %s" % (sid, _short(params)))
    inputs = spec.get("inputs")
    if inputs is None:
        n = 2 if kind == "alarm" and "high" not in params else cls.INPUTS[0]
    else:
        n = len(inputs)
        lo, hi = cls.INPUTS
        if n < lo or (hi is not None and n > hi):
            if lo == hi:
                want = str(lo)
            elif hi is None:
                want = "%d or more" % lo
            else:
                want = "%d or %d" % (lo, hi)
            raise StepError("step '%s': %s takes %s input%s, got %d"
                            % (sid, kind, want, "" if want == "1" else "s", n))
    return cls(sid, params, ctx, n)
