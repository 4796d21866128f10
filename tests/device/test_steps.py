# Tests of the built-in steps (sensormesh/device/steps/). Plain assert functions: they run under
# pytest on CPython and with `micropython tests/mprun.py test_steps` on the unix port.
# Time is a manual clock in FakeCtx: timers fire only when a test advances it.
import os

from sensormesh.device import steps
from sensormesh.device.compat import MICROPYTHON
from sensormesh.device.steps import StepError
from sensormesh.device.steps.kinds import types
from sensormesh.device.steps.make import build


class FakeTimer:
    def __init__(self, when, fn):
        self.when = when
        self.fn = fn
        self.cancelled = False

    def cancel(self):
        self.cancelled = True


class FakeCtx:
    """The runtime's side of the step protocol, with a clock that moves only on advance()."""

    def __init__(self, objects=None):
        self.t = 0
        self.timers = []
        self.objects = objects or {}
        self.delivered = []
        self.logs = []

    def now(self):
        return self.t

    def call_later(self, ms, fn):
        timer = FakeTimer(self.t + ms, fn)
        self.timers.append(timer)
        return timer

    def pending(self):
        return [t for t in self.timers if not t.cancelled]

    def advance(self, ms):
        """Move the clock by ms, running due timers in time order (and those they schedule)."""
        end = self.t + ms
        while True:
            due = [t for t in self.timers if not t.cancelled and t.when <= end]
            if not due:
                break
            first = due[0]
            for t in due:
                if t.when < first.when:
                    first = t
            self.timers.remove(first)
            self.t = first.when
            first.fn()
        self.t = end

    def resolve(self, ref):
        if ref not in self.objects:
            raise KeyError("nothing shipped as " + ref)
        return self.objects[ref]

    def deliver(self, step_id, value):
        self.delivered.append((step_id, value))

    def log(self, text):
        self.logs.append(text)


def no_heap_for_next_timer(ctx):
    """ctx's next call_later raises a MemoryError (no heap free for a timer), once; returns the
    list that records the delay it was asked for."""
    real = ctx.call_later
    short = []

    def call_later(ms, fn):
        if not short:
            short.append(ms)
            raise MemoryError("memory allocation failed")
        return real(ms, fn)
    ctx.call_later = call_later
    return short


def make(kind, params=None, inputs=1, ctx=None):
    """Build a step of `kind` with `inputs` inputs, its output collected into a list."""
    ctx = ctx or FakeCtx()
    spec = {"id": "s", "type": kind, "params": params or {},
            "inputs": ["u%d" % i for i in range(inputs)]}
    step = build(spec, ctx)
    out = []
    step.connect(out.append)
    return step, out, ctx


def feed(step, values, port=0):
    for v in values:
        step.push(v, port)


def raises(fn, *words):
    """fn() must raise StepError whose message contains every word; returns the message."""
    try:
        fn()
    except StepError as e:
        msg = str(e)
        for w in words:
            assert w in msg, (w, msg)
        return msg
    raise AssertionError("no StepError")


def spec_error(kind, params, inputs=1, *words):
    return raises(lambda: make(kind, params, inputs), *words)


# -- map / filter ------------------------------------------------------------------------------
def double(v):
    return v * 2


def inverse(v):
    return 1 / v


class Counter:
    """A stateful user step: numbers values 1, 2, 3... across calls."""
    made = 0

    def __init__(self):
        Counter.made += 1
        self.n = 0
        self.closed = False

    def __call__(self, v):
        self.n += 1
        return [self.n, v]

    def close(self):
        self.closed = True


def test_map_calls_the_shipped_function():
    ctx = FakeCtx({"m:double": double})
    m, out, _ = make("map", {"fn": "m:double"}, ctx=ctx)
    feed(m, [1, 2.5, "ab"])
    assert out == [2, 5.0, "abab"]
    s = m.stats()
    assert s["in"] == 3 and s["out"] == 3 and s["dropped"] == 0 and s["errors"] == 0


def test_map_class_is_instantiated_once_and_keeps_state():
    Counter.made = 0
    ctx = FakeCtx({"m:Counter": Counter})
    m, out, _ = make("map", {"fn": "m:Counter"}, ctx=ctx)
    feed(m, ["a", "b", "c"])
    assert out == [[1, "a"], [2, "b"], [3, "c"]]
    assert Counter.made == 1
    inst = m.instance
    m.close()
    assert inst.closed


def test_map_errors_drop_count_and_log():
    ctx = FakeCtx({"m:inverse": inverse})
    m, out, _ = make("map", {"fn": "m:inverse"}, ctx=ctx)
    feed(m, [2, 0, 4, 0, 0, None])
    assert out == [0.5, 0.25]
    s = m.stats()
    assert s["in"] == 6 and s["out"] == 2 and s["dropped"] == 4 and s["errors"] == 4
    assert "ZeroDivisionError" in s["last_error"] or "TypeError" in s["last_error"]
    # logged at the 1st, 2nd and 4th error, not at the 3rd
    assert len(ctx.logs) == 3, ctx.logs
    assert "step 's'" in ctx.logs[0] and "m:inverse" in ctx.logs[0]


def test_map_errors_downstream_are_not_blamed_on_map():
    ctx = FakeCtx({"m:double": double})
    m, _, _ = make("map", {"fn": "m:double"}, ctx=ctx)

    def broken(v):
        raise ValueError("sink broke")
    m.set_outputs([broken])
    try:
        m.push(1)
    except ValueError:
        pass
    else:
        raise AssertionError("downstream error swallowed")
    assert m.stats()["errors"] == 0


