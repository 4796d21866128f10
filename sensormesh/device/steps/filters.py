# Steps: the everyday sensor filters (ema, delta, calibrate, clamp, median, quantile,
# heartbeat, debounce, timeout), with the names users of ESP32 sensor firmware know.
# Loaded when an assignment first names one of them (kinds.FAMILIES); the step
# protocol and the MicroPython notes on hot methods are in steps/__init__.py.
#
# Allocation discipline as in the other families: buffers are allocated once in setup, hot
# methods take (self, value) and keep few locals. Timed filters (heartbeat, debounce, timeout)
# keep at most one loop timer alive and read ctx.now() (an int, never wrapping) to decide
# when it is due, so a fast stream does not create a timer per value.
from sensormesh.device.steps import NONE, Step


def _number(value):
    # numbers only: bool is an int subclass on CPython but is not a measurement
    t = type(value)
    if (t is int or t is float) and value == value:
        return value
    raise ValueError("not a number")


class Ema(Step):
    """Exponential moving average: s = alpha * x + (1 - alpha) * s, s starts at the first x."""
    TYPE = "ema"
    ARGS = ["alpha"]
    what = "ema needs numbers"

    def setup(self, params, n_inputs):
        from sensormesh.device.steps.more_params import num_param
        a = num_param(self, "alpha", None)
        if not 0 < a <= 1:
            raise self.bad("alpha must be in (0, 1], got %r" % (a,))
        self.alpha = a
        self.s = None

    def put(self, value):
        self.n_in += 1
        try:
            x = _number(value)
        except Exception:
            self.failed(value)
            return
        s = self.s
        s = x if s is None else s + self.alpha * (x - s)
        self.s = s
        self.n_out += 1
        self.emit(s)


class Delta(Step):
    """Passes a number only when it differs from the last one passed by at least `delta`
    (absolute) or `percent` % of the last one passed (relative). The first always passes."""
    TYPE = "delta"
    ARGS = ["delta", "percent"]
    what = "delta needs numbers"

    def setup(self, params, n_inputs):
        from sensormesh.device.steps.more_params import num_param
        if ("delta" in params) == ("percent" in params):
            raise self.bad("delta needs exactly one of 'delta' (absolute) or 'percent' (relative)")
        if "delta" in params:
            self.d = num_param(self, "delta", None, 0)
            self.rel = 0
        else:
            self.d = 0
            self.rel = num_param(self, "percent", None, 0) / 100.0
        self.last = None

    def put(self, value):
        self.n_in += 1
        try:
            x = _number(value)
        except Exception:
            self.failed(value)
            return
        last = self.last
        if last is not None:
            if x == last or abs(x - last) < (self.rel * abs(last) if self.rel else self.d):
                return
        self.last = x
        self.n_out += 1
        self.emit(x)


def fit_line(points):
    """Least-squares line through [[x, y], ...] -> (slope, intercept)."""
    n = len(points)
    sx = sy = 0.0
    for x, y in points:
        sx += x
        sy += y
    mx, my = sx / n, sy / n
    sxx = sxy = 0.0
    for x, y in points:
        sxx += (x - mx) * (x - mx)
        sxy += (x - mx) * (y - my)
    if sxx == 0:
        raise ValueError("the raw values of the points are all equal")
    k = sxy / sxx
    return k, my - k * mx


class Calibrate(Step):
    """Linear calibration: the least-squares line through `points` [[raw, true], ...] maps each
    raw number to its calibrated value."""
    TYPE = "calibrate"
    ARGS = ["points"]
    what = "calibrate needs numbers"

    def setup(self, params, n_inputs):
        pts = params.get("points")
        if type(pts) is not list or len(pts) < 2:
            raise self.bad("calibrate needs 'points': two or more [raw, true] pairs, got %r" % (pts,))
        for p in pts:
            if type(p) is not list or len(p) != 2 or \
                    not all((type(v) is int or type(v) is float) and v == v for v in p):
                raise self.bad("points: each point must be [raw, true] numbers, got %r" % (p,))
        try:
            self.k, self.b = fit_line(pts)
        except ValueError as e:
            raise self.bad("points: %s" % e)

    def put(self, value):
        self.n_in += 1
        try:
            y = self.k * _number(value) + self.b
        except Exception:
            self.failed(value)
            return
        self.n_out += 1
        self.emit(y)


