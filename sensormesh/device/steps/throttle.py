# Step: throttle, a rate limit (change.py: changes; alarm.py: thresholds). A family of its own, so
# a board running changes does not keep its code. Loaded when an assignment first names it
# (kinds.FAMILIES); its parameters are checked by more_params.throttle_setup (build time); the step
# protocol and the MicroPython notes on hot methods are in steps/__init__.py.
from sensormesh.device.steps import NONE, Step


class Throttle(Step):
    """At most one value per `interval` ms: the first of an interval, or the latest at its end."""
    TYPE = "throttle"
    ARGS = ["interval", "mode"]
    timer = None
    last = NONE
    frame = 1      # its timer decides what leaves: no numbering taken back after it (build_pipes.py)

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


# type name -> class, read by kinds.step_class()
CLASSES = {"throttle": Throttle}