def test_map_bad_references():
    ctx = FakeCtx({"m:n": 5, "m:Bad": BadInit})
    raises(lambda: make("map", {"fn": "m:nothing"}, ctx=ctx), "step 's'", "m:nothing")
    raises(lambda: make("map", {"fn": "m:n"}, ctx=ctx), "not callable")
    raises(lambda: make("map", {"fn": "m:Bad"}, ctx=ctx), "instance", "boom")
    raises(lambda: make("map", {}, ctx=ctx), "fn")
    raises(lambda: make("map", {"fn": ""}, ctx=ctx), "fn")


class BadInit:
    def __init__(self):
        raise RuntimeError("boom")


def test_filter_keeps_truthy_results():
    ctx = FakeCtx({"m:even": lambda v: v % 2 == 0})
    f, out, _ = make("filter", {"fn": "m:even"}, ctx=ctx)
    feed(f, [1, 2, 3, 4, "x", 6])
    assert out == [2, 4, 6]
    s = f.stats()
    assert s["in"] == 6 and s["out"] == 3 and s["errors"] == 1 and s["dropped"] == 1


# -- field -------------------------------------------------------------------------------------
def test_field_key_path_and_index():
    gyro = {"accel": [0.1, 0.2, 1.0], "gyro": [1, 2, 3], "temp": 24.5}
    f, out, _ = make("field", {"key": "temp"})
    f.push(gyro)
    f2, out2, _ = make("field", {"key": "accel.2"})
    f2.push(gyro)
    f3, out3, _ = make("field", {"key": 1})
    f3.push([7, 8, 9])
    f4, out4, _ = make("field", {"key": "gyro.-1"})
    f4.push(gyro)
    f5, out5, _ = make("field", {"key": ["a.b", 0]})
    f5.push({"a.b": ["x"]})
    assert out == [24.5] and out2 == [1.0] and out3 == [8] and out4 == [3] and out5 == ["x"]


def test_field_digit_key_finds_string_key_of_dict():
    f, out, _ = make("field", {"key": "0.x"})
    f.push({"0": {"x": 1}})
    f.push([{"x": 2}])
    assert out == [1, 2]


def test_field_missing_is_dropped_and_counted():
    ctx = FakeCtx()
    f, out, _ = make("field", {"key": "temp"}, ctx=ctx)
    feed(f, [{"temp": 1}, {"hum": 2}, None, 5, {"temp": 3}])
    assert out == [1, 3]
    s = f.stats()
    assert s["in"] == 5 and s["out"] == 2 and s["dropped"] == 3
    assert ctx.logs and "temp" in ctx.logs[0]


def test_field_bad_key():
    spec_error("field", {}, 1, "key")
    spec_error("field", {"key": "a..b"}, 1, "empty part")
    spec_error("field", {"key": 1.5}, 1, "key")


# -- window ------------------------------------------------------------------------------------
def test_window_count_aggregates():
    results = {}
    for agg in ("mean", "min", "max", "sum", "count", "list"):
        w, out, ctx = make("window", {"values": 3, "agg": agg})
        feed(w, [4, 1, 7, 2, 2, 2, 9])
        results[agg] = out
        assert not ctx.timers  # count windows never need a timer
    assert results["mean"] == [4.0, 2.0]
    assert type(results["mean"][0]) is float  # mean of ints is a float
    assert results["min"] == [1, 2]
    assert results["max"] == [7, 2]
    assert results["sum"] == [12, 6]
    assert results["count"] == [3, 3]
    assert results["list"] == [[4, 1, 7], [2, 2, 2]]


def test_window_and_sliding_default_to_mean():
    w, out, _ = make("window", {"values": 2})
    s, sout, _ = make("sliding", {"size": 2})
    feed(w, [1, 2])
    feed(s, [1, 2])
    assert out == [1.5] and sout == [1.5]


def test_window_lists_are_fresh_per_window():
    w, out, _ = make("window", {"values": 2, "agg": "list"})
    feed(w, [1, 2, 3, 4])
    assert out == [[1, 2], [3, 4]] and out[0] is not out[1]


def test_window_time_frame_expires_by_timer():
    w, out, ctx = make("window", {"time-frame": 1000, "agg": "mean"})
    ctx.advance(500)          # nothing happens without values: no empty windows
    assert out == [] and not ctx.timers
    w.push(1)                 # opens the window at t=500
    ctx.advance(300)
    w.push(2)
    w.push(6)
    ctx.advance(699)
    assert out == []
    ctx.advance(1)            # t=1500: 1000 ms after the first value
    assert out == [3.0]
    ctx.advance(5000)
    assert out == [3.0]       # no value, no window
    w.push(10)                # the next window opens with the next value
    ctx.advance(1000)
    assert out == [3.0, 10.0]
    s = w.stats()
    assert s["in"] == 4 and s["out"] == 2 and s["open"] == 0


