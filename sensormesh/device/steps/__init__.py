# The built-in steps every device runs between its sources and its sinks.
#
# A device builds its assignment into a chain of step objects that call each other directly,
# value by value: a step's put(value) does its work and hands the result to self.emit, which
# is the downstream step's own put (bound once at wiring) when there is one downstream, a
# small fan-out function when there are several. A chain of one-output steps therefore costs
# one Python call per step per value. Timing (window time frames, throttling) uses the
# loop's timers through ctx.call_later; no step reads the clock per value.
#
# Step protocol (the runtime relies on exactly this):
#   inlet(port) -> fn(value)   the callable an upstream calls for input `port` (the hot path)
#   push(value, port=0)        the same for one value, looked up per call (tests, odd callers)
#   connect(target, port=0)    send output to a step (its inlet(port)) or to a callable
#   flush()                    emit what is held back (partial windows, throttled value);
#                              the runtime calls it upstream-first when it stops a chain
#   close()                    cancel timers, close files; emits nothing
#   stats() -> dict            "in", "out", "dropped", "errors" and per-type extras
# ctx, given by the runtime: now() ms, call_later(ms, fn) -> handle with cancel(),
# resolve("module:name") -> object, deliver(step_id, value), log(text).
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
import json
import sys

_dumps = json.dumps
_exc_info = getattr(sys, "exc_info", None)  # missing on some MicroPython ports (ESP32)


class StepError(Exception):
    """A step spec with an unknown type, a wrong number of inputs or a bad parameter."""


class _Missing:
    pass


_NONE = _Missing()  # "no value yet": unequal to every value a sensor can produce


def nowhere(value):
    # emit target of a step nobody has connected
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


class Outlet:
    """connect() for runtime objects that produce values but are not steps (sources, pipe_in)."""

    def connect(self, target, port=0):
        self.outputs.append(target.inlet(port) if hasattr(target, "inlet") else target)
        self.emit = emitter(self.outputs)


def _short(value):
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _path(step, key):
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


def _dig(value, path):
    # An int part also finds a dict's string key ("0"): JSON objects only have string keys.
    for k in path:
        try:
            value = value[k]
        except Exception:
            if type(k) is not int or type(value) is not dict:
                raise
            value = value[str(k)]
    return value


AGGS = ("mean", "min", "max", "sum", "count", "list")


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
        self._wire()

    def set_outputs(self, fns):
        """Replace the outputs with a list of callables fn(value)."""
        if self.SINK and fns:
            raise self.bad("%s is a sink and has no outputs" % self.TYPE)
        self.outputs = list(fns)
        self._wire()

    def _wire(self):
        self.emit = emitter(self.outputs)

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
        if n & (n - 1) == 0:
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


# -- user functions ----------------------------------------------------------------------------
class _UserStep(Step):
    ARGS = ("fn",)

    def setup(self, params, n_inputs):
        ref = self.str_param("fn", None)
        try:
            fn = self.ctx.resolve(ref)
        except Exception as e:
            raise self.bad("fn '%s': %s" % (ref, e))
        self.instance = None
        if isinstance(fn, type):
            # A class is a stateful step: one instance per step, made here, called per value.
            try:
                fn = fn()
            except Exception as e:
                raise self.bad("fn '%s': making an instance failed: %s: %s"
                               % (ref, type(e).__name__, e))
            self.instance = fn
        if not callable(fn):
            raise self.bad("fn '%s' is not callable" % ref)
        self.fn = fn
        self.what = "fn '%s' raised" % ref

    def close(self):
        close = getattr(self.instance, "close", None)
        self.instance = None
        if close is not None:
            close()


class Map(_UserStep):
    TYPE = "map"

    def put(self, value):
        self.n_in += 1
        try:
            value = self.fn(value)
        except Exception:
            self.failed(value)
            return
        self.emit(value)

    def out_count(self):
        return self.n_in - self.errors


class Filter(_UserStep):
    TYPE = "filter"

    def put(self, value):
        self.n_in += 1
        try:
            keep = self.fn(value)
        except Exception:
            self.failed(value)
            return
        if keep:
            self.n_out += 1
            self.emit(value)


