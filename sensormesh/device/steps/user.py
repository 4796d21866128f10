# Steps: map and filter: a user function the controller shipped (runtime/shipped.py) per value.
# Loaded when an assignment first names one of them (make.TYPES); the step
# protocol and the MicroPython notes on hot methods are in steps/__init__.py.
from sensormesh.device.steps import Step


class _UserStep(Step):
    ARGS = ("fn",)     # checked, and the function found, by make.user_setup (build time)

    def run_many(self, values, keep):
        """A run of values (steps/__init__.py): the function once per value, in order; returns
        the results (keep False: map) or the values it said yes to (keep True: filter)."""
        fn = self.fn
        out = []
        add = out.append
        self.n_in += len(values)
        for v in values:
            try:
                r = fn(v)
            except Exception:
                self.failed(v)
                continue
            if not keep:
                add(r)
            elif r:
                add(v)
        return out

    def close(self):
        close = getattr(self.instance, "close", None)
        self.instance = None
        if close is not None:
            close()


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

    def put_many(self, values):
        out = self.run_many(values, False)
        if out:
            self.emit_many(out)

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

    def put_many(self, values):
        out = self.run_many(values, True)
        if out:
            self.n_out += len(out)
            self.emit_many(out)


# type name -> class, read by make.step_class()
CLASSES = {"map": Map, "filter": Filter}
