# Step: map, a user function the controller shipped (runtime/shipped.py) per value; filter, the
# same deciding which values pass, is user_filter.py's, so a board that only maps does not keep its
# code. Loaded when an assignment first names it (kinds.FAMILIES); the step protocol and the
# MicroPython notes on hot methods are in steps/__init__.py. Its batch path (put_many: a run of
# values at once, from a free-running source) is user_runs.py's, loaded only by an assignment that
# has such a source.
from sensormesh.device.steps import Step


class Map(Step):
    TYPE = "map"
    ARGS = ["fn"]     # checked, and the function found, by make.user_setup (build time)
    THROUGH = True    # its out count: every value in but those dropped (report.out_count)
    # close(): base.close closes the instance of a shipped class that the step calls

    def put(self, value):
        self.n_in += 1
        try:
            value = self.fn(value)
        except Exception:
            self.failed(value)
            return
        self.emit(value)


# type name -> class, read by kinds.step_class()
CLASSES = {"map": Map}
