# Free-running sources: a source with rate 0 reads as fast as the pipeline takes its values, a
# run of values per loop turn, and waits while a pipe of the device is backlogged (the pipes call
# Runtime.resume_sources when they drain or get acknowledgements). Loaded when an assignment has
# such a source (build.source) and kept while it runs; a board whose sources read on a schedule
# (runtime.Source) never loads this code.
from sensormesh.device.compat import MICROPYTHON
from sensormesh.device.runtime import Source
from sensormesh.device.runtime.sources import _read_failed

# Values a free-running source reads per loop turn at most.
BURST = 64 if MICROPYTHON else 256


class FreeSource(Source):
    # a failed read, counted and logged: sources.py's, kept loaded with this module (a failing
    # sensor read as fast as this one could fail a run of reads per loop turn)
    _read_failed = _read_failed

    def _tick(self):
        self.timer = None
        if not self.running:
            return
        if backlogged(self.rt):
            return  # resume_sources() calls us again when the pipes drain
        try:
            self._burst()
        finally:
            # a step that could not take the run (a board short of heap) raises to the loop,
            # which counts and logs it; the source reads on all the same
            if self.running:
                self.timer = self.rt.loop.call_later(0, self._tick)

    def _burst(self):
        # A free-running source reads a run of values per loop turn and hands the list on at
        # once: steps that take runs (map, filter, pipe_out) pay per run, not per value.
        n = room(self.rt, BURST)
        if self.limit and self.limit - self.n_out < n:
            n = self.limit - self.n_out
        vals = None
        if self.read_many is not None:
            try:
                vals = self.read_many(n)
            except Exception as e:
                # the sensor could not give a run: read its values one by one, as below
                self._read_failed(e)
        if vals is None:
            vals = []
            for _ in range(n):
                try:
                    vals.append(self.read())
                except Exception as e:     # each failure is counted
                    self._read_failed(e)
        self.n_out += len(vals)
        if self.limit and self.n_out >= self.limit:
            self.running = False
        if not vals:
            return
        if self.emit is not self.wired:
            # the probe samples the next value: it goes alone, the rest of the run follows
            self.emit(vals[0])
            vals = vals[1:]
        self.emit_many(vals)

    def resume(self):
        if self.running and self.timer is None:
            self._tick()


def backlogged(rt):
    """True when a pipe_out of runtime rt cannot take values at full speed."""
    for p in rt.pipe_outs.values():
        c = p.conn
        tx = p.tx
        if c is None or tx.full() or not c.writable():
            return True
        # Batched, values wait for the frame timer by design: only with time-frame 0 do unsent
        # values mean the connection could not take them. (Counting the time frame's values
        # here stopped a free-running source after every burst until the next acknowledgement.)
        if not p.tf and tx.unsent() > 0:
            return True
    return False


def room(rt, n):
    """At most n: the values the fullest replay buffer of runtime rt still takes. A free-running
    source reads no more per turn, so it waits for acknowledgements instead of pushing the oldest
    unacknowledged values out of a buffer (its bound is for rated sources and outages)."""
    for p in rt.pipe_outs.values():
        tx = p.tx
        if tx.acks and tx.spool is None:
            free = tx.cap - len(tx.buf)
            if free < n:
                n = free if free > 1 else 1
    return n
