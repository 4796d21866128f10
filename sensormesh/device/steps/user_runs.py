# Steps: map and filter taking runs of values at once (put_many, steps/__init__.py): the batch
# path of user.py's Map and user_filter.py's Filter. Only a free-running source (runtime/free_running.py) reads
# runs of values, so make.build takes these classes only for an assignment that has one (and
# outside a runtime, where a caller may push runs); a board whose sources read on a schedule
# never loads this code.
from sensormesh.device.steps.user import Map
from sensormesh.device.steps.user_filter import Filter


def run_many(step, values, keep):
    """A run of values: the step's function once per value, in order; returns the results
    (keep False: map) or the values it said yes to (keep True: filter)."""
    fn = step.fn
    out = []
    add = out.append
    step.n_in += len(values)
    for v in values:
        try:
            r = fn(v)
        except Exception:
            step.failed(v)
            continue
        if not keep:
            add(r)
        elif r:
            add(v)
    return out


class MapRuns(Map):
    def put_many(self, values):
        out = run_many(self, values, False)
        if out:
            self.emit_many(out)


class FilterRuns(Filter):
    def put_many(self, values):
        out = run_many(self, values, True)
        if out:
            self.n_out += len(out)
            self.emit_many(out)


# type name -> class, read by kinds.step_class() when the steps may get runs of values
CLASSES = {"map": MapRuns, "filter": FilterRuns}
