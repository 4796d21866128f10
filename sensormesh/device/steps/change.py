# Steps: throttle and changes: rate limits and reactions to change (alarm.py: thresholds).
# Loaded when an assignment first names one of them (kinds.FAMILIES); the step
# protocol and the MicroPython notes on hot methods are in steps/__init__.py.
from sensormesh.device.steps import NONE, Step


class Throttle(Step):
    """At most one value per `interval` ms: the first of an interval, or the latest at its end."""
    TYPE = "throttle"
    ARGS = ["interval", "mode"]

    def setup(self, params, n_inputs):
        from sensormesh.device.steps.make import choice_param, int_param
        self.interval = int_param(self, "interval", None, 1)
        self.mode = choice_param(self, "mode", "latest", ("first", "latest"))
        self.timer = None
        self.last = NONE
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
        if value is not NONE:
            self.last = NONE
            self.n_out += 1
            self.emit(value)

    def flush(self):
        if self.mode == "latest" and self.timer is not None:
            self.timer.cancel()
            self._release()

    # close(): base.close cancels the timer


class Changes(Step):
    """Values that differ from the last one emitted (numbers: by more than `tolerance`)."""
    TYPE = "changes"
    ARGS = ["tolerance"]

    def setup(self, params, n_inputs):
        from sensormesh.device.steps.more_params import num_param
        self.tolerance = num_param(self, "tolerance", 0, 0)
        self.last = NONE
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


# type name -> class, read by kinds.step_class()
CLASSES = {"throttle": Throttle, "changes": Changes}
