# Steps: map and filter: a user function the controller shipped (runtime/shipped.py) per value.
# Loaded when an assignment first names one of them (kinds.FAMILIES); the step
# protocol and the MicroPython notes on hot methods are in steps/__init__.py. Their batch path
# (put_many: a run of values at once, from a free-running source) is user_runs.py's, loaded only
# by an assignment that has such a source.
from sensormesh.device.steps import Step


class _UserStep(Step):
    ARGS = ["fn"]     # checked, and the function found, by make.user_setup (build time)
    # close(): base.close closes the instance of a shipped class that the step calls


class Map(_UserStep):
    TYPE = "map"

    def put(self, value):
        self.n_in += 1
        try:
            value = self.fn(value)
        except Exception:
            self.failed(value)
            return
        self.emit(value)

    def out_count(self):
        return self.n_in - self.errors


class Filter(_UserStep):
    TYPE = "filter"

    def put(self, value):
        self.n_in += 1
        try:
            keep = self.fn(value)
        except Exception:
            self.failed(value)
            return
        if keep:
            self.n_out += 1
            self.emit(value)


# type name -> class, read by kinds.step_class()
CLASSES = {"map": Map, "filter": Filter}
