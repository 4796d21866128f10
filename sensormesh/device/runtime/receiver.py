# The receiving end of an acknowledged pipe without sockets or clocks: duplicates, gaps,
# checkpoints and the acknowledgements due. The rules both ends follow are at the top of
# replay.py (the sending end); pipe_in.py drives this object; tests/device/test_replay.py pins it
# down on both interpreters.

from sensormesh.device.compat import MICROPYTHON

# A receiver acknowledges after this many values have taken effect, or this long after the first
# unacknowledged one: one small message per many values, and the sender's buffer stays short.
ACK_EVERY = 64 if MICROPYTHON else 1024
ACK_MS = 50

# Checkpoints a receiver remembers while its outputs wait for acknowledgements; more are merged
# into the newest (acknowledgements then come later, never wrongly).
MAX_CHECKPOINTS = 32


class Receiver:
    """The receiving end of one pipe: duplicates, gaps, checkpoints and the acknowledgements due."""

    def __init__(self):
        self.run = None       # run of the values received so far (None: none yet)
        self.expect = 0       # seq of the next value wanted in that run
        self.rx_run = None    # run and seq of the next value arriving on this connection
        self.rx = 0
        self.lost = 0         # values never received (gaps), counted when the next one arrives
        self.dups = 0         # values received twice and dropped
        self.runs = 0         # numberings seen (more than one: a sender lost its state)
        self.done = None      # every value before this seq has taken effect
        self.done_mark = None
        self.acked = None     # the last acknowledgement sent
        self.cps = []         # [seq, marks]: seq is done once every pipe in marks is acked that far
        self.lin = {}         # tagged values (several inputs upstream): input -> [run, seq, k] taken last

    def announce(self, seq, run):
        """The sender says its next value is `seq` of `run`. Returns True when this receiver has
        never had a value (the first announcement after a start: marks may be adopted)."""
        if type(seq) is not int or seq < 0:
            raise ValueError("seq must be a non-negative integer, got %r" % (seq,))
        self.rx = seq
        self.rx_run = run
        return self.run is None

    def arrive(self, n):
        """n values arrive. Returns (skip, gap): drop the first `skip` (duplicates); `gap` values
        before them never arrived and are counted as lost."""
        rx = self.rx
        self.rx = rx + n
        if self.run != self.rx_run or self.run is None:
            # a new numbering (or the first values ever): start counting from here
            self.run = self.rx_run
            self.runs += 1
            self.expect = rx
            self.cps = []
            self.done = None
            self.done_mark = None
            self.acked = None
        exp = self.expect
        gap = 0
        if rx > exp:
            gap = rx - exp
            self.lost += gap
            exp = rx
        skip = exp - rx
        if skip >= n:
            self.dups += n
            return n, gap
        self.dups += skip
        self.expect = rx + n
        return skip, gap

    def checkpoint(self, seq, marks):
        """Inputs before seq have left this device's steps: into local sinks, and into the pipes
        of marks ({edge: [next seq, run]}; None when it feeds none, so seq is done at once)."""
        if not marks:
            self.cps = []
            self.done = seq
            self.done_mark = None
            return
        cps = self.cps
        if cps and cps[-1][1] == marks:
            cps[-1][0] = seq
        else:
            cps.append([seq, marks])
            if len(cps) > MAX_CHECKPOINTS:
                del cps[-2]     # merge into the newest: later acknowledgement, never a wrong one

    def settle(self, acked_of):
        """Move `done` over every checkpoint whose outputs are acknowledged; acked_of(edge) gives
        an outgoing pipe's acknowledged seq. Returns True if `done` moved."""
        cps = self.cps
        moved = False
        while cps:
            seq, marks = cps[0]
            for e in marks:
                if acked_of(e) < marks[e][0]:
                    return moved
            cps.pop(0)
            self.done = seq
            self.done_mark = marks
            moved = True
        return moved

    def ack_due(self, every):
        """True when at least `every` values wait for an acknowledgement (0: any)."""
        d = self.done
        if d is None:
            return False
        a = self.acked
        if a is None:
            return True
        return d - a >= every and d > a

    def ack(self):
        """The acknowledgement to send now (and remember as sent)."""
        self.acked = self.done
        if self.done_mark:
            return {"ack": self.done, "mark": self.done_mark}
        return {"ack": self.done}
