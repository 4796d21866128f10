# Acknowledged pipes without sockets or clocks: the sequence numbers, acknowledgements and replay
# buffer of one pipe. The sending end is here (Sender), the receiving end in receiver.py
# (Receiver), which only a device with a pipe_in loads; moving values to a spool is spool.py.
# What a Sender does only for a new connection (restart, announce, skip_to) or when it takes a
# numbering back (adopt) is replay_links.py's, loaded per call (Rarely, steps/__init__.py).
# pipes.py and pipe_in.py drive these objects; tests/device/test_replay.py pins them down on
# both interpreters. The guarantees they give are stated in docs/reliability.md.
#
# The rules, in one place:
# - Sequence numbers are implicit. A sender numbers the values of a pipe 0, 1, 2... It states the
#   number of the next value (and its run, below) when a connection starts: in the handshake
#   {"pipe": {..., "seq": S, "run": R, "mark": M, "buffer": B}} or, on a pulled connection or
#   after a jump, in a control object {"seq": [S, R, M, B]} sent just before data (M may be null;
#   B is the sender's buffer size, so the receiver acknowledges at least every B/4 values). Every value after that counts one
#   more: TCP keeps order, so nothing per value travels on the wire.
# - A run names one numbering. A sender that lost its state (a restarted device) starts a new run;
#   a receiver that sees data of a new run starts counting afresh (nothing lost, nothing dropped).
# - The receiver acknowledges cumulatively and in batches: {"ack": N} says every value before N
#   has taken effect on this device: written by a local sink, or, for what it fed into pipes of
#   its own, acknowledged by their receivers in turn (checkpoints, below). {"ack": N, "mark": M}
#   adds the positions its outgoing pipes had reached when input N was next: M = {edge: [seq, run]}.
# - The sender keeps every value not yet acknowledged (the replay buffer, at most `cap` values)
#   and sends again from the oldest on each new connection; the receiver drops the values it has
#   already had (duplicates). After a reconnect the receiver may say {"expect": [E, R]}: the next
#   value it wants, so a sender still holding unsent values skips those.
# - A restarted device in the middle of a chain gets its input replayed from the last
#   acknowledgement, together with the mark stored there: an outgoing pipe fed only by that input
#   and holding no state of its own (fresh) takes the numbering back from the mark, so its
#   receiver drops what it already had and the chain stays exactly once.
# - The mark belongs to the value acknowledged with it (`mark_at`). When the oldest values leave
#   the buffer beyond the bound, the mark stays, and the announcement says how many values lie
#   between it and the first one sent: {edge: [seq, run, k]}. A pipe that relays its input
#   unchanged (a gateway) continues at seq + k; its receiver then drops what it already had and
#   counts what it never had as lost. (Dropping the mark there made the next device start a new
#   numbering after a re-route, and its receiver took values it had already had once more.)
# - Beyond the bound the oldest unacknowledged values leave the buffer (counted by the sender as
#   "evicted", and "dropped" for those never sent at all); a receiver that then gets a value beyond the one it expects counts the gap as
#   "lost" (exactly the values it never had) and reports it.

import os
from array import array

from sensormesh.device.steps import Rarely


# The replay buffer holds numbers compactly: while every value in it is a float it is an array
# of this port's floats (8 bytes a value on the unix port, 4 on an ESP32, instead of a pointer
# and a float object each), and a list as soon as another value joins (ints, bools, strings,
# lists: they come out exactly as they went in). 'f' where a float is single precision (ESP32),
# so that a value comes back from the array bit for bit; 'd' elsewhere.
FLOATS = "f" if array("f", [0.1])[0] == 0.1 else "d"


def new_run():
    """A random name for a new numbering of a pipe's values (30 bits: a small int on a board)."""
    b = os.urandom(4)
    return ((b[0] & 0x3F) << 24) | (b[1] << 16) | (b[2] << 8) | b[3]