def test_a_time_window_whose_timer_finds_no_heap_sets_it_with_its_next_value():
    """The first value of a time window comes when there is no heap free for the window's timer
    (a MemoryError): the value is counted, and the next value sets the timer, so the window
    closes and emits. Before, the window stayed open with no timer: it never emitted again, and
    held its device's checkpoints (and with them every acknowledgement) for good."""
    for agg, want in (("mean", 3.0), ("sum", 9), ("min", 1), ("max", 6), ("count", 3), ("list", [1, 2, 6])):
        w, out, ctx = make("window", {"time-frame": 1000, "agg": agg})
        short = no_heap_for_next_timer(ctx)
        try:
            w.push(1)
        except MemoryError:
            pass
        assert short == [1000] and out == []
        ctx.advance(300)
        w.push(2)
        w.push(6)
        ctx.advance(1000)        # 1000 ms after the value that set the timer
        assert out == [want], (agg, out)
        w.push(10)               # the next window opens as usual
        ctx.advance(1000)
        assert out[1:] == [[10] if agg == "list" else (1 if agg == "count" else 10)], (agg, out)
        s = w.stats()
        assert s["in"] == 4 and s["out"] == 2 and s["open"] == 0, (agg, s)


def test_window_values_or_time_whichever_first():
    w, out, ctx = make("window", {"time-frame": 100, "values": 3, "agg": "sum"})
    feed(w, [1, 2, 3])        # full before the timer: timer cancelled
    assert out == [6]
    assert not ctx.pending()
    w.push(4)
    ctx.advance(100)          # timer first: partial window of one value
    assert out == [6, 4]
    feed(w, [1, 1])
    ctx.advance(99)
    w.push(1)                 # third value before the timer
    assert out == [6, 4, 3]
    ctx.advance(10)
    assert out == [6, 4, 3]


def test_window_flush_emits_partial_and_close_cancels_timer():
    w, out, ctx = make("window", {"time-frame": 1000, "values": 10, "agg": "list"})
    feed(w, ["a", "b"])
    w.flush()
    assert out == [["a", "b"]]
    w.flush()                 # nothing open: nothing emitted
    assert out == [["a", "b"]]
    w.push("c")
    assert len(ctx.pending()) == 1
    w.close()
    assert not ctx.pending()
    ctx.advance(2000)
    assert out == [["a", "b"]]


def test_window_non_numbers_are_dropped_and_counted():
    for agg in ("mean", "min", "max"):
        w, out, ctx = make("window", {"values": 2, "agg": agg})
        feed(w, [1, "x", None, 3])
        assert len(out) == 1, (agg, out)
        s = w.stats()
        assert s["dropped"] == 2 and s["errors"] == 2 and s["in"] == 4, (agg, s)
        assert ctx.logs


def test_window_bad_params():
    msg = spec_error("window", {"agg": "mean"}, 1)
    assert msg == "step 's': window needs time-frame or values > 0", msg
    spec_error("window", {"values": 0, "time-frame": 0}, 1, "time-frame or values")
    spec_error("window", {"values": -1}, 1, "values", ">= 0")
    spec_error("window", {"values": 2.5}, 1, "values")
    spec_error("window", {"values": "3"}, 1, "values")
    spec_error("window", {"values": 3, "agg": "median"}, 1, "agg", "median", "mean|min")
    spec_error("window", {"values": 3, "timeframe": 10}, 1, "unknown parameter 'timeframe'",
               "time-frame")
    w, out, _ = make("window", {"values": 2.0, "agg": "count"})  # 2.0 from JSON is fine
    feed(w, [1, 1])
    assert out == [2]


# -- sliding -----------------------------------------------------------------------------------
def test_sliding_slide_one():
    s, out, _ = make("sliding", {"size": 3, "agg": "sum"})
    feed(s, [1, 2, 3, 4, 5])
    assert out == [6, 9, 12]


def test_sliding_slide_more_than_one():
    s, out, _ = make("sliding", {"size": 4, "slide": 2, "agg": "list"})
    feed(s, range(1, 10))
    assert out == [[1, 2, 3, 4], [3, 4, 5, 6], [5, 6, 7, 8]]
    s.flush()                 # value 9 arrived since the last emission
    assert out[-1] == [6, 7, 8, 9]
    s.flush()
    assert len(out) == 4


def test_sliding_slide_larger_than_size_skips_values():
    s, out, _ = make("sliding", {"size": 2, "slide": 3, "agg": "max"})
    feed(s, [1, 5, 2, 7, 3, 0, 9, 4])
    assert out == [5, 7, 9]   # windows [1,5], [7,3], [9,4]


def test_sliding_aggregates_and_partial_flush():
    s, out, _ = make("sliding", {"size": 3, "agg": "mean"})
    feed(s, [3, 6])
    assert out == []
    s.flush()
    assert out == [4.5]
    c, cout, _ = make("sliding", {"size": 2, "agg": "count"})
    feed(c, [0, 0, 0])
    assert cout == [2, 2]
    m, mout, _ = make("sliding", {"size": 2, "agg": "min"})
    feed(m, [3, 1, 2])
    assert mout == [1, 1]


def test_sliding_non_numbers_counted():
    s, out, ctx = make("sliding", {"size": 2, "agg": "sum"})
    feed(s, [1, "x", 2, 3])
    assert out == [5]
    st = s.stats()
    assert st["errors"] == 2 and st["in"] == 4 and st["out"] == 1


def test_sliding_bad_params():
    spec_error("sliding", {}, 1, "size")
    spec_error("sliding", {"size": 0}, 1, "size", ">= 1")
    spec_error("sliding", {"size": 3, "slide": 0}, 1, "slide")


# -- zip / combine_latest / merge --------------------------------------------------------------
def test_zip_pairs_in_arrival_order():
    z, out, _ = make("zip", {}, inputs=2)
    a = z.inlet(0)
    b = z.inlet(1)
    a(1)
    a(2)
    b("x")
    b("y")
    b("z")
    a(3)
    z.push(4, 0)
    z.push("w", 1)
    assert out == [[1, "x"], [2, "y"], [3, "z"], [4, "w"]]
    s = z.stats()
    assert s["in"] == 8 and s["out"] == 4 and s["dropped"] == 0


