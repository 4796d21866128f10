# Tests of the filter steps (sensormesh/device/steps/filters.py) against values worked out by
# hand. Plain assert functions: they run under pytest on CPython and with
# `micropython tests/mprun.py test_filters` on the unix port. Time moves only on ctx.advance().
import sys

from test_steps import FakeCtx, feed, make, no_heap_for_next_timer, spec_error


def close(a, b, eps=1e-9):
    return abs(a - b) <= eps * max(1.0, abs(a), abs(b))


def all_close(got, want):
    assert len(got) == len(want), (got, want)
    for g, w in zip(got, want):
        assert close(g, w), (got, want)


# -- ema -----------------------------------------------------------------------------------------
def test_ema_reference_values():
    s, out, _ = make("ema", {"alpha": 0.5})
    feed(s, [10, 20, 20, 0])
    all_close(out, [10, 15, 17.5, 8.75])
    assert s.stats()["in"] == 4 and s.stats()["out"] == 4


def test_ema_counts_non_numbers_as_dropped():
    s, out, ctx = make("ema", {"alpha": 1})
    feed(s, [1, "x", None, True, 2])
    assert out == [1, 2]
    st = s.stats()
    assert st["dropped"] == 3 and st["errors"] == 3, st
    assert any("ema needs numbers" in line for line in ctx.logs), ctx.logs


def test_ema_bad_alpha():
    spec_error("ema", {}, 1, "alpha")
    spec_error("ema", {"alpha": 0}, 1, "alpha", "(0, 1]")
    spec_error("ema", {"alpha": 1.5}, 1, "alpha")
    spec_error("ema", {"alpha": 0.3, "beta": 1}, 1, "unknown parameter 'beta'")


# -- delta ---------------------------------------------------------------------------------------
def test_delta_absolute():
    s, out, _ = make("delta", {"delta": 1})
    feed(s, [20, 20.5, 21, 21.9, 22.2, 19, 19])
    assert out == [20, 21, 22.2, 19], out


def test_delta_relative():
    s, out, _ = make("delta", {"percent": 10})
    feed(s, [100, 105, 110, 120, 121, 99, 0, 0, 0.1])
    # 110 is 10 % above 100; 121 is exactly 10 % above 110 (passes); 99 is > 10 % below 121;
    # from 0 any change passes
    assert out == [100, 110, 121, 99, 0, 0.1], out


def test_delta_needs_one_threshold():
    spec_error("delta", {}, 1, "exactly one")
    spec_error("delta", {"delta": 1, "percent": 5}, 1, "exactly one")
    spec_error("delta", {"delta": -1}, 1, "delta", ">= 0")


# -- calibrate -----------------------------------------------------------------------------------
def test_calibrate_two_points_is_the_line_through_them():
    s, out, _ = make("calibrate", {"points": [[0, 32], [100, 212]]})   # Celsius -> Fahrenheit
    feed(s, [0, 100, 37, -40])
    all_close(out, [32, 212, 98.6, -40])


def test_calibrate_least_squares():
    # points (0,1) (1,3) (2,4) (3,8): slope = 2.2, intercept = 0.7 (worked out by hand:
    # mean x 1.5, mean y 4; sxy = 11, sxx = 5)
    s, out, _ = make("calibrate", {"points": [[0, 1], [1, 3], [2, 4], [3, 8]]})
    feed(s, [0, 10])
    all_close(out, [0.7, 22.7])


def test_calibrate_bad_points():
    spec_error("calibrate", {}, 1, "points")
    spec_error("calibrate", {"points": [[1, 2]]}, 1, "two or more")
    spec_error("calibrate", {"points": [[1, 2], [1, 3]]}, 1, "all equal")
    spec_error("calibrate", {"points": [[1, 2], [2, "a"]]}, 1, "[raw, true]")


# -- clamp ---------------------------------------------------------------------------------------
def test_clamp_moves_to_bounds():
    s, out, _ = make("clamp", {"min": 0, "max": 10})
    feed(s, [-5, 0, 5, 10, 11.5])
    assert out == [0, 0, 5, 10, 10]