class Sender(Rarely):
    """The sending end of one pipe: its numbering and its replay buffer (values base..next-1:
    the oldest may sit in a spool on disk, spool.py; the rest, from mbase on, in memory)."""
    # what a new connection does to the numbering and taking one back: replay_links.py (module
    # notes); what values leaving a full buffer need (evict) stays here, as the heap may be low
    RARE_IN = "sensormesh.device.runtime.replay_links"
    RARE = ["restart", "announce", "skip_to", "adopt"]

    # State that most pipes keep at its start for their whole life (a spool, a mark, values
    # evicted): an attribute becomes the sender's own once it changes, so a board's sender holds
    # a smaller dict (its running state only, set in __init__).
    spool = None     # a spool.Spool, when the pipe may store values on disk (which may set
    #                  meta_out, fn(first, n) -> what to store beside values first.., and meta_in,
    #                  fn(meta) it comes back to when they are read: spool.py, getattr)
    mark = None      # the receiver's mark for value mark_at (see the rules)
    mark_at = 0      # the base when the mark came (older than base after an eviction)
    evicted = 0      # values that left the buffer unacknowledged (beyond the bound)
    dropped = 0      # of those, values never sent at all
    spooled = 0      # values written to the spool
    jumped = False   # values announced on the connection left unsent: announce again
    adopted = False  # the numbering was handed back by the upstream's mark

    def __init__(self, cap, run, acks=True):
        self.cap = cap if cap > 0 else 1
        self.run = run
        self.acks = acks      # False: values leave the buffer when sent (no replay, no acks)
        self.buf = []         # values from seq `mbase` on, oldest first
        self.base = 0         # everything before base is acknowledged (or evicted)
        self.mbase = 0        # seq of buf[0]; base..mbase-1 are in the spool
        self.sent = 0         # seq of the next value to send on the current connection
        self.high = 0         # every value before this seq has been sent (or dropped)
        self.once = 0         # values sent at least once

    def next_seq(self):
        return self.mbase + len(self.buf)

    def unsent(self):
        return self.mbase + len(self.buf) - self.sent

    def held(self):
        return self.mbase + len(self.buf) - self.base

    def full(self):
        return len(self.buf) >= self.cap

    def add(self, value):
        buf = self.buf
        if type(value) is float:
            if not buf and type(buf) is list:
                self.buf = buf = array(FLOATS)   # an empty buffer takes floats compactly
        elif type(buf) is not list:
            self.buf = buf = list(buf)           # a value that is not a float: a list again
        buf.append(value)
        if len(buf) > self.cap:
            if self.spool is None or not self.spool.spill(self):
                self.evict(len(buf) - self.cap)

    def drop(self, k):
        """Remove the k oldest values in memory."""
        buf = self.buf
        if type(buf) is list:
            del buf[:k]
        else:
            buf[:k] = buf[:0]    # MicroPython's array deletes no slice: assign an empty one

    def _forget(self, new_base):
        """Values before new_base left the buffer unacknowledged (beyond the bound)."""
        k = new_base - self.base
        if k <= 0:
            return
        old = self.base if self.base > self.high else self.high
        self.base = new_base
        if self.base > old:
            self.dropped += self.base - old
        self.evicted += k     # the mark stays: it still belongs to mark_at (announce)
        if self.sent < self.base:
            self.sent = self.base
            self.jumped = True    # the connection's next value is not the one announced

    def evict(self, k):
        """Drop the k oldest values in memory (beyond the bound, no room in a spool)."""
        if k > len(self.buf):
            k = len(self.buf)
        if self.spool is not None:
            self.spool.clear()
        self.drop(k)
        self.mbase += k
        self._forget(self.mbase)

    def take(self, limit):
        """The next values to send (at most `limit`), now counted as sent."""
        if self.sent < self.mbase:
            seg = self.spool.read(self.sent) if self.spool is not None else None
            if seg is None:
                return None
            i = self.sent - seg[0]
            out = seg[1][i:i + limit]
            if seg[2] is not None and getattr(self, "meta_in", None) is not None:
                self.meta_in(seg[2])
        else:
            i = self.sent - self.mbase
            n = len(self.buf) - i
            if n > limit:
                n = limit
            if n <= 0:
                return None
            if i == 0 and n == len(self.buf) and not self.acks and type(self.buf) is list:
                out = self.buf
                self.buf = []
            else:
                out = self.buf[i:i + n]
                if type(out) is not list:
                    out = list(out)
                if not self.acks:
                    self.drop(n)
        n = len(out)
        lo = self.sent if self.sent > self.high else self.high
        self.sent += n
        if self.sent > lo:
            self.once += self.sent - lo
            self.high = self.sent
        if not self.acks:
            self.base = self.mbase = self.sent
        return out

    def untake(self, first, high, n):
        """take() undone: its n values (from seq `first`, with the high mark `high` before it)
        did not leave, for want of heap to seal their array. With acknowledgements they are
        unsent again, and leave with the next array; without, they are gone: counted dropped."""
        if not self.acks:
            self.dropped += n
            return
        lo = first if first > high else high
        if self.sent > lo:
            self.once -= self.sent - lo
        self.sent = first
        self.high = high

    def ack(self, n, mark=None):
        """The receiver acknowledges every value before n; returns how many left the buffer."""
        if type(n) is not int or n <= self.base:
            return 0
        top = self.next_seq()
        if n > top:
            n = top     # an acknowledgement beyond what was sent: take it as "everything"
        k = n - self.base
        if n > self.mbase:
            if self.spool is not None:
                self.spool.clear()
            self.drop(n - self.mbase)
            self.mbase = n
        elif self.spool is not None:
            self.spool.trim(n)
        self.base = n
        if self.sent < n:
            # the receiver has values this connection did not carry (it had them from an earlier
            # run of this numbering): the next value sent is not the one it counts on
            if n > self.high:
                # nor did this process (the device restarted and took the numbering back): they
                # reached the receiver all the same, so they count as sent (in = out + pending + dropped)
                b = n - k
                self.once += n - (self.high if self.high > b else b)
                self.high = n
            self.sent = n
            self.jumped = True
        self.mark = mark if type(mark) is dict else None
        self.mark_at = n
        return k