# -- field -------------------------------------------------------------------------------------
class Field(Step):
    TYPE = "field"
    ARGS = ("key",)

    def setup(self, params, n_inputs):
        self.path = _path(self, params.get("key"))
        self.what = "no field %r" % (params.get("key"),)
        if len(self.path) == 1 and type(self.path[0]) is not int:
            self.key = self.path[0]
            self.put = self._put_key

    def _put_key(self, value):
        self.n_in += 1
        try:
            value = value[self.key]
        except Exception:
            self.failed(value)
            return
        self.emit(value)

    def put(self, value):
        self.n_in += 1
        try:
            value = _dig(value, self.path)
        except Exception:
            self.failed(value)
            return
        self.emit(value)

    def out_count(self):
        return self.n_in - self.dropped


# -- windows -----------------------------------------------------------------------------------
def _aggregate(agg, values, n):
    # values: a list of the window's values (sliding windows), n = len(values) > 0
    if agg == "mean":
        return sum(values) / n
    if agg == "sum":
        return sum(values)
    if agg == "min":
        return min(values)
    if agg == "max":
        return max(values)
    if agg == "count":
        return n
    return values


class Window(Step):
    """Tumbling window: closes after `values` values or `time-frame` ms after its first value.

    sum/mean/min/max/count keep a running aggregate, not the values, so a long time window
    costs no memory; only agg=list holds the values."""
    TYPE = "window"
    ARGS = ("time-frame", "values", "agg")

    def setup(self, params, n_inputs):
        self.frame = self.int_param("time-frame", 0, 0)
        self.n = self.int_param("values", 0, 0)
        if not (self.frame or self.n):
            raise self.bad("window needs time-frame or values > 0")
        self.agg = agg = self.choice_param("agg", "mean", AGGS)
        self.what = "window %s needs numbers" % agg
        self.k = 0          # values in the open window
        self.closed = 0     # values in windows already closed
        self.timer = None
        self._reset()
        # One put per aggregate, chosen here: no per-value dispatch on agg.
        if agg == "sum" or agg == "mean":
            self.put = self._put_sum
        elif agg == "min":
            self.put = self._put_min
        elif agg == "max":
            self.put = self._put_max
        elif agg == "count":
            self.put = self._put_count
        else:
            self.put = self._put_list

    def _reset(self):
        agg = self.agg
        self.acc = 0 if (agg == "sum" or agg == "mean") else ([] if agg == "list" else None)

    def _put_sum(self, value):
        try:
            self.acc += value
        except Exception:
            self.failed(value)
            return
        self._count()

    def _put_min(self, value):
        try:
            if self.k == 0:
                self.acc = value + 0  # numbers only, as for sum
            elif value < self.acc:
                self.acc = value
        except Exception:
            self.failed(value)
            return
        self._count()

    def _put_max(self, value):
        try:
            if self.k == 0:
                self.acc = value + 0
            elif value > self.acc:
                self.acc = value
        except Exception:
            self.failed(value)
            return
        self._count()

    def _put_list(self, value):
        self.acc.append(value)
        self._count()

    def _put_count(self, value):
        self._count()

    def _count(self):
        k = self.k = self.k + 1
        if k == self.n:
            self._close()
        elif k == 1 and self.frame:
            self.timer = self.ctx.call_later(self.frame, self._expire)

    def _expire(self):
        self.timer = None
        self._close()

    def _close(self):
        k = self.k
        if not k:
            return
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        out = self.acc
        if self.agg == "mean":
            out = out / k
        elif self.agg == "count":
            out = k
        self.k = 0
        self.closed += k
        self._reset()
        self.n_out += 1
        self.emit(out)

    def flush(self):
        self._close()

    def close(self):
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def stats(self):
        self.n_in = self.closed + self.k + self.dropped  # counted here, not per value
        s = Step.stats(self)
        s["open"] = self.k
        return s