def test_zip_overflow_drops_oldest_and_counts():
    ctx = FakeCtx()
    z, out, _ = make("zip", {"max-pending": 3}, inputs=2, ctx=ctx)
    feed(z, [1, 2, 3])
    assert z.stats()["dropped"] == 0
    feed(z, [4, 5])           # 4 and 5 push 1 and 2 out
    s = z.stats()
    assert s["dropped"] == 2 and s["pending"] == [3, 0], s
    assert ctx.logs and "zip" in ctx.logs[0]
    feed(z, ["a", "b"], port=1)
    assert out == [[3, "a"], [4, "b"]]
    z.close()                 # 5 is never paired: counted at close
    s = z.stats()
    assert s["dropped"] == 3 and s["pending"] == [0, 0]


def test_zip_overflow_other_side():
    z, out, _ = make("zip", {"max-pending": 1}, inputs=2)
    feed(z, ["a", "b", "c"], port=1)
    z.push(1)
    assert out == [[1, "c"]]
    assert z.stats()["dropped"] == 2


def test_zip_needs_two_inputs():
    spec_error("zip", {}, 1, "step 's'", "zip takes 2 inputs, got 1")
    spec_error("zip", {"max-pending": 0}, 2, "max-pending")


def test_combine_latest():
    c, out, _ = make("combine_latest", {}, inputs=2)
    c.push(1, 0)
    c.push(2, 0)
    assert out == []
    c.push("a", 1)
    c.push(3, 0)
    c.push("b", 1)
    assert out == [[2, "a"], [3, "a"], [3, "b"]]
    assert c.stats()["out"] == 3


def test_merge_any_number_of_inputs():
    m, out, _ = make("merge", {}, inputs=3)
    m.inlet(2)("c")
    m.push("a", 0)
    m.inlet(1)("b")
    assert out == ["c", "a", "b"]
    assert m.stats()["in"] == 3 and m.stats()["out"] == 3
    spec_error("merge", {}, 0, "merge takes 1 or more inputs")


# -- throttle / changes ------------------------------------------------------------------------
def test_throttle_first():
    t, out, ctx = make("throttle", {"interval": 100, "mode": "first"})
    t.push(1)
    t.push(2)
    ctx.advance(50)
    t.push(3)
    ctx.advance(50)           # interval over
    t.push(4)
    t.push(5)
    ctx.advance(200)
    t.push(6)
    assert out == [1, 4, 6]
    s = t.stats()
    assert s["in"] == 6 and s["out"] == 3 and s["dropped"] == 0


def test_throttle_latest_emits_at_interval_end_by_timer():
    t, out, ctx = make("throttle", {"interval": 100})  # latest is the default
    t.push(1)
    t.push(2)
    assert out == []
    ctx.advance(60)
    t.push(3)
    ctx.advance(39)
    assert out == []
    ctx.advance(1)
    assert out == [3]
    ctx.advance(500)          # no values, no output, no timer
    assert out == [3] and not ctx.pending()
    t.push(4)
    t.flush()                 # stop: the held value leaves now
    assert out == [3, 4] and not ctx.pending()
    t.push(5)
    t.close()
    ctx.advance(1000)
    assert out == [3, 4]


def test_throttle_bad_params():
    spec_error("throttle", {}, 1, "interval")
    spec_error("throttle", {"interval": 10, "mode": "last"}, 1, "mode", "first|latest")


def test_changes_exact():
    c, out, _ = make("changes", {})
    feed(c, [1, 1, 2, 2, 2, 1, "a", "a", {"k": 1}, {"k": 1}, None, None])
    assert out == [1, 2, 1, "a", {"k": 1}, None]


def test_changes_tolerance_against_last_emitted():
    c, out, _ = make("changes", {"tolerance": 0.5})
    feed(c, [10, 10.3, 10.5, 10.6, 11.0, 11.1, 11.7, 9.0])
    # 10.6 is 0.6 from 10; the drift to 11.0, 11.1 stays within 0.5 of 10.6; 11.7 leaves it
    assert out == [10, 10.6, 11.7, 9.0], out
    d, dout, _ = make("changes", {"tolerance": 1})
    feed(d, ["on", "on", "off", None, None, 3, 3.5, 5])
    assert dout == ["on", "off", None, 3, 5]
    spec_error("changes", {"tolerance": -1}, 1, "tolerance")


# -- alarm -------------------------------------------------------------------------------------
def test_alarm_static_hysteresis():
    a, out, _ = make("alarm", {"high": 30, "low": 25})
    feed(a, [20, 29, 31, 35, 28, 26, 25, 24.9, 24, 30, 30.5])
    assert out == [
        {"alarm": True, "value": 31, "threshold": 30},
        {"alarm": False, "value": 24.9, "threshold": 25},
        {"alarm": True, "value": 30.5, "threshold": 30},
    ], out
    assert a.stats()["alarm"] is True


def test_alarm_first_value_sets_state():
    a, out, _ = make("alarm", {"high": 30, "low": 25})
    a.push(40)                # first value above: alarm on, emitted
    assert out == [{"alarm": True, "value": 40, "threshold": 30}]
    b, bout, _ = make("alarm", {"high": 30, "low": 25})
    b.push(27)                # first value between: off, nothing emitted
    b.push(26)
    b.push(10)                # already off: nothing
    assert bout == []


