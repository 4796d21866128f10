# Step: filter, a user function the controller shipped (runtime/shipped.py) deciding per value
# whether it passes (user.py: map). Loaded when an assignment first names it (kinds.FAMILIES); the
# step protocol and the MicroPython notes on hot methods are in steps/__init__.py; its batch path
# is user_runs.py's, as map's.
from sensormesh.device.steps import Step


class Filter(Step):
    TYPE = "filter"
    ARGS = ["fn"]     # checked, and the function found, by make.user_setup (build time)
    # close(): base.close closes the instance of a shipped class that the step calls

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
CLASSES = {"filter": Filter}
