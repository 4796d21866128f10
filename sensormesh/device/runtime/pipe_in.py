# The receiving end of a pipe (pipes.py has the protocol and the sending end): a device whose
# assignment has no pipe_in never loads this module's code.
from sensormesh.device.compat import forget
from sensormesh.device.runtime.probe import MAX_STAMPS
from sensormesh.device.runtime.receiver import ACK_MS
from sensormesh.device.schedule import LOG_EVERY_REDIALS
from sensormesh.device.steps import Outlet


class PipeIn(Outlet):
    """Receives one edge's arrays and pushes every value downstream, in order, exactly once
    (made and set up by build_pipe_in.pipe_in)."""

    PIPE = "in"
    # What a running pipe_in does rarely (connections, announcements, marks) is in
    # pipe_in_links.py, loaded per call (steps/__init__.py, Rarely)
    RARE_IN = "sensormesh.device.runtime.pipe_in_links"
    RARE = ["take_over", "start", "_dial", "attach", "_announce", "adopt_marks", "_ack_soon",
            "_retire", "on_close", "untaken_said"]
    # its counts and its end (a status reply's, a stop's): pipe_in_counts.py, so that those
    # moments, a board's fullest, load only that
    ALSO_IN = "sensormesh.device.runtime.pipe_in_counts"
    ALSO = ["pipe_metrics", "flush", "close"]

    def on_message(self, conn, msg):
        if conn is not self.conn:
            return    # a connection this edge no longer uses (replaced or stopped)
        if type(msg) is list:
            self._values(msg)
        elif "seq" in msg:
            try:
                self._announce(msg["seq"])
            except ValueError as e:
                self.last_error = str(e)
                self.rt.log("pipe %s: %s" % (self.edge, e))
                return
            self._maybe_ack()
        elif "ack-soon" in msg:
            self._ack_soon(msg["ack-soon"])
        elif "error" in msg:
            err = msg["error"]
            self.last_error = err.get("message") if type(err) is dict else str(err)
            n = self.redials    # a refusal that lasts is logged now and then (schedule.py)
            if n == 0 or n % LOG_EVERY_REDIALS == 0:
                self.rt.log("pipe %s: peer says %s" % (self.edge, self.last_error))
        else:
            self._metrics_message(conn, msg)

    # -- metrics (out of band, runtime/probe.py) ---------------------------------------------
    def _metrics_message(self, conn, msg):
        if "rtt" in msg:
            conn.send(msg)           # the sender measures the round trip
        elif "ts" in msg:
            ts = msg["ts"]
            if type(ts) is list and len(ts) <= MAX_STAMPS and self.rt.probe is not None:
                self.ts_next = ts

    def _values(self, msg):
        stamps = self.ts_next
        self.ts_next = None
        rt = self.rt
        if rt.parking:
            self.parked.append(msg)   # a joined input has not said where it stands yet
            return
        self.frames += 1
        rx = self.rx
        n = len(msg)
        if rx.run is None and self.first_mark is not None:
            self.adopt_marks(self.first_mark)
            self.first_mark = None
        skip, gap = rx.arrive(n)
        if gap:
            self.rt.log("pipe %s: %d values lost (the sender's replay buffer overflowed; %d lost so far)"
                        % (self.edge, gap, rx.lost))
        if self.skip_below and skip < n:
            first = rx.expect - n
            if first + skip < self.skip_below:
                more = self.skip_below - first - skip
                if more > n - skip:
                    more = n - skip
                skip += more
                rx.dups += more
            if first + n >= self.skip_below:
                self.skip_below = 0
        if skip >= n:
            if rt.holding == 0:
                self.checkpoint(rx.expect)
            return
        self.n_in += n - skip
        emit = self.emit
        if stamps is not None:    # values read sampled upstream: processed sampled here too
            try:
                from sensormesh.device.runtime import probe_wiring
            except MemoryError:   # no room for the sampling code now: the array goes unsampled
                probe_wiring = None
            if probe_wiring is not None:
                emit = probe_wiring.stamped(self, stamps, skip, emit)
                forget(probe_wiring)
        seq = rx.expect - n
        i = skip
        if self.tagged or rt.tracking:
            from sensormesh.device.runtime.joined import values_traced
            values_traced(self, msg, skip, emit)
        elif not rt.holders:
            # no step of this device holds values back: the frame's end is a checkpoint, and a
            # value that found no heap free on its way comes again with the rest (untaken)
            try:
                while i < n:
                    emit(msg[i])
                    i += 1
            except MemoryError as e:
                self.untaken(seq + i, e)
                return
        else:
            # windows and joins hold values: a checkpoint is where none of them holds anything
            rt.feeding = True
            rt.settled = False
            try:
                while i < n:
                    emit(msg[i])
                    i += 1
                    if rt.settled:
                        rt.settled = False
                        if not rt.holding:
                            self.checkpoint(seq + i)
            finally:
                rt.feeding = False
        if not rt.holding:
            self.checkpoint(rx.expect)

    def untaken(self, seq, e):
        """On a device whose steps hold no values back, the value `seq` and those after it in
        its frame reached a step that found no heap free for it (a board short of memory: a
        callback's buffer growing while its controller is slow): none of them counts as
        received or is acknowledged, and the connection closes, so the sender, which keeps
        every value not acknowledged, sends them again from there once it has dialed again.
        Nothing is lost; nothing is taken twice as long as the steps before the one that
        failed keep no state (docs/reliability.md). (Plain code, resident: loading code now
        could fail for the same want of heap.)"""
        rx = self.rx
        if seq < rx.expect:
            self.n_in -= rx.expect - seq
            rx.expect = seq
        c = self.conn
        if c is None:
            return
        try:
            c.close("no heap free for a value")
        except MemoryError:
            pass
        if self.conn is c:     # its on_close found no heap free either: the frames still
            self.conn = None   # queued on it must not count as values that arrived
        try:
            self.untaken_said(seq, e)     # the log line and last_error: pipe_in_links.py
        except MemoryError:
            pass

    def checkpoint(self, seq):
        """Every value before seq has left this device's steps (into sinks or pipe_outs)."""
        if self.rt.joint:
            from sensormesh.device.runtime.joined import joint_checkpoint
            joint_checkpoint(self.rt, self, seq)
        else:
            self.cut(seq, None)

    def cut(self, seq, inputs):
        """The checkpoint of this pipe at seq; inputs: where every pipe_in of a joined device
        stands at this moment ({"<edge": [seq, run]}), kept in the mark for a restart."""
        feeds = self.feeds
        if feeds:
            marks = {}
            if inputs:
                for k in inputs:
                    marks[k] = inputs[k]
            for po in feeds:
                marks[po.edge] = po.position()
            rx = self.rx
            rx.checkpoint(seq, marks)
            if self.rt.files and seq - (rx.acked or 0) >= self.every:
                from sensormesh.device.runtime.delivery import commit_files
                commit_files(self.rt)       # csv rows flushed: their checkpoints may settle now
            rx.settle(self.acked_of)
            if rx.cps and self.rt.confirmed:
                from sensormesh.device.runtime.delivery import deliver_soon
                deliver_soon(self.rt)       # the acknowledgement waits for the controller
        else:
            self.rx.checkpoint(seq, None)
        self._maybe_ack()

    def settle(self):
        """Our pipe_outs got acknowledgements: acknowledge what they complete."""
        if self.rx.settle(self.acked_of):
            self._maybe_ack()

    def _maybe_ack(self):
        rx = self.rx
        if rx.run is None or rx.run != rx.rx_run:
            return   # the connection's sender numbers another run: our acknowledgements would mislead it
        if rx.ack_due(self.every) or (self.soon is not None and rx.ack_due(1)):
            if self.rt.joint:
                from sensormesh.device.runtime.joined import ack_all
                ack_all(self.rt)     # every input acknowledges the same cut at once
            else:
                self._send_ack()
        elif self.ack_timer is None and (rx.ack_due(0) or (rx.cps and self.rt.files)):
            self.ack_timer = self.rt.loop.call_later(ACK_MS, self._on_ack_timer)

    def _on_ack_timer(self):
        self.ack_timer = None
        rx = self.rx
        if rx.cps and self.rt.files:
            from sensormesh.device.runtime.delivery import commit_files
            commit_files(self.rt)
        if rx.ack_due(0) and rx.run == rx.rx_run:
            if self.rt.joint:
                from sensormesh.device.runtime.joined import ack_all
                ack_all(self.rt)
            else:
                self._send_ack()

    def _send_ack(self):
        conn = self.conn
        if conn is not None and not conn.closed:
            rx = self.rx
            was = rx.acked
            try:
                conn.send(rx.ack())
            except MemoryError:
                # no heap free to seal it: still due, it goes with a later frame or the timer
                # (raised on, it unwound through the frame being taken, whose later values were gone)
                rx.acked = was
                if self.ack_timer is None:
                    try:
                        self.ack_timer = self.rt.loop.call_later(ACK_MS, self._on_ack_timer)
                    except MemoryError:
                        pass
                return
            if self.soon is not None and rx.acked >= self.soon:
                self.soon = None

    # a status reply: resident, as the controller asks every second (report.py is loaded then)
    def stats(self):
        rx = self.rx
        s = {"in": self.n_in, "out": self.n_in, "frames": self.frames, "connected": self.conn is not None,
             "seq": rx.expect, "done": rx.done, "duplicates": rx.dups, "lost": rx.lost}
        if self.last_error:
            s["last_error"] = self.last_error
        return s

    def acked_of(self, edge):
        """How far the receiver of one of this device's pipe_outs has acknowledged (a pipe no longer
        deployed counts as acknowledged: nothing waits for it any more)."""
        rt = self.rt
        p = rt.pipe_outs.get(edge)
        if p is not None:
            return p.tx.base
        p = rt.outlets.get(edge)
        return p.acked() if p is not None else 1 << 60
