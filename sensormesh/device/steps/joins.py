# Steps: zip, combine_latest and merge: steps with more than one input.
# Loaded when an assignment first names one of them (kinds.FAMILIES); the step
# protocol and the MicroPython notes on hot methods are in steps/__init__.py.
from sensormesh.device.schedule import sparse
from sensormesh.device.steps import NONE, Step


class Zip(Step):
    """Pairs the i-th value of port 0 with the i-th value of port 1 -> [a, b].

    Only one side can be ahead, so one queue holds the waiting values of that side."""
    TYPE = "zip"
    ARGS = ["max-pending"]
    INPUTS = (2, 2)
    HOLDS = True   # unpaired values wait: the runtime's checkpoints wait until they pair (pipes.py)

    def setup(self, params, n_inputs):
        from sensormesh.device.steps.make import int_param, no_ctx_call
        self.max_pending = int_param(self, "max-pending", 1000, 1)
        self._hold = getattr(self.ctx, "hold", no_ctx_call)
        self._release = getattr(self.ctx, "release", no_ctx_call)
        self.q = []
        self.side = 0  # the port whose values wait in q (when q is not empty)
        self.qlin = [] # with lineage (ctx.tracking): the input value each waiting port-0 value came from

    def put(self, value):
        self.n_in += 1
        q = self.q
        if q and self.side:
            self.n_out += 1
            self.emit([value, q.pop(0)])
            if not q:
                self._release()
        else:
            self._wait(value, 0)

    def put1(self, value):
        self.n_in += 1
        q = self.q
        if q and not self.side:
            self.n_out += 1
            if self.qlin:
                # a pair carries the lineage of its port-0 value, whichever arrived last
                ctx = self.ctx
                cur = ctx.cur
                ctx.cur = self.qlin.pop(0)
                self.emit([q.pop(0), value])
                ctx.cur = cur
            else:
                self.emit([q.pop(0), value])
            if not q:
                self._release()
        else:
            self._wait(value, 1)

    def _wait(self, value, side):
        q = self.q
        if not q:
            self.side = side
            self._hold()
        elif len(q) >= self.max_pending:
            q.pop(0)
            if self.qlin:
                self.qlin.pop(0)
            n = self.dropped = self.dropped + 1
            if sparse(n):
                self.ctx.log("step '%s': zip port %d is more than %d values ahead, dropped its "
                             "oldest (%d so far)" % (self.id, side, self.max_pending, n))
        q.append(value)
        if not side and getattr(self.ctx, "tracking", False):
            self.qlin.append(self.ctx.cur)

    def close(self):
        n = len(self.q)
        if n:
            self.dropped += n
            self.ctx.log("step '%s': zip closed with %d unpaired values on port %d, dropped"
                         % (self.id, n, self.side))
            self.q = []
            self.qlin = []

    def stats(self):
        s = self.base_stats()
        s["pending"] = [0, 0]
        s["pending"][self.side] = len(self.q)
        return s


class CombineLatest(Step):
    """[latest of port 0, latest of port 1] on every value, once both ports gave one."""
    TYPE = "combine_latest"
    INPUTS = (2, 2)

    def setup(self, params, n_inputs):
        self.a = NONE
        self.b = NONE

    def put(self, value):
        self.n_in += 1
        self.a = value
        if self.b is not NONE:
            self.n_out += 1
            self.emit([value, self.b])

    def put1(self, value):
        self.n_in += 1
        self.b = value
        if self.a is not NONE:
            self.n_out += 1
            self.emit([self.a, value])


class Merge(Step):
    """Every value of every input, in arrival order."""
    TYPE = "merge"
    INPUTS = (1, None)
    THROUGH = True    # its out count: every value in (report.out_count)

    def put(self, value):
        self.n_in += 1
        self.emit(value)


# type name -> class, read by kinds.step_class()
CLASSES = {"zip": Zip, "combine_latest": CombineLatest, "merge": Merge}
