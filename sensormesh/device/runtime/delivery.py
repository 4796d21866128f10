# Callback-sink values on their way to the controller, numbered and confirmed like a pipe.
#
# Each callback step has one Delivery: a replay.Sender whose values leave in
#   {"deliver": {"step", "epoch", "values", "seq": S, "run": R}}   (values S, S+1, ... of run R)
# A controller that confirms (it said {"acks": true} in deploy or subscribe) answers
#   {"delivered": {"step", "seq": N, "run": R}}      every value before N has been taken
# and drops what it already had by (device, step, run, seq) (controller/deliveries.py).
# The pipe_in feeding the callback acknowledges upstream only values the controller confirmed
# (checkpoint marks name the callback as "@<step id>"), so a sink device that restarts gets its
# unconfirmed input replayed, takes the callback's numbering back from the mark, and the
# controller drops what it had already: exactly once at the controller (docs/reliability.md).
# While no confirming controller is subscribed, values count as taken once queued (as for the
# original design's deliveries): they wait here, at most `cap`, the oldest dropped and counted.
from sensormesh.device.runtime.replay import Sender


class Delivery:
    def __init__(self, sid, cap, run):
        self.sid = sid
        self.edge = "@" + sid     # its name in checkpoint marks (never an edge id: those have no @)
        self.tx = Sender(cap, run)
        self.fed_by = None        # the pipe_in that alone feeds the callback (it may adopt marks)
        self.relay = False        # never takes a numbering back after evictions upstream
        self.carried = False
        self.confirmed = False    # a confirming subscriber is live (set by the runtime)
        self.logged = 0

    def position(self):
        return self.tx.position()

    def acked(self):
        tx = self.tx
        return tx.base if self.confirmed else tx.next_seq()

    def fresh(self):
        return self.tx.next_seq() == 0 and not self.tx.adopted

    def adopt(self, seq, run):
        self.tx.adopt(seq, run)
        self.carried = True

    def take_over(self, tx):
        tx.cap = self.tx.cap
        self.tx = tx
        self.carried = True

    def messages(self, epoch, dumps, limit):
        """deliver messages for every value not sent yet, each within `limit` bytes of JSON
        (unless one value is larger); the values count as sent."""
        tx = self.tx
        first = tx.sent
        vals = tx.take(1 << 30)
        if vals is None:
            return []
        out = []
        _split(out, self.sid, epoch, tx.run, first, vals, dumps, limit)
        return out


def _split(out, sid, epoch, run, first, vals, dumps, limit):
    msg = {"deliver": {"step": sid, "epoch": epoch, "values": vals, "seq": first, "run": run}}
    n = len(dumps(msg))
    if n <= limit or len(vals) < 2:
        out.append(msg)
        return
    k = n // limit + 1
    step = (len(vals) + k - 1) // k
    for i in range(0, len(vals), step):
        _split(out, sid, epoch, run, first + i, vals[i:i + step], dumps, limit)
