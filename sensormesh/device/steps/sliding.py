# Step: sliding, the aggregate of the last `size` values, every `slide` values. A family of its
# own (kinds.FAMILIES), so a board running tumbling windows does not load it; the step
# protocol and the MicroPython notes on hot methods are in steps/__init__.py.
from sensormesh.device.steps import Step


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


class Sliding(Step):
    """The aggregate of the last `size` values, every `slide` values once `size` arrived."""
    TYPE = "sliding"
    ARGS = ["size", "slide", "agg"]

    def setup(self, params, n_inputs):
        from sensormesh.device.steps.make import AGGS, choice_param, int_param
        self.size = int_param(self, "size", None, 1)
        self.slide = int_param(self, "slide", 1, 1)
        self.agg = choice_param(self, "agg", "mean", AGGS)
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


# type name -> class, read by kinds.step_class()
CLASSES = {"sliding": Sliding}
