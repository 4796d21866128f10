# Step: window: values gathered by count or time, then aggregated (make.AGGS; sliding windows are
# sliding.py). This module holds the window and the put of sum and mean; the puts of the other
# aggregates (min, max, count, list) are in window_aggs.py, loaded only for a window that has one.
# Loaded when an assignment first names it (kinds.FAMILIES); the step
# protocol and the MicroPython notes on hot methods are in steps/__init__.py.
from sensormesh.device.steps import Step


class Window(Step):
    """Tumbling window: closes after `values` values or `time-frame` ms after its first value.

    sum/mean/min/max/count keep a running aggregate, not the values, so a long time window
    costs no memory; only agg=list holds the values."""
    TYPE = "window"
    ARGS = ["time-frame", "values", "agg"]
    HOLDS = True   # holds values back: the runtime's checkpoints wait until it emits (pipes.py)
    # its parameters are checked and its state set up by make.window_setup (build time)

    def _reset(self):
        agg = self.agg
        self.acc = 0 if (agg == "sum" or agg == "mean") else ([] if agg == "list" else None)

    # Each _put_* (here and in window_aggs.py) counts the value inline and calls _edge only when the window opens or fills
    # (k == 1 or k == edge, which is n but for a value after a timer that found no heap free):
    # one call per value, not two.
    def _put_sum(self, value):
        try:
            self.acc += value
        except Exception:
            self.failed(value)
            return
        k = self.k = self.k + 1
        if k == 1 or k == self.edge:
            self._edge(k)

    def _edge(self, k):
        # the value just counted opened the window (k == 1), filled it (k == n), or is the
        # next one after its timer found no heap free (k == edge)
        if k == self.n:
            if k == 1:
                self._hold()
            self._close()
            return
        if k == 1:
            self._hold()
        if self.frame and self.timer is None:
            # the time frame's end closes it (_close cancels the timer that fired: no harm).
            # Until the timer is made the next value comes here too: a window left without
            # one would never close, and would hold its device's checkpoints.
            self.edge = k + 1
            self.timer = self.ctx.call_later(self.frame, self._close)
            self.edge = self.n

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
        try:
            self.emit(out)
        finally:
            # released even when the emit raised (no heap free downstream): a window that
            # stayed held would stop its device's checkpoints, and with them every acknowledgement
            self._release()

    flush = _close      # close(): base.close cancels the timer

    def stats(self):
        self.n_in = self.closed + self.k + self.dropped  # counted here, not per value
        s = self.base_stats()
        s["open"] = self.k
        return s


# type name -> class, read by kinds.step_class()
CLASSES = {"window": Window}
