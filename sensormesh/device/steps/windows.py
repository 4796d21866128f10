# Steps: window and sliding: values gathered by count or time, then aggregated (AGGS).
# Loaded when an assignment first names one of them (steps/__init__.py TYPES); the step
# protocol and the MicroPython notes on hot methods are in steps/__init__.py.
from sensormesh.device.steps import Step, no_ctx_call


AGGS = ("mean", "min", "max", "sum", "count", "list")


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
    HOLDS = True   # holds values back: the runtime's checkpoints wait until it emits (pipes.py)

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
        self._hold = getattr(self.ctx, "hold", no_ctx_call)
        self._release = getattr(self.ctx, "release", no_ctx_call)
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

    # Each _put_* counts the value inline and calls _edge only when the window opens or fills
    # (k == 1 or k == n): one call per value, not two.
    def _put_sum(self, value):
        try:
            self.acc += value
        except Exception:
            self.failed(value)
            return
        k = self.k = self.k + 1
        if k == 1 or k == self.n:
            self._edge(k)

    def _put_min(self, value):
        try:
            if self.k == 0:
                self.acc = value + 0  # numbers only, as for sum
            elif value < self.acc:
                self.acc = value
        except Exception:
            self.failed(value)
            return
        k = self.k = self.k + 1
        if k == 1 or k == self.n:
            self._edge(k)

    def _put_max(self, value):
        try:
            if self.k == 0:
                self.acc = value + 0
            elif value > self.acc:
                self.acc = value
        except Exception:
            self.failed(value)
            return
        k = self.k = self.k + 1
        if k == 1 or k == self.n:
            self._edge(k)

    def _put_list(self, value):
        self.acc.append(value)
        k = self.k = self.k + 1
        if k == 1 or k == self.n:
            self._edge(k)

    def _put_count(self, value):
        k = self.k = self.k + 1
        if k == 1 or k == self.n:
            self._edge(k)

    def _edge(self, k):
        # the value just counted opened the window (k == 1) or filled it (k == n)
        if k == self.n:
            if k == 1:
                self._hold()
            self._close()
        elif k == 1:
            self._hold()
            if self.frame:
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
        self._release()

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


# type name -> class, read by steps.step_class()
CLASSES = {"window": Window, "sliding": Sliding}
