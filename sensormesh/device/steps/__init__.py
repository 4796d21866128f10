# The built-in steps every device runs between its sources and its sinks: this module holds
# what they share at run time (Step, StepError, Outlet, emitter); each family of types lives in a
# module of its own (kinds.FAMILIES), imported when an assignment first names one of its types.
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
# Rarely called methods (Rarely below): what a running step does only at teardown (flush,
# close...) lives in steps/base.py, its counts (stats) in runtime/report.py, its wiring at build time in
# wiring.py; a Step finds those through __getattr__, which a board only reaches when the class has
# no such method, and the module is loaded for the call and forgotten after it on a board running
# .mpy files. The runtime's Source, PipeIn, PipeOut and Runtime do the same with their own
# modules.
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

from sensormesh.device.compat import forget
from sensormesh.device.schedule import sparse

_exc_info = getattr(sys, "exc_info", None)  # missing on some MicroPython ports (ESP32)


class StepError(Exception):
    """A step spec with an unknown type, a wrong number of inputs or a bad parameter."""


NONE = object()  # "no value yet": unequal to every value a sensor can produce


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


def one_by_one(node):
    """The emit_many of a node whose downstream takes values one at a time (or that has several
    downstreams): its current emit once per value (the probe may have swapped that emit)."""
    def each(values):
        for v in values:
            node.emit(v)
    return each


def rare_call(module, name, *args, **kw):
    """module.name(*args, **kw), where module (its full name) holds code a running pipeline rarely
    needs: imported for the call and, unless something had it loaded already, forgotten after it
    (a board running .mpy files frees its code; compat.forget)."""
    loaded = module in sys.modules
    if not loaded:
        __import__(module)
    try:
        return getattr(sys.modules[module], name)(*args, **kw)
    finally:
        if not loaded:
            forget(module)


COUNTS = ["stats", "base_stats", "out_count"]


class Rarely:
    """Base of the runtime's classes whose rarely called methods are functions fn(obj, ...) of
    another module: RARE_IN names it, RARE the methods; BUILD names those of wiring.py, which a
    deployment loads for its wiring stage (runtime/deploy.py). A lookup that finds no such attribute on the object
    or its class comes here; a name in RARE or BUILD gives a callable that runs that function
    through rare_call, any other raises AttributeError as usual.
    RARE and BUILD are lists, as a step's ARGS are: a list's short names are made as interned
    names when its module loads (a name its code or the module that has the function holds
    anyway), while a tuple of them is a constant whose names not interned yet are string objects
    of their own, about 64 bytes each for good on a board.
    ALSO_IN and ALSO: a second such module and its methods, for a class whose rare methods are
    needed at different moments (a pipe_out's end, at a stop, apart from its connection's
    events), so each moment loads only the code it runs.
    COUNTS: the counts of every kind of node (stats, and base_stats and out_count, which a
    family's own stats uses) are runtime/report.py's, the module that gathers them for a status
    or stopped reply: gathering them loads no module per node."""
    RARE_IN = ""
    RARE = ()
    BUILD = ()
    ALSO_IN = ""
    ALSO = ()

    def __getattr__(self, name):
        if name in self.RARE:
            module = self.RARE_IN
        elif name in self.BUILD:
            module = "sensormesh.device.steps.wiring"
        elif name in self.ALSO:
            module = self.ALSO_IN
        elif name in COUNTS:
            module = "sensormesh.device.runtime.report"
        else:
            raise AttributeError(name)
        obj = self

        def call(*args, **kw):
            return rare_call(module, name, obj, *args, **kw)
        return call


class Outlet(Rarely):
    """Runtime objects that produce values but are not steps (sources, pipe_in): their connect()
    is wiring.connect (wiring is build time)."""
    RARE_IN = "sensormesh.device.steps.base"
    RARE = ["flush"]
    BUILD = ["connect"]


class Step(Rarely):
    TYPE = "?"
    ARGS = ()           # the parameter names this step takes (a family's: a list, see Rarely)
    INPUTS = (1, 1)     # least and most inputs (None: no limit)
    SINK = False
    # The methods every step has whose code is elsewhere (module notes): in steps/base.py push,
    # flush and close; in runtime/report.py the counts (Rarely: COUNTS; stats, base_stats: what a
    # family's own stats extends, out_count); in wiring.py the wiring (inlet, inlet_many, connect, set_outputs, bad, setup: a
    # family's own setup comes first, base_inlet: what a family's own inlet extends). A family
    # defines the ones it needs differently in its class, as usual. A step is made and set up by
    # make.build (a family's parameter checks may be make.py's too: make.SETUPS).
    RARE_IN = "sensormesh.device.steps.base"
    RARE = ["push", "put", "flush", "close"]
    BUILD = ["setup", "bad", "inlet", "connect", "set_outputs", "inlet_many", "base_inlet"]
    # counts as a step starts (each becomes the step's own once it changes)
    n_in = 0
    n_out = 0
    dropped = 0
    errors = 0
    last_error = None
    what = "failed"

    def failed(self, value, what=None):
        """Count and (at the 1st, 2nd, 4th, 8th... error) log a value this step could not
        process, `what` (default self.what) saying why. Call it from the except block that
        caught the error; hot paths call it with the value only (see the MicroPython note)."""
        self.dropped += 1
        n = self.errors = self.errors + 1
        exc = _exc_info()[1] if _exc_info is not None else None
        # "": a port without sys.exc_info cannot say which exception (base.py says so in words)
        self.last_error = "" if exc is None else "%s: %s" % (type(exc).__name__, exc)
        if sparse(n):
            try:
                # the log line is base.py's (loaded for it): with no room for that code now,
                # the value is counted only
                rare_call("sensormesh.device.steps.base", "failed", self, value, what or self.what)
            except MemoryError:
                pass