class Sliding(Step):
    """The aggregate of the last `size` values, every `slide` values once `size` arrived."""
    TYPE = "sliding"
    ARGS = ("size", "slide", "agg")

    def setup(self, params, n_inputs):
        self.size = self.int_param("size", None, 1)
        self.slide = self.int_param("slide", 1, 1)
        self.agg = self.choice_param("agg", "mean", AGGS)
        self.what = "sliding %s needs numbers" % self.agg
        self.buf = [None] * self.size  # ring buffer, allocated once
        self.i = 0                     # where the next value goes
        self.due = self.size           # values until the next emission

    def put(self, value):
        self.n_in += 1
        i = self.i
        self.buf[i] = value
        i += 1
        self.i = 0 if i == self.size else i
        self.due -= 1
        if not self.due:
            self.due = self.slide
            self._emit(self.size)

    def _emit(self, n):
        try:
            out = self._window(n)
        except Exception:
            self.failed(self.buf[self.i - 1])
            return
        self.n_out += 1
        self.emit(out)

    def _window(self, n):
        buf = self.buf
        i = self.i
        if self.agg == "list":
            return buf[i:] + buf[:i] if n == self.size else buf[:n]  # oldest first
        return _aggregate(self.agg, buf if n == self.size else buf[:n], n)

    def flush(self):
        # values arrived since the last emission: emit the window as it stands
        n = self.n_in
        fresh = (self.slide if n >= self.size else self.size) - self.due
        if fresh > 0:
            self.due = self.slide
            self._emit(n if n < self.size else self.size)


# -- joins -------------------------------------------------------------------------------------
class Zip(Step):
    """Pairs the i-th value of port 0 with the i-th value of port 1 -> [a, b].

    Only one side can be ahead, so one queue holds the waiting values of that side."""
    TYPE = "zip"
    ARGS = ("max-pending",)
    INPUTS = (2, 2)

    def setup(self, params, n_inputs):
        self.max_pending = self.int_param("max-pending", 1000, 1)
        self.q = []
        self.side = 0  # the port whose values wait in q (when q is not empty)

    def put(self, value):
        self.n_in += 1
        q = self.q
        if q and self.side:
            self.n_out += 1
            self.emit([value, q.pop(0)])
        else:
            self._wait(value, 0)

    def put1(self, value):
        self.n_in += 1
        q = self.q
        if q and not self.side:
            self.n_out += 1
            self.emit([q.pop(0), value])
        else:
            self._wait(value, 1)

    def _wait(self, value, side):
        q = self.q
        if not q:
            self.side = side
        elif len(q) >= self.max_pending:
            q.pop(0)
            n = self.dropped = self.dropped + 1
            if n & (n - 1) == 0:
                self.ctx.log("step '%s': zip port %d is more than %d values ahead, dropped its "
                             "oldest (%d so far)" % (self.id, side, self.max_pending, n))
        q.append(value)

    def close(self):
        n = len(self.q)
        if n:
            self.dropped += n
            self.ctx.log("step '%s': zip closed with %d unpaired values on port %d, dropped"
                         % (self.id, n, self.side))
            self.q = []

    def stats(self):
        s = Step.stats(self)
        s["pending"] = [0, 0]
        s["pending"][self.side] = len(self.q)
        return s


class CombineLatest(Step):
    """[latest of port 0, latest of port 1] on every value, once both ports gave one."""
    TYPE = "combine_latest"
    INPUTS = (2, 2)

    def setup(self, params, n_inputs):
        self.a = _NONE
        self.b = _NONE

    def put(self, value):
        self.n_in += 1
        self.a = value
        if self.b is not _NONE:
            self.n_out += 1
            self.emit([value, self.b])

    def put1(self, value):
        self.n_in += 1
        self.b = value
        if self.a is not _NONE:
            self.n_out += 1
            self.emit([self.a, value])


class Merge(Step):
    """Every value of every input, in arrival order."""
    TYPE = "merge"
    INPUTS = (1, None)

    def put(self, value):
        self.n_in += 1
        self.emit(value)

    def out_count(self):
        return self.n_in


# -- rate and change ---------------------------------------------------------------------------
class Throttle(Step):
    """At most one value per `interval` ms: the first of an interval, or the latest at its end."""
    TYPE = "throttle"
    ARGS = ("interval", "mode")

    def setup(self, params, n_inputs):
        self.interval = self.int_param("interval", None, 1)
        self.mode = self.choice_param("mode", "latest", ("first", "latest"))
        self.timer = None
        self.last = _NONE
        self.put = self._put_latest if self.mode == "latest" else self._put_first

    def _put_first(self, value):
        self.n_in += 1
        if self.timer is None:
            self.timer = self.ctx.call_later(self.interval, self._reopen)
            self.n_out += 1
            self.emit(value)

    def _reopen(self):
        self.timer = None

    def _put_latest(self, value):
        self.n_in += 1
        self.last = value
        if self.timer is None:
            self.timer = self.ctx.call_later(self.interval, self._release)

    def _release(self):
        self.timer = None
        value = self.last
        if value is not _NONE:
            self.last = _NONE
            self.n_out += 1
            self.emit(value)

    def flush(self):
        if self.mode == "latest" and self.timer is not None:
            self.timer.cancel()
            self._release()

    def close(self):
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