def test_alarm_key_and_bad_values():
    a, out, ctx = make("alarm", {"high": 1.5, "low": 0.5, "key": "accel.2"})
    a.push({"accel": [0, 0, 1.0]})
    a.push({"accel": [0, 0, 2.0]})
    a.push({"gyro": 1})
    a.push({"accel": [0, 0, "x"]})
    a.push({"accel": [0, 0, 0.1]})
    assert [o["alarm"] for o in out] == [True, False]
    assert out[0]["value"] == 2.0
    assert a.stats()["errors"] == 2


def test_alarm_dynamic_threshold():
    a, out, ctx = make("alarm", {"hysteresis": 2}, inputs=2)
    a.push(50)                # no threshold yet: dropped and counted
    assert a.stats()["dropped"] == 1 and ctx.logs
    thr = a.inlet(1)
    thr(60)
    a.push(55)                # first value: 55 < 60, off, not emitted
    a.push(61)
    a.push(59)                # within hysteresis
    a.push(58.5)
    a.push(57.9)              # below 60 - 2
    assert out == [
        {"alarm": True, "value": 61, "threshold": 60},
        {"alarm": False, "value": 57.9, "threshold": 58},
    ], out
    thr(50)                   # lower threshold: the last value (57.9) is now above it
    assert out[-1] == {"alarm": True, "value": 57.9, "threshold": 50}
    a.push(49)
    assert len(out) == 3      # 49 is not below 48
    a.push(10, 0)
    a.push(100, 1)            # threshold through push(value, port)
    assert out[-1]["alarm"] is False and out[-1]["threshold"] == 48
    assert len(out) == 4


def test_alarm_low_defaults_to_high():
    a, out, _ = make("alarm", {"high": 10})
    feed(a, [5, 11, 10, 9.5, 12])
    assert [(o["alarm"], o["value"]) for o in out] == [(True, 11), (False, 9.5), (True, 12)]


def test_alarm_bad_params():
    spec_error("alarm", {"low": 1}, 1, "high")
    spec_error("alarm", {"high": 1, "low": 2}, 1, "low", "<= high")
    spec_error("alarm", {"high": 2, "low": 1, "hysteresis": 1}, 1, "hysteresis")
    spec_error("alarm", {"high": 2, "hysteresis": 1}, 2, "port 1", "high")
    spec_error("alarm", {"hysteresis": -1}, 2, "hysteresis")
    spec_error("alarm", {"high": "hot", "low": 1}, 1, "high", "number")
    spec_error("alarm", {}, 3, "alarm takes 1 or 2 inputs, got 3")
    a, _, _ = make("alarm", {"high": 2, "low": 1})
    raises(lambda: a.inlet(1), "one input")


# -- sinks -------------------------------------------------------------------------------------
def test_print_writes_one_json_line_per_value():
    p = build({"id": "p", "type": "print", "params": {}, "inputs": ["x"]}, FakeCtx())
    lines = []
    p.write = lines.append
    p.push({"a": [1, 2.5]})
    p.push(None)
    p.push(True)
    assert lines == ['{"a": [1, 2.5]}\n', "null\n", "true\n"], lines
    q = build({"id": "q", "type": "print", "params": {"label": "temp"}, "inputs": ["x"]},
              FakeCtx())
    q.write = lines.append
    q.push(21.5)
    import json
    assert json.loads(lines[-1]) == {"label": "temp", "value": 21.5}
    assert p.stats()["in"] == 3
    raises(lambda: p.connect(lines.append), "sink")


def test_print_on_cpython_drops_a_value_json_cannot_write_and_prints_the_next():
    ctx = FakeCtx()
    p = build({"id": "p", "type": "print", "params": {}, "inputs": ["x"]}, ctx)
    lines = []
    p.write = lines.append
    p.push(1)
    p.push(object())      # CPython's json refuses it; MicroPython's writes it as text
    p.push(2)
    if MICROPYTHON:
        assert len(lines) == 3 and lines[0] == "1\n" and lines[2] == "2\n", lines
        return
    assert lines == ["1\n", "2\n"], lines
    s = p.stats()
    assert s["in"] == 3 and s["dropped"] == 1 and s["errors"] == 1, s
    assert "cannot be written as JSON" in " ".join(ctx.logs), ctx.logs


def tmp_path(name):
    base = "/tmp" if os.stat("/tmp") else "."
    path = "%s/sensormesh_test_%s.csv" % (base, name)
    try:
        os.remove(path)
    except OSError:
        pass
    return path


def read(path):
    with open(path) as f:
        return f.read()


def test_csv_dicts_header_once():
    path = tmp_path("dicts")
    c = build({"id": "c", "type": "csv", "params": {"path": path}, "inputs": ["x"]}, FakeCtx())
    c.push({"t": 1, "h": 40})
    c.push({"t": 2.5, "h": 41, "extra": 1})
    c.push({"t": 3})
    c.flush()
    assert read(path) == "h,t\n40,1\n41,2.5\n,3\n", repr(read(path))
    c.close()
    # a restarted sink appends to the file and writes no second header
    c2 = build({"id": "c", "type": "csv", "params": {"path": path}, "inputs": ["x"]}, FakeCtx())
    c2.push({"t": 4, "h": 42})
    c2.close()
    assert read(path) == "h,t\n40,1\n41,2.5\n,3\n42,4\n", repr(read(path))
    os.remove(path)


