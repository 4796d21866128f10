# Pipes: the edges of a pipeline that cross from one device to another. This module has the
# sending end (PipeOut); the receiving end is pipe_in.py (PipeIn), so a device that only sends
# never loads that, and one that only receives never loads this (and one with no pipe at all
# loads neither). What both ends share lives where every device has it already: the values per
# array in codec.py, the redial backoff in schedule.py, the acknowledgement pace in receiver.py,
# the origin stamps' bound in probe.py.
#
# A pipe_out gathers the values its upstream step pushes and sends them as one JSON array per
# time frame (time-frame 0: every value on its own). A pipe_in receives those arrays and
# pushes each value into its downstream steps, in order. Either end may open the TCP
# connection (the controller decides who can reach whom):
#   pipe_out with "to": it dials the receiver and says {"pipe": {"edge", "epoch", "seq", "run"}}
#   pipe_in with "from": it dials the sender and says {"pull": {"edge", "epoch", "expect"}}
# The dialing end names the other device in "peer"; a device with keys dials as its own identity
# and authenticates that device (device.dial, sensormesh/device/secure/__init__.py) before the first message.
#
# Pipes are acknowledged (replay.py has the rules, docs/reliability.md the guarantees): values
# are numbered implicitly, the receiver acknowledges in batches ({"ack": N}) once they have taken
# effect, and the pipe_out keeps what is not acknowledged in a bounded replay buffer that it sends
# again on every new connection. What overflows the buffer is counted ("dropped" at the sender,
# "lost" at the receiver, exactly the gap) and logged, never lost silently.
# A sender whose replay buffer is half full asks for acknowledgements sooner: it sends what its
# time frame holds and {"ack-soon": S} (S: its next seq). The receiver then acknowledges every
# value before S as soon as it has taken effect (each checkpoint, not after ACK_EVERY values or
# ACK_MS), and passes the request on to the pipe_outs its values feed, whose receivers do the
# same: the acknowledgement comes back through a chain within a few round trips instead of a
# time frame and ACK_MS per device. It changes when acknowledgements leave, never what they say.
# Control objects on a pipe that a side does not know are ignored (newer peers may send more).
#
# Metrics travel out of band the same way (runtime/probe.py, docs/observability.md):
#   {"ts": [[k, device, tick_us], ...]}   just before an array: its k-th value was read by
#                                         `device` at its tick_us (sampled values only)
#   {"rtt": tick_us}                      a round-trip probe: the pipe_in sends it straight back
from sensormesh.device.codec import FIRST_FRAME_VALUES, MAX_FRAME_VALUES
from sensormesh.device.compat import MICROPYTHON, forget, ticks_diff, ticks_us
from sensormesh.device.schedule import redial_delay, sparse
from sensormesh.device.steps import Rarely

# Values a pipe_out keeps unacknowledged (its replay buffer) unless the pipeline sets `buffer`.
# A board's heap holds about 100 KB in all. 1000 floats take about 4 KB there in the buffer's
# array of floats (8.5 KB on the 64-bit unix port; replay.py), but values of other kinds are heap
# objects each (1000 small lists or strings: tens of KB), more than a deployed board may have
# free. So the bound is also the heap's: each
# time a pipe's buffer has grown by HEAP_CHECK values, a device with MicroPython's gc.mem_free()
# checks the free heap, and below HEAP_RESERVE bytes (after a collection) the buffer's bound
# comes down to what it holds (logged, shown as "buffer" in the pipe's stats). A full buffer then
# does what it always does: a free-running source waits, a rated one's oldest unacknowledged
# values leave it, counted as dropped, never silently (docs/reliability.md). A lowered bound goes
# back up to the configured one at an acknowledgement that finds HEAP_RISE bytes free (logged).
DEFAULT_BUFFER = 1000 if MICROPYTHON else 100000
HEAP_CHECK = 32
HEAP_RESERVE = 24 * 1024
HEAP_RISE = HEAP_RESERVE * 3 // 2
try:
    from gc import collect as _collect, mem_free as _mem_free