def test_clamp_drop_mode_and_one_bound():
    s, out, _ = make("clamp", {"max": 10, "mode": "drop"})
    feed(s, [-5, 5, 10, 11])
    assert out == [-5, 5, 10]
    st = s.stats()
    assert st["in"] == 4 and st["out"] == 3 and st["dropped"] == 0, st


def test_clamp_bad():
    spec_error("clamp", {}, 1, "min", "max")
    spec_error("clamp", {"min": 3, "max": 1}, 1, "min", "<= max")
    spec_error("clamp", {"min": 0, "mode": "wrap"}, 1, "mode", "clamp|drop")


# -- median / quantile ---------------------------------------------------------------------------
def test_median_odd_and_even_windows():
    s, out, _ = make("median", {"size": 3})
    feed(s, [5, 1, 3, 100, 2])
    assert out == [3, 3, 3], out       # [5,1,3] [1,3,100] [3,100,2]
    s, out, _ = make("median", {"size": 4, "slide": 2})
    feed(s, [4, 1, 3, 2, 10, 20])
    all_close(out, [2.5, 6.5])         # [4,1,3,2] -> 2.5; [3,2,10,20] -> 6.5


def test_median_rejects_spikes():
    s, out, _ = make("median", {"size": 5})
    feed(s, [20, 20, 20, 999, 20, 20, -50, 20])
    assert out == [20, 20, 20, 20], out


def test_quantile_linear_interpolation():
    s, out, _ = make("quantile", {"size": 10, "q": 0.9, "slide": 10})
    feed(s, [10, 9, 8, 7, 6, 5, 4, 3, 2, 1])
    all_close(out, [9.1])              # rank 0.9 * 9 = 8.1 between 9 and 10
    s, out, _ = make("quantile", {"size": 4, "q": 0, "slide": 4})
    feed(s, [3, 1, 2, 7])
    assert out == [1]
    s, out, _ = make("quantile", {"size": 4, "q": 1, "slide": 4})
    feed(s, [3, 1, 2, 7])
    assert out == [7]


def test_quantile_bad():
    spec_error("quantile", {"size": 5}, 1, "q")
    spec_error("quantile", {"size": 5, "q": 1.5}, 1, "q", "[0, 1]")
    spec_error("median", {"size": 5, "q": 0.3}, 1, "unknown parameter 'q'")
    spec_error("median", {"size": 0}, 1, "size")


def test_quantile_skips_non_numbers():
    s, out, _ = make("median", {"size": 2})
    feed(s, [1, "x", 3])
    assert out == [2] and s.stats()["dropped"] == 1


# -- heartbeat -----------------------------------------------------------------------------------
def test_heartbeat_repeats_the_last_value_while_silent():
    s, out, ctx = make("heartbeat", {"interval": 100})
    feed(s, [1])
    assert out == [1]
    ctx.advance(99)
    assert out == [1]
    ctx.advance(1)
    assert out == [1, 1]
    ctx.advance(50)
    feed(s, [2])            # a new value at t=150: passes at once, the next beat is at 250
    ctx.advance(99)
    assert out == [1, 1, 2]
    ctx.advance(1)
    assert out == [1, 1, 2, 2]
    ctx.advance(200)
    assert out == [1, 1, 2, 2, 2, 2]
    st = s.stats()
    assert st["in"] == 2 and st["out"] == 2 and st["beats"] == 4, st
    s.close()
    assert not ctx.pending()


def test_heartbeat_keeps_one_timer_on_a_fast_stream():
    s, out, ctx = make("heartbeat", {"interval": 100})
    for i in range(50):
        feed(s, [i])
        ctx.advance(10)
    assert len(ctx.pending()) == 1
    assert out == list(range(50))