def test_csv_header_names_units():
    path = tmp_path("units")
    c = build({"id": "c", "type": "csv", "inputs": ["x"],
               "params": {"path": path, "units": {"temperature": "\u00b0C", "humidity": "%"}}}, FakeCtx())
    c.push({"temperature": 21, "humidity": 40, "raw": 7})
    c.close()
    assert read(path) == "humidity [%],raw,temperature [\u00b0C]\n40,7,21\n", repr(read(path))
    os.remove(path)
    c = build({"id": "c", "type": "csv", "inputs": ["x"],
               "params": {"path": path, "units": {"value": "cm"}}}, FakeCtx())
    c.push(12.5)
    c.push(13)
    c.close()
    assert read(path) == "value [cm]\n12.5\n13\n", repr(read(path))
    os.remove(path)


def test_csv_columns_lists_scalars_and_quoting():
    path = tmp_path("cols")
    c = build({"id": "c", "type": "csv", "params": {"path": path, "columns": ["x", "y"]},
               "inputs": ["i"]}, FakeCtx())
    c.push([1, "a,b"])
    c.push({"y": 'say "hi"', "x": None, "z": 3})
    c.push(True)
    c.push([[1, 2]])
    c.close()
    want = 'x,y\n1,"a,b"\n,"say ""hi"""\ntrue\n"[1, 2]"\n'
    assert read(path) == want, repr(read(path))
    os.remove(path)
    path = tmp_path("scalars")
    s = build({"id": "s", "type": "csv", "params": {"path": path}, "inputs": ["i"]}, FakeCtx())
    s.push(1)
    s.push(2.5)
    s.close()
    assert read(path) == "1\n2.5\n"  # no columns known: no header
    ctx = FakeCtx()
    s = build({"id": "s", "type": "csv", "params": {"path": path}, "inputs": ["i"]}, ctx)
    s.close()
    s.push(3)                 # after close: dropped and counted, never raised
    assert s.stats()["dropped"] == 1 and ctx.logs
    os.remove(path)


def test_csv_names_dict_columns_that_come_after_plain_values():
    # A plain value first (a marker, a number) must not cost the dicts after it their header:
    # the columns of the first dict are named in a header row just before its row.
    path = tmp_path("late")
    c = build({"id": "c", "type": "csv", "params": {"path": path}, "inputs": ["i"]}, FakeCtx())
    c.push(7)
    c.push([1, 2])
    c.push({"t": 1, "h": 40})
    c.push(8)
    c.push({"t": 2, "h": 41})
    c.close()
    assert read(path) == "7\n1,2\nh,t\n40,1\n8\n41,2\n", repr(read(path))
    os.remove(path)
    # with a unit for plain values: their header first, then the dicts' own
    c = build({"id": "c", "type": "csv", "inputs": ["i"],
               "params": {"path": path, "units": {"value": "cm", "t": "s"}}}, FakeCtx())
    c.push(12.5)
    c.push({"t": 1})
    c.close()
    assert read(path) == "value [cm]\n12.5\nt [s]\n1\n", repr(read(path))
    os.remove(path)


def test_csv_restarted_after_plain_values_writes_the_late_header_where_it_was_due():
    # A restarted sink takes its position back from the upstream's mark and skips the replayed
    # rows the file holds; the header the first dict brings must count there exactly as it did
    # in the first process, or the bytes no longer match and the file is cut in the wrong place.
    path = tmp_path("late_restart")
    spec = {"id": "c", "type": "csv", "params": {"path": path}, "inputs": ["i"]}
    c = build(spec, FakeCtx())
    c.push(7)
    mark = c.position()                 # acknowledged here; the rest is replayed after the kill
    later = [{"t": 1, "h": 40}, 8, {"t": 2, "h": 41}]
    for v in later:
        c.push(v)
    c.flush()                           # then the process is killed
    c2 = build(spec, FakeCtx())
    c2.adopt(mark[0], mark[1])
    for v in later + [{"t": 3, "h": 42}]:
        c2.push(v)
    c2.close()
    assert read(path) == "7\nh,t\n40,1\n8\n41,2\n42,3\n", repr(read(path))
    os.remove(path)


def test_csv_restarted_takes_its_columns_back_from_the_header_not_the_first_replayed_dict():
    # Dicts whose keys change: the rows follow the columns of the first dict (its header). A
    # restarted sink must write the replayed rows as the file holds them, with those columns,
    # whatever keys the first replayed dict has, or the bytes no longer match and the file is
    # cut in the wrong place. Header cells with units and quotes are read back too.
    for units, head in ((None, 'a,"b,x"'), ({"a": "s"}, 'a [s],"b,x"')):
        path = tmp_path("cols_restart")
        spec = {"id": "c", "type": "csv", "params": {"path": path}, "inputs": ["i"]}
        if units:
            spec["params"]["units"] = units
        c = build(spec, FakeCtx())
        c.push(0)                           # a plain value first: the header comes late
        c.push({"a": 1, "b,x": 2})
        mark = c.position()                 # acknowledged here; the rest is replayed after the kill
        later = [{"a": 3, "b,x": 4, "c": 5}, {"a": 6, "b,x": 7}]
        for v in later:
            c.push(v)
        c.flush()                           # then the process is killed
        c2 = build(spec, FakeCtx())
        c2.adopt(mark[0], mark[1])
        for v in later + [{"c": 0, "a": 8, "b,x": 9}]:
            c2.push(v)
        c2.close()
        want = "0\n%s\n1,2\n3,4\n6,7\n8,9\n" % head
        assert read(path) == want, (units, repr(read(path)))
        assert c2.stats().get("skipped") == 2, c2.stats()
        os.remove(path)