class Clamp(Step):
    """Limits numbers to [min, max]: `mode` clamp (default) moves them to the nearest bound,
    drop leaves out-of-range values out (counted as in - out, not as dropped)."""
    TYPE = "clamp"
    ARGS = ["min", "max", "mode"]
    what = "clamp needs numbers"

    def setup(self, params, n_inputs):
        from sensormesh.device.steps.make import choice_param
        from sensormesh.device.steps.more_params import num_param
        if "min" not in params and "max" not in params:
            raise self.bad("clamp needs 'min', 'max' or both")
        self.lo = num_param(self, "min", None) if "min" in params else None
        self.hi = num_param(self, "max", None) if "max" in params else None
        if self.lo is not None and self.hi is not None and self.lo > self.hi:
            raise self.bad("min (%r) must be <= max (%r)" % (self.lo, self.hi))
        self.drop = choice_param(self, "mode", "clamp", ("clamp", "drop")) == "drop"

    def put(self, value):
        self.n_in += 1
        try:
            x = _number(value)
        except Exception:
            self.failed(value)
            return
        lo, hi = self.lo, self.hi
        if lo is not None and x < lo:
            if self.drop:
                return
            x = lo
        elif hi is not None and x > hi:
            if self.drop:
                return
            x = hi
        self.n_out += 1
        self.emit(x)


def quantile(sorted_values, q):
    """Linear interpolation between the closest ranks (q=0.5 is the median)."""
    n = len(sorted_values)
    pos = q * (n - 1)
    i = int(pos)
    if i >= n - 1:
        return sorted_values[n - 1]
    frac = pos - i
    a = sorted_values[i]
    return a + (sorted_values[i + 1] - a) * frac if frac else a


class Quantile(Step):
    """The q-quantile of the last `size` numbers, every `slide` numbers once `size` arrived
    (median: q = 0.5). Linear interpolation between ranks, as numpy's default."""
    TYPE = "quantile"
    ARGS = ["size", "slide", "q"]
    what = "quantile needs numbers"

    def setup(self, params, n_inputs):
        from sensormesh.device.steps.make import int_param
        from sensormesh.device.steps.more_params import num_param
        self.size = int_param(self, "size", None, 1)
        self.slide = int_param(self, "slide", 1, 1)
        self.q = num_param(self, "q", 0.5 if self.TYPE == "median" else None)
        if not 0 <= self.q <= 1:
            raise self.bad("q must be in [0, 1], got %r" % (self.q,))
        self.buf = [0] * self.size   # ring of the last values, allocated once
        self.work = [0] * self.size  # sorted copy, reused
        self.i = 0
        self.due = self.size

    def put(self, value):
        self.n_in += 1
        try:
            x = _number(value)
        except Exception:
            self.failed(value)
            return
        i = self.i
        self.buf[i] = x
        i += 1
        self.i = 0 if i == self.size else i
        self.due -= 1
        if not self.due:
            self.due = self.slide
            self._emit()

    def _emit(self):
        w = self.work
        w[:] = self.buf   # slice assignment into the preallocated list
        w.sort()
        self.n_out += 1
        self.emit(quantile(w, self.q))


class Median(Quantile):
    """The median of the last `size` numbers, every `slide` numbers."""
    TYPE = "median"
    ARGS = ["size", "slide"]


class Heartbeat(Step):
    """Passes every value at once and re-emits the last one every `interval` ms while nothing
    new came (a dashboard or broker then sees the sensor is alive)."""
    TYPE = "heartbeat"
    ARGS = ["interval"]
    frame = 1      # its timer decides what leaves: no numbering taken back after it (build_pipes.py)

    def setup(self, params, n_inputs):
        from sensormesh.device.steps.make import int_param
        self.interval = int_param(self, "interval", None, 1)
        self.last = NONE
        self.at = 0          # ctx.now() of the last emission
        self.timer = None
        self.beats = 0

    def put(self, value):
        self.n_in += 1
        self.last = value
        self.at = self.ctx.now()
        if self.timer is None:
            self.timer = self.ctx.call_later(self.interval, self._due)
        self.n_out += 1
        self.emit(value)

    def _due(self):
        self.timer = None
        wait = self.interval - (self.ctx.now() - self.at)
        if wait > 0:
            self.timer = self.ctx.call_later(wait, self._due)
            return
        self.at = self.ctx.now()
        # the next beat's timer first: a beat that finds no heap free downstream raises (the
        # loop logs it) and the heartbeat goes on beating
        self.timer = self.ctx.call_later(self.interval, self._due)
        self.beats += 1          # counted apart: "out" stays the values passed through
        self.emit(self.last)

    # close(): base.close cancels the timer

    def stats(self):
        s = self.base_stats()
        s["beats"] = self.beats
        return s