class Changes(Step):
    """Values that differ from the last one emitted (numbers: by more than `tolerance`)."""
    TYPE = "changes"
    ARGS = ("tolerance",)

    def setup(self, params, n_inputs):
        self.tolerance = self.num_param("tolerance", 0, 0)
        self.last = _NONE
        if self.tolerance:
            self.put = self._put_tolerance

    def put(self, value):
        self.n_in += 1
        if value != self.last:
            self.last = value
            self.n_out += 1
            self.emit(value)

    def _put_tolerance(self, value):
        self.n_in += 1
        try:
            if abs(value - self.last) <= self.tolerance:
                return
        except Exception:  # the first value, or not numbers: plain equality
            if value == self.last:
                return
        self.last = value
        self.n_out += 1
        self.emit(value)


class Alarm(Step):
    """Threshold with hysteresis; emits {"alarm", "value", "threshold"} on state changes only.

    One input: fires when value > high, clears when value < low.
    Two inputs: port 1 sets the threshold t; fires when value > t, clears when
    value < t - hysteresis."""
    TYPE = "alarm"
    ARGS = ("high", "low", "hysteresis", "key")
    INPUTS = (1, 2)

    def setup(self, params, n_inputs):
        self.dynamic = n_inputs == 2
        if self.dynamic:
            for name in ("high", "low"):
                if name in params:
                    raise self.bad("alarm with 2 inputs takes its threshold from port 1, "
                                   "not '%s' (use hysteresis)" % name)
            self.hysteresis = self.num_param("hysteresis", 0, 0)
            self.hi = self.lo = None
        else:
            if "hysteresis" in params:
                raise self.bad("alarm with 1 input takes high and low, not 'hysteresis'")
            self.hi = self.num_param("high", None)
            self.lo = self.num_param("low", self.hi)
            if self.lo > self.hi:
                raise self.bad("alarm low (%r) must be <= high (%r)" % (self.lo, self.hi))
        key = params.get("key")
        self.path = None if key is None else _path(self, key)
        self.what = "alarm needs a number"
        self.unarmed = 0   # values dropped before the first threshold
        self.on = None     # unknown until the first value
        self.x = _NONE     # the last value compared

    def inlet(self, port):
        fn = Step.inlet(self, port)
        if port and not self.dynamic:
            raise self.bad("alarm with high/low has one input")
        return fn

    def put(self, value):
        self.n_in += 1
        try:
            x = value if self.path is None else _dig(value, self.path)
            x + 0
        except Exception:
            self.failed(value)
            return
        if self.hi is None:
            # no threshold yet: counted, logged once, not an error
            self.dropped += 1
            self.unarmed += 1
            if self.unarmed == 1:
                self.ctx.log("step '%s': alarm has no threshold yet (port 1), dropping values"
                             % self.id)
            return
        self.x = x
        self._check(x)

    def put1(self, t):
        self.n_in += 1
        try:
            t + 0
        except Exception:
            self._bad_threshold(t)
            return
        self.hi = t
        self.lo = t - self.hysteresis
        if self.x is not _NONE:
            self._check(self.x)

    def _bad_threshold(self, t):
        self.failed(t, "alarm threshold needs a number")

    def _check(self, x):
        on = self.on
        if on:
            if x < self.lo:
                self._set(False, x, self.lo)
        elif on is None:
            self.on = x > self.hi
            if self.on:
                self._set(True, x, self.hi)
        elif x > self.hi:
            self._set(True, x, self.hi)

    def _set(self, on, x, t):
        self.on = on
        self.n_out += 1
        self.emit({"alarm": on, "value": x, "threshold": t})

    def stats(self):
        s = Step.stats(self)
        s["alarm"] = self.on
        return s


