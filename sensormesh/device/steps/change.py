# Step: changes, the values that differ from the last one (throttle.py: a rate limit; alarm.py:
# thresholds). Loaded when an assignment first names it (kinds.FAMILIES); its parameters are
# checked by more_params.changes_setup (build time), which also picks the put of a tolerance; the step
# protocol and the MicroPython notes on hot methods are in steps/__init__.py.
from sensormesh.device.steps import NONE, Step


class Changes(Step):
    """Values that differ from the last one emitted (numbers: by more than `tolerance`)."""
    TYPE = "changes"
    ARGS = ["tolerance"]
    last = NONE

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
CLASSES = {"changes": Changes}