def test_csv_restarted_with_a_header_it_cannot_read_back_says_so():
    path = tmp_path("long_head")
    cols = ["k%04d" % i for i in range(300)]          # a header over the bound read back
    spec = {"id": "c", "type": "csv", "params": {"path": path}, "inputs": ["i"]}
    c = build(spec, FakeCtx())
    c.push(dict([(k, 1) for k in cols]))
    mark = c.position()
    c.close()
    ctx = FakeCtx()
    c2 = build(spec, ctx)
    c2.adopt(mark[0], mark[1])
    c2.close()
    assert c2.columns is None and ctx.logs and "cannot read its columns back" in str(ctx.logs), ctx.logs
    os.remove(path)


def test_csv_bad_params():
    spec_error("csv", {}, 1, "path")
    spec_error("csv", {"path": "/nonexistent-dir/x.csv"}, 1, "cannot open", "nonexistent")
    spec_error("csv", {"path": "/tmp/x.csv", "columns": "a,b"}, 1, "columns")


def test_callback_delivers_with_step_id():
    ctx = FakeCtx()
    c = build({"id": "cb", "type": "callback", "params": {"name": "on_temp"}, "inputs": ["x"]},
              ctx)
    c.push(1)
    c.push({"a": 2})
    assert ctx.delivered == [("cb", 1), ("cb", {"a": 2})]
    assert c.stats()["in"] == 2 and c.stats()["out"] == 2
    # its name is the controller's: checked here (the step id by default), not kept
    d = build({"id": "cb2", "type": "callback", "inputs": ["x"]}, ctx)
    d.push(3)
    assert ctx.delivered[-1] == ("cb2", 3) and not hasattr(d, "name")
    try:
        build({"id": "cb3", "type": "callback", "params": {"name": ""}, "inputs": ["x"]}, ctx)
        assert False, "an empty callback name was taken"
    except StepError as e:
        assert "name" in str(e)


# -- wiring and build --------------------------------------------------------------------------
def test_chain_is_one_call_per_step():
    ctx = FakeCtx({"m:double": double})
    m = build({"id": "m", "type": "map", "params": {"fn": "m:double"}, "inputs": ["src"]}, ctx)
    w = build({"id": "w", "type": "window", "params": {"values": 2, "agg": "sum"},
               "inputs": ["m"]}, ctx)
    cb = build({"id": "cb", "type": "callback", "params": {"name": "x"}, "inputs": ["w"]}, ctx)
    m.connect(w)
    w.connect(cb)
    # one downstream: emit is the downstream's own put, no wrapper in between
    assert m.emit == w.put and w.emit == cb.put
    feed(m, [1, 2, 3, 4])
    assert ctx.delivered == [("cb", 6), ("cb", 14)]


def test_runs_pass_through_map_and_filter_as_lists_with_the_same_results():
    # put_many (a run of values) gives what put per value gives: same values, order, counts
    ctx = FakeCtx({"m:inverse": inverse, "m:pos": lambda v: v > 0.3, "m:Counter": Counter})
    m = build({"id": "m", "type": "map", "params": {"fn": "m:inverse"}, "inputs": ["src"]}, ctx)
    f = build({"id": "f", "type": "filter", "params": {"fn": "m:pos"}, "inputs": ["m"]}, ctx)
    runs = []
    m.connect(f)
    f.connect(runs.append)      # a plain callable downstream takes values one at a time
    # a single downstream with put_many: the run goes to it as one call
    assert m.emit_many == f.put_many and m.inlet_many(0) == m.put_many
    m.put_many([2, 0, 4, 1, "x", 1])
    assert runs == [0.5, 1.0, 1.0], runs
    assert m.stats()["in"] == 6 and m.stats()["out"] == 4 and m.stats()["errors"] == 2
    assert f.stats()["in"] == 4 and f.stats()["out"] == 3 and f.stats()["errors"] == 0
    assert len(ctx.logs) == 2, ctx.logs        # each failed value logged as put logs it
    # a stateful function is called once per value, in order
    c = build({"id": "c", "type": "map", "params": {"fn": "m:Counter"}, "inputs": ["src"]}, ctx)
    out = []
    c.connect(out.append)
    c.put_many(["a", "b"])
    c.push("c")
    c.put_many(["d"])
    assert out == [[1, "a"], [2, "b"], [3, "c"], [4, "d"]]


def test_runs_to_several_downstreams_or_per_value_steps_go_value_by_value():
    ctx = FakeCtx({"m:double": double})
    m = build({"id": "m", "type": "map", "params": {"fn": "m:double"}, "inputs": ["src"]}, ctx)
    w = build({"id": "w", "type": "window", "params": {"values": 2, "agg": "sum"}, "inputs": ["m"]}, ctx)
    m.connect(w)
    assert w.inlet_many(0) is None      # windows take values one at a time
    seen = []
    w.connect(seen.append)
    m.put_many([1, 2, 3, 4, 5])
    assert seen == [6, 14] and w.stats()["in"] == 5
    # two downstreams: each value goes to both, in order
    m2 = build({"id": "m2", "type": "map", "params": {"fn": "m:double"}, "inputs": ["src"]}, ctx)
    a = []
    b = build({"id": "b", "type": "map", "params": {"fn": "m:double"}, "inputs": ["m2"]}, ctx)
    m2.connect(a.append)
    m2.connect(b)
    b.connect(a.append)
    m2.put_many([1, 2])
    assert a == [2, 4, 4, 8], a
    # an unconnected step drops a run silently, as it drops single values
    lone = build({"id": "l", "type": "map", "params": {"fn": "m:double"}}, ctx)
    lone.put_many([1, 2])
    assert lone.stats()["out"] == 2