except ImportError:            # CPython: no heap limit of this kind
    _mem_free = None
# Values read back from a spool leave one array at a time with this pause between arrays, so
# a long backlog does not hold the loop: sources, steps and other pipes run in between.
SPOOL_GAP_MS = 2
# a pipe_out's last_error when an array found no heap free to be sealed as a value came
NO_HEAP_TO_SEND = "no heap free to seal an array: its values wait in the replay buffer"


class PipeOut(Rarely):
    SINK = True
    PIPE = "out"
    # What a running pipe_out does rarely (connections, adopting a numbering) is in
    # pipe_links.py, its metrics and its end (a metrics reply, a stop's flush and close: a
    # board's fullest moments) in the smaller pipe_counts.py (its counts: report.py), each loaded per call
    # (steps/__init__.py, Rarely). What values leaving a full buffer may need (announcing a
    # jump, asking for acknowledgements sooner) stays here: that happens while the heap may be
    # low, when loading a module could fail (their log lines are pipe_links.py's: without room
    # for that code, the counts say it).
    RARE_IN = "sensormesh.device.runtime.pipe_links"
    fv = MAX_FRAME_VALUES    # values per array now (FIRST_FRAME_VALUES on a new connection)
    # It is made and set up by build_pipes.pipe_out.
    RARE = ["fresh", "adopt", "bound_back", "bound_down", "log_drops", "start", "on_connect", "on_close",
            "on_control"]
    ALSO_IN = "sensormesh.device.runtime.pipe_counts"
    ALSO = ["_retire", "pipe_metrics", "flush", "close"]
    # State most pipes keep as it starts (each becomes the pipe's own once it is set; the rest is
    # build_pipes.pipe_out_setup's): a board's pipe_out holds a smaller dict.
    fed_by = None   # the pipe_in that alone feeds this pipe (build_pipes.pipe_paths: it may adopt its marks)
    relay = False   # True: its input is that pipe_in itself (values leave as they came)
    first = 0       # values the edge's sender had sent before this deployment (install.take_over)
    # State a pipe has only once something rare happened has no class default either (a smaller
    # class dict): the code that sets it reads it with getattr(po, name, default): spool_limit and
    # spool_timer (a pipe that spools: spool.py), last_error (a connection lost or refused) and
    # refused_by (the connection the receiver refused, until it closes: pipe_links.py),
    # bytes_prev (bytes sent on earlier connections), resent (values sent again), rtt_us (the
    # last round trip measured: the metrics probe's)

    # its wiring: kept here, as a deployment's build, its fullest moment, wires it
    def inlet(self, port):
        return self.push

    # -- values -------------------------------------------------------------------------
    def push(self, value, port=0):
        self.n_in += 1
        if self.lineage:
            value = self.lineage(self, value)    # joined.tagged (deploy sets it)
        tx = self.tx
        tx.add(value)
        try:
            if len(tx.buf) >= self.roomy:
                self.heap_check()
            if self.tf:
                if tx.unsent() >= MAX_FRAME_VALUES or tx.full():
                    self._send()        # an array's worth, or nothing more joins before an ack
            elif self.conn is not None or self.dialing is not None or self.retry_timer is None:
                self._send()
            if tx.dropped != self.logged_drops:
                self._dropped()
            if not self.asked and tx.acks and 2 * tx.held() >= tx.cap:
                self.hurry(True)
        except MemoryError:
            # The value is taken (in the replay buffer); an array or a request that found no heap
            # free to be sealed leaves later, with the next value or time frame. Raised on, it
            # unwound through the steps and the pipe_in feeding them, and the rest of that
            # pipe_in's frame never reached them. (Saying so grows the pipe's dict the first
            # time: with no heap for that either, its counts still show the values waiting.)
            try:
                self.last_error = NO_HEAP_TO_SEND
            except MemoryError:
                pass

    def heap_check(self):
        """The replay buffer grew by HEAP_CHECK values: with too little heap free, its bound
        comes down to what it holds (module notes)."""
        tx = self.tx
        n = len(tx.buf)
        self.roomy = n + HEAP_CHECK
        if _mem_free is None or n >= tx.cap or _mem_free() >= HEAP_RESERVE:
            return
        _collect()
        free = _mem_free()
        if free < HEAP_RESERVE:
            tx.cap = n if n > 1 else 1
            try:
                self.bound_down(free)   # its log line: pipe_links.py, loaded for it
            except MemoryError:
                pass    # no room for that code now: the pipe's stats show the bound ("buffer")

    def hurry(self, own=False):
        """Ask the receiver to acknowledge sooner (module notes): what the time frame holds leaves
        now, then {"ack-soon": next seq}. own: this pipe's buffer is half full (asked once until
        the next acknowledgement); else a request from upstream passed on by our pipe_in."""
        conn = self.conn
        tx = self.tx
        if conn is None or conn.connecting or conn.closed or not tx.acks or not tx.held():
            return
        if own:
            self.asked = True
        self._send()
        conn.send({"ack-soon": tx.next_seq()})

    def _seq(self):
        """The seq announcement of this connection ([seq, run, mark, cap, 1] when tagged)."""
        a = self.tx.announce()
        if self.lineage:
            a.append(1)
        return {"seq": a}

    def _jumped(self):
        """The next value to send is not the one the connection's receiver counts on: say so.
        False: no room now for the announcement's code (replay_links.py, loaded for it); it stays
        due, and no value leaves on the connection before it (_send)."""
        c = self.conn or self.dialing
        if c is not None and not c.closed:
            try:
                c.send(self._seq())
            except MemoryError:
                return False
        self.tx.jumped = False
        return True

    def _dropped(self):
        tx = self.tx
        if tx.jumped:
            self._jumped()
        n = tx.dropped
        if sparse(n) or n - self.logged_drops >= 1000:
            try:
                self.log_drops(n)   # pipe_links.py, loaded for the log line
            except MemoryError:
                pass    # no room for that code now: counted (the pipe's stats say how many)
        self.logged_drops = n

    def _send(self):
        """Send what is not sent yet, while the connection takes it."""
        conn = self.conn
        c = conn or self.dialing
        if c is None:
            if self.retry_timer is None and self.to and self.running:
                self._dial()   # its last dial found no heap even for the timer of its next try
            return
        if c.closed:
            # It closed while the heap had no room for on_close's code (pipe_links.py, loaded
            # for it), so the pipe still holds it: let it go now and dial again. The values wait
            # in the buffer; short of memory again, the next value or frame tries once more.
            try:
                self.on_close(c, None)     # None: "connection closed" (pipe_links.on_close)
            except MemoryError:
                pass
            return
        tx = self.tx
        if tx.spool is not None and getattr(self, "spool_timer", None) is not None:
            return      # a spooled backlog is leaving at its own pace
        if tx.jumped and conn is not None and not self._jumped():
            # values announced on this connection left the buffer before being sent on it: the
            # receiver must not count the next array from the announced seq (unannounced for
            # want of heap: the values wait, the next value or frame tries again)
            return
        while conn is not None and conn.writable():
            first = tx.sent
            high = tx.high
            spooled = tx.sent < tx.mbase     # from the spool: sent at a limited rate
            vals = tx.take(self.fv)
            if vals is None:
                return
            if first < high:
                self.resent = getattr(self, "resent", 0) + (high if high < tx.sent else tx.sent) - first
            ts = None
            if self.stamps:      # origin stamps of sampled values among them (probe_wiring.py)
                try:
                    from sensormesh.device.runtime import probe_wiring
                    forget(probe_wiring)
                    ts = probe_wiring.stamps_for(self, first, len(vals))
                except MemoryError:      # no room for that code now: these values go unsampled
                    ts = None
                probe_wiring = None      # its code is garbage again before the array is sealed
            try:
                if ts is not None:
                    # (its values are taken: stamps that find no heap free to be sealed leave
                    # them unsent again, as their array would; they counted as sent, unsent,
                    # and the receiver numbered the next array's values as theirs)
                    conn.send(ts)
                conn.send(vals)
            except Exception as e:      # not sealed: its values are unsent again
                tx.untake(first, high, len(vals))
                if isinstance(e, MemoryError):
                    raise       # (the loop logs it); else a value cannot travel: null instead
                from sensormesh.device.runtime import pipe_nulls
                forget(pipe_nulls)
                pipe_nulls.send(self, conn, vals, first, high, e)
            self.frames += 1
            if spooled:
                self.spool_timer = self.rt.loop.call_later(SPOOL_GAP_MS, self.spool_sent)
                return

    def _on_frame_timer(self):
        self.timer = None
        if not self.running:
            return
        # the next frame's timer first: an array that finds no heap to be sealed raises (the
        # loop logs it) and its values leave with the next frame
        self.timer = self.rt.loop.call_later(self.tf, self._on_frame_timer)
        self._send()
        self.rt.resume_sources()

    def position(self):
        return [self.tx.next_seq(), self.tx.run]

    def _dial(self):
        self.retry_timer = None
        if not self.running:
            return
        # this pipe's connection and the one being set up closed first: one connection per edge,
        # or the receiver would count the values of two as one numbering
        cs = (self.conn, self.dialing)
        self.conn = None
        self.dialing = None
        for c in cs:
            if c is not None and not c.closed:
                c.close("replaced by a new connection")
        if FIRST_FRAME_VALUES < MAX_FRAME_VALUES:
            self.fv = FIRST_FRAME_VALUES
        try:
            # the numbering's restart and announcement: replay_links.py, loaded for them and
            # forgotten before the dial loads the handshake's code
            self.tx.restart()
            hs = {"edge": self.edge, "epoch": self.rt.epoch, "from": self.rt.device.name}
            if self.tx.acks:
                a = self.tx.announce()
                hs["seq"] = a[0]
                hs["run"] = a[1]
                if a[2]:
                    hs["mark"] = a[2]
                hs["buffer"] = a[3]
                if self.lineage:
                    hs["lin"] = 1
            self.dialing = self.rt.device.dial(self.to, self, self.peer, {"pipe": hs})
        except MemoryError:
            # no memory free to dial (or for the handshake's code) now: try again later; the
            # values wait in the replay buffer
            self.retry_timer = self.rt.loop.call_later(redial_delay(self), self._dial)

    def on_message(self, conn, msg):
        if type(msg) is not dict:
            return
        if "ack" in msg:
            tx = self.tx
            self.redials = 0     # the receiver took the link (schedule.redial_delay)
            if tx.ack(msg["ack"], msg.get("mark")):
                if self.fv < MAX_FRAME_VALUES:
                    # the receiver took values: arrays as large as it said it takes, or ours
                    self.fv = getattr(self, "fv_max", MAX_FRAME_VALUES)
                self.roomy = len(tx.buf) + HEAP_CHECK
                if tx.cap < self.bound and _mem_free() >= HEAP_RISE:
                    self.bound_back(_mem_free())   # the heap has room again (module notes): pipe_links.py
                self.asked = False
                if self.tx.jumped:
                    self._jumped()
                self.rt.outputs_acked()
                self.rt.resume_sources()
        elif "rtt" in msg and "expect" not in msg:
            t = msg["rtt"]
            if type(t) is int:
                self.rtt_us = ticks_diff(ticks_us(), t)
        else:
            self.on_control(conn, msg)   # "expect" or "error" (pipe_links.py)

    def on_drain(self, conn):
        self._send()
        self.rt.resume_sources()