class Debounce(Step):
    """Emits a value once the input has kept it for `time` ms, and only when it differs from
    the last value emitted: a bouncing button or touch pad gives one value per press."""
    TYPE = "debounce"
    ARGS = ["time"]
    frame = 1      # its timer decides what leaves: no numbering taken back after it (build_pipes.py)
    HOLDS = True   # a candidate waits for its time: acknowledged pipes wait for it (pipes.py)

    def setup(self, params, n_inputs):
        from sensormesh.device.steps.make import int_param, no_ctx_call
        self.time = int_param(self, "time", None, 1)
        self.cand = NONE       # the value waiting to prove stable
        self.since = 0         # ctx.now() when it arrived
        self.sent = NONE       # the last value emitted
        self.timer = None
        self._hold = getattr(self.ctx, "hold", no_ctx_call)
        self._release = getattr(self.ctx, "release", no_ctx_call)

    def put(self, value):
        self.n_in += 1
        if self.cand is not NONE and value == self.cand:
            # unchanged: the candidate keeps its time (and gets its timer, if setting it again
            # found no heap free)
            if self.timer is None:
                self.timer = self.ctx.call_later(0, self._due)
            return
        if self.cand is NONE:
            if value == self.sent:
                return         # back to what was emitted: nothing to wait for
            self._hold()
        elif value == self.sent:
            self.cand = NONE   # bounced back before its time: forget the candidate
            self._release()
            return
        self.cand = value
        self.since = self.ctx.now()
        if self.timer is None:
            self.timer = self.ctx.call_later(self.time, self._due)

    def _due(self):
        self.timer = None
        if self.cand is NONE:
            return
        wait = self.time - (self.ctx.now() - self.since)
        if wait > 0:
            self.timer = self.ctx.call_later(wait, self._due)
            return
        self._send()

    def _send(self):
        v = self.cand
        self.cand = NONE
        self.sent = v
        self.n_out += 1
        try:
            self.emit(v)
        finally:
            self._release()     # even when the emit raised (Window._close says why)

    def flush(self):
        if self.cand is not NONE:
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None
            self._send()

    # close(): base.close cancels the timer


class Timeout(Step):
    """Passes every value, and emits `marker` once when no value came for `time` ms after the
    last one (again after the next silence). Default marker: {"timeout": time}."""
    TYPE = "timeout"
    ARGS = ["time", "marker"]
    frame = 1      # its timer decides what leaves: no numbering taken back after it (build_pipes.py)

    def setup(self, params, n_inputs):
        from sensormesh.device.steps.make import int_param
        self.time = int_param(self, "time", None, 1)
        self.marker = params.get("marker", {"timeout": self.time})
        self.at = 0
        self.timer = None
        self.markers = 0

    def put(self, value):
        self.n_in += 1
        self.at = self.ctx.now()
        if self.timer is None:
            self.timer = self.ctx.call_later(self.time, self._due)
        self.n_out += 1
        self.emit(value)

    def _due(self):
        self.timer = None
        wait = self.time - (self.ctx.now() - self.at)
        if wait > 0:
            self.timer = self.ctx.call_later(wait, self._due)
            return
        self.markers += 1      # silent: one marker, then wait for the next value
        self.emit(self.marker)

    # close(): base.close cancels the timer

    def stats(self):
        s = self.base_stats()
        s["markers"] = self.markers
        return s


CLASSES = {"ema": Ema, "delta": Delta, "calibrate": Calibrate, "clamp": Clamp, "median": Median,
           "quantile": Quantile, "heartbeat": Heartbeat, "debounce": Debounce, "timeout": Timeout}