# -- sinks -------------------------------------------------------------------------------------
class Print(Step):
    """One JSON line per value on stdout; with `label`: {"label": label, "value": value}."""
    TYPE = "print"
    ARGS = ("label",)
    SINK = True

    def setup(self, params, n_inputs):
        self.label = params.get("label")
        if self.label is not None:
            self.str_param("label", None)
        self.write = sys.stdout.write  # tests replace it

    def put(self, value):
        self.n_in += 1
        if self.label is not None:
            value = {"label": self.label, "value": value}
        self.write(_dumps(value) + "\n")

    def flush(self):
        f = getattr(sys.stdout, "flush", None)
        if f is not None:
            f()

    def out_count(self):
        return self.n_in


def _cell(x):
    if type(x) is str:
        s = x
    elif x is None:
        return ""
    else:
        s = _dumps(x)  # numbers, true/false, nested lists/objects as JSON
    if '"' in s or "," in s or "\n" in s or "\r" in s:
        return '"' + s.replace('"', '""') + '"'
    return s


class Csv(Step):
    """Appends one row per value to `path`.

    dict values: one column per key, `columns` or else the sorted keys of the first value;
    list values: one column per item; anything else: one column. A header row (the columns)
    is written once, and only into an empty file, so a restarted device appends."""
    TYPE = "csv"
    ARGS = ("path", "columns")
    SINK = True

    def setup(self, params, n_inputs):
        self.path = self.str_param("path", None)
        self.what = "csv write to '%s' failed" % self.path
        cols = params.get("columns")
        if cols is not None:
            if type(cols) is not list or not cols:
                raise self.bad("columns must be a non-empty list of names, got %r" % (cols,))
            for c in cols:
                if type(c) is not str or not c:
                    raise self.bad("columns must be a non-empty list of names, got %r" % (cols,))
        self.columns = cols
        import os
        try:
            self.header_due = os.stat(self.path)[6] == 0
        except OSError:
            self.header_due = True
        try:
            self.f = open(self.path, "a")
        except OSError as e:
            raise self.bad("csv cannot open path '%s': %s" % (self.path, e))

    def put(self, value):
        self.n_in += 1
        try:
            self._row(value)
        except Exception:
            self.failed(value)

    def _row(self, value):
        if self.f is None:
            raise OSError("file closed")
        cols = self.columns
        if type(value) is dict:
            if cols is None:
                cols = self.columns = sorted(value)
            cells = [_cell(value.get(c)) for c in cols]
        elif type(value) is list or type(value) is tuple:
            cells = [_cell(x) for x in value]
        else:
            cells = [_cell(value)]
        if self.header_due:
            self.header_due = False
            if cols is not None:
                self.f.write(",".join([_cell(c) for c in cols]) + "\n")
        self.f.write(",".join(cells) + "\n")

    def flush(self):
        if self.f is not None:
            self.f.flush()

    def close(self):
        f = self.f
        self.f = None
        if f is not None:
            f.flush()
            f.close()

    def out_count(self):
        return self.n_in - self.dropped


class Callback(Step):
    """Hands every value to ctx.deliver(step_id, value); the runtime batches them to the
    controller, which calls the user's callback registered under `name`."""
    TYPE = "callback"
    ARGS = ("name",)
    SINK = True

    def setup(self, params, n_inputs):
        self.name = self.str_param("name", self.id)
        self.deliver = self.ctx.deliver

    def put(self, value):
        self.n_in += 1
        self.deliver(self.id, value)

    def out_count(self):
        return self.n_in


TYPES = {
    "map": Map, "filter": Filter, "field": Field, "window": Window, "sliding": Sliding,
    "zip": Zip, "combine_latest": CombineLatest, "merge": Merge, "throttle": Throttle,
    "changes": Changes, "alarm": Alarm, "print": Print, "csv": Csv, "callback": Callback,
}


def build(spec, ctx):
    """{"id", "type", "params", "inputs"} -> a step object connected to nothing yet.

    Raises StepError naming the step, and the parameter when one is wrong."""
    sid = spec.get("id") if type(spec) is dict else None
    if type(sid) is not str or not sid:
        raise StepError("step spec needs an 'id' string: %s" % _short(spec))
    kind = spec.get("type")
    cls = TYPES.get(kind) if type(kind) is str else None
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