def test_heartbeat_keeps_beating_after_a_beat_that_found_no_heap_downstream():
    """A beat's value finds no heap free downstream (the emit raises a MemoryError): the next
    beat's timer was set first, so the heartbeat goes on beating while the input is silent
    (before, it stopped until the next value came, which is when a heartbeat matters least)."""
    s, out, ctx = make("heartbeat", {"interval": 100})
    feed(s, [1])
    real = s.emit
    short = []

    def emit(v):
        if not short:
            short.append(v)
            raise MemoryError("memory allocation failed")
        real(v)
    s.emit = emit
    try:
        ctx.advance(100)
    except MemoryError:
        pass
    assert short == [1] and out == [1]
    ctx.advance(300)
    assert out == [1, 1, 1, 1], out
    assert len(ctx.pending()) == 1


# -- debounce ------------------------------------------------------------------------------------
def test_debounce_one_value_per_press():
    s, out, ctx = make("debounce", {"time": 50})
    # a press that bounces: 1 0 1 0 1 at t = 0, 5, 10, 15, 20, then holds; 1 is due at t = 70
    for v in (1, 0, 1, 0, 1):
        feed(s, [v])
        ctx.advance(5)
    ctx.advance(44)
    assert out == [], out
    ctx.advance(1)
    assert out == [1], out
    feed(s, [1, 1, 1])      # held: nothing new
    ctx.advance(100)
    assert out == [1]
    feed(s, [0])            # release, held long enough
    ctx.advance(60)
    assert out == [1, 0]
    feed(s, [1])            # a glitch shorter than the time
    ctx.advance(10)
    feed(s, [0])
    ctx.advance(100)
    assert out == [1, 0], out
    assert not ctx.pending()


def test_debounce_sampled_input_and_flush():
    s, out, ctx = make("debounce", {"time": 30})
    for v in (5, 5, 5, 5, 5):     # a sampled touch value: the same value every 10 ms
        feed(s, [v])
        ctx.advance(10)
    assert out == [5]
    feed(s, [7])
    s.flush()               # stopping emits the candidate instead of losing it
    assert out == [5, 7]
    s.close()
    assert not ctx.pending()


def test_debounce_whose_timer_found_no_heap_sets_it_with_the_next_value():
    """The candidate's timer is set again when its time is not up (the value changed meanwhile),
    and that finds no heap free (a MemoryError): the next reading of the same value sets it, so
    the candidate is emitted. Before, a steady input never set it again: the candidate waited
    for ever, holding its device's checkpoints."""
    s, out, ctx = make("debounce", {"time": 50})
    feed(s, [1])            # t=0: candidate 1, its timer at t=50
    ctx.advance(30)
    feed(s, [0])            # t=30: the input changed: 0 is the candidate now, since t=30
    short = no_heap_for_next_timer(ctx)
    try:
        ctx.advance(20)     # t=50: the timer finds 0 waiting 20 ms of its 50: set again, no heap
    except MemoryError:
        pass
    assert short == [30] and out == [] and not ctx.pending()
    for _ in range(10):     # the input keeps reading 0
        feed(s, [0])
        ctx.advance(10)
    assert out == [0], out
    assert not ctx.pending()


# -- timeout -------------------------------------------------------------------------------------
def test_timeout_marks_a_silent_source_once():
    s, out, ctx = make("timeout", {"time": 100})
    feed(s, [1])
    ctx.advance(60)
    feed(s, [2])
    ctx.advance(99)
    assert out == [1, 2]
    ctx.advance(1)
    assert out == [1, 2, {"timeout": 100}]
    ctx.advance(1000)
    assert out == [1, 2, {"timeout": 100}], "one marker per silence"
    feed(s, [3])
    ctx.advance(100)
    assert out == [1, 2, {"timeout": 100}, 3, {"timeout": 100}]
    st = s.stats()
    assert st["in"] == 3 and st["out"] == 3 and st["markers"] == 2, st


def test_timeout_custom_marker():
    s, out, ctx = make("timeout", {"time": 10, "marker": None})
    feed(s, [1])
    ctx.advance(10)
    assert out == [1, None]


def test_filters_live_in_one_family_loaded_on_demand():
    from sensormesh.device.steps.kinds import types
    TYPES = types()
    for kind in ("ema", "delta", "calibrate", "clamp", "median", "quantile", "heartbeat",
                 "debounce", "timeout"):
        assert TYPES[kind] == "filters"
    assert "sensormesh.device.steps.filters" in sys.modules