def test_fan_out_and_ports():
    ctx = FakeCtx({"m:double": double})
    m = build({"id": "m", "type": "map", "params": {"fn": "m:double"}, "inputs": ["a"]}, ctx)
    z = build({"id": "z", "type": "zip", "inputs": ["m", "m"]}, ctx)
    seen = []
    m.connect(z, 0)
    m.connect(z, 1)
    m.connect(seen.append)
    out = []
    z.connect(out.append)
    m.push(5)
    assert out == [[10, 10]] and seen == [10]
    m.set_outputs([seen.append])
    m.push(1)
    assert seen == [10, 2] and out == [[10, 10]]
    raises(lambda: m.connect(z, 2), "port 2")
    raises(lambda: m.connect(seen.append, 1), "port 1")


def test_unconnected_step_drops_silently_by_design():
    ctx = FakeCtx({"m:double": double})
    m = build({"id": "m", "type": "map", "params": {"fn": "m:double"}}, ctx)
    m.push(1)
    assert m.stats()["out"] == 1


def test_build_errors():
    ctx = FakeCtx()
    raises(lambda: build({"id": "x", "type": "nope"}, ctx), "step 'x'", "unknown step type",
           "'nope'", "window")
    raises(lambda: build({"type": "map"}, ctx), "id")
    raises(lambda: build({"id": "x", "type": "window", "params": [1]}, ctx), "params")
    raises(lambda: build({"id": "x", "type": "map", "params": {"fn": "m:f"},
                          "inputs": ["a", "b"]}, ctx), "map takes 1 input, got 2")
    raises(lambda: build({"id": "x", "type": "print", "params": {"label": 3}}, ctx), "label")


def test_a_step_short_of_memory_while_it_is_built_is_not_called_a_bad_fn():
    # a MemoryError while a map finds or makes its function is the board's heap, not the
    # function: it reaches the runtime, which refuses the deployment as short of memory (and the
    # controller tries again) instead of blaming the fn
    class Short(FakeCtx):
        def resolve(self, ref):
            raise MemoryError("memory allocation failed, allocating 194 bytes")

    class Big:
        def __init__(self):
            raise MemoryError("memory allocation failed, allocating 912 bytes")
    for ctx, ref in ((Short(), "m:f"), (FakeCtx({"m:Big": Big}), "m:Big")):
        try:
            build({"id": "m", "type": "map", "params": {"fn": ref}, "inputs": ["x"]}, ctx)
        except MemoryError:
            continue
        assert False, "no MemoryError for %s" % ref


def test_every_type_has_stats_and_close():
    ctx = FakeCtx({"m:f": double})
    path = tmp_path("all")
    params = {"map": {"fn": "m:f"}, "filter": {"fn": "m:f"}, "field": {"key": "a"},
              "window": {"values": 1}, "sliding": {"size": 1}, "throttle": {"interval": 1},
              "alarm": {"high": 1, "low": 0}, "csv": {"path": path},
              "zip": {}, "combine_latest": {}, "merge": {}, "changes": {}, "print": {},
              "callback": {"name": "c"}, "ema": {"alpha": 0.5}, "delta": {"delta": 1},
              "calibrate": {"points": [[0, 0], [1, 2]]}, "clamp": {"min": 0},
              "median": {"size": 3}, "quantile": {"size": 3, "q": 0.9},
              "heartbeat": {"interval": 10}, "debounce": {"time": 10}, "timeout": {"time": 10}}
    # the MQTT steps need a broker: tests/test_mqtt.py starts one
    TYPES = types()
    kinds = [k for k in TYPES if TYPES[k] != "mqtt"]
    assert sorted(params) == sorted(kinds)
    for kind in kinds:
        n = 2 if kind in ("zip", "combine_latest") else 1
        s = build({"id": kind, "type": kind, "params": params[kind],
                   "inputs": ["i"] * n}, ctx)
        st = s.stats()
        for k in ("in", "out", "dropped", "errors"):
            assert st[k] == 0, (kind, st)
        s.flush()
        s.close()
    os.remove(path)


def test_mqtt_steps_need_paho_or_say_why():
    # on MicroPython (no paho) the step names what it needs instead of failing obscurely;
    # on CPython with paho an unreachable broker is named
    try:
        import paho  # noqa: F401
        have_paho = True
    except ImportError:
        have_paho = False
    words = ("cannot reach MQTT broker 127.0.0.1:1",) if have_paho else ("paho-mqtt", "CPython")
    raises(lambda: build({"id": "m", "type": "mqtt_out", "inputs": ["x"],
                          "params": {"broker": "127.0.0.1:1", "topic": "a/b"}}, FakeCtx()), *words)


def test_error_text_without_sys_exc_info():
    # ports without sys.exc_info (ESP32) still count and log errors, without the message
    saved = steps._exc_info
    steps._exc_info = None
    try:
        ctx = FakeCtx({"m:inverse": inverse})
        m, out, _ = make("map", {"fn": "m:inverse"}, ctx=ctx)
        m.push(0)
    finally:
        steps._exc_info = saved
    s = m.stats()
    assert s["errors"] == 1 and "does not say" in s["last_error"], s
    assert ctx.logs and "m:inverse" in ctx.logs[0]
