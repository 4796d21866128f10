# The filter steps against independent references on CPython: numpy's quantile and
# least-squares fit, on generated data (the device tests check worked-out values on both
# interpreters; these check the same code on many inputs).
import math
import os
import sys

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "device"))
from test_steps import feed, make  # noqa: E402

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)


@settings(max_examples=150, deadline=None)
@given(st.lists(finite, min_size=1, max_size=40), st.floats(min_value=0, max_value=1), st.data())
def test_quantile_matches_numpy(values, q, data):
    size = data.draw(st.integers(min_value=1, max_value=len(values)))
    s, out, _ = make("quantile", {"size": size, "q": q})
    feed(s, values)
    want = [float(np.quantile(values[i - size:i], q)) for i in range(size, len(values) + 1)]
    assert len(out) == len(want)
    for g, w in zip(out, want):
        assert math.isclose(g, w, rel_tol=1e-9, abs_tol=1e-6), (g, w)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(finite, finite), min_size=2, max_size=20), finite)
def test_calibrate_matches_numpy_polyfit(points, x):
    xs = [p[0] for p in points]
    if max(xs) - min(xs) < 1e-3:
        return   # a vertical line: the step refuses it (tested on the device side)
    k, b = np.polyfit(xs, [p[1] for p in points], 1)
    s, out, _ = make("calibrate", {"points": [list(p) for p in points]})
    feed(s, [x])
    assert math.isclose(out[0], k * x + b, rel_tol=1e-6, abs_tol=1e-3 * (1 + abs(k * x) + abs(b)))


@settings(max_examples=100, deadline=None)
@given(st.lists(finite, min_size=1, max_size=50), st.floats(min_value=0.01, max_value=1))
def test_ema_matches_the_weighted_sum(values, alpha):
    # closed form: s_n = (1-a)^n x_0 + sum_{i=1..n} a (1-a)^(n-i) x_i
    s, out, _ = make("ema", {"alpha": alpha})
    feed(s, values)
    n = len(values) - 1
    want = (1 - alpha) ** n * values[0] + sum(alpha * (1 - alpha) ** (n - i) * values[i] for i in range(1, n + 1))
    assert math.isclose(out[-1], want, rel_tol=1e-6, abs_tol=1e-3)
