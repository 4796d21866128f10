# The receiving end of a pipe (pipes.py has the protocol and the sending end): a device whose
# assignment has no pipe_in never loads this module's code.
from sensormesh.device.runtime.pipes import ACK_EVERY, ACK_MS, MAX_STAMPS, RETRY_MS
from sensormesh.device.runtime.receiver import Receiver
from sensormesh.device.schedule import Redial
from sensormesh.device.steps import Outlet, nowhere


class PipeIn(Outlet):
    """Receives one edge's arrays and pushes every value downstream, in order, exactly once."""

    PIPE = "in"
    # What a running pipe_in does rarely (connections, announcements, counts) is in
    # pipe_in_links.py, loaded per call (steps/__init__.py, Rarely)
    RARE_IN = "sensormesh.device.runtime.pipe_in_links"
    RARE = ("take_over", "start", "_dial", "attach", "_announce", "on_connect", "_retire", "pipe_metrics",
            "on_close", "flush", "close")

    def __init__(self, runtime, sid, params):
        from sensormesh.device.runtime.build import pipe_setup
        self.frm = pipe_setup(self, runtime, sid, params, "from")
        self.emit = nowhere
        self.outputs = []
        self.rx = Receiver()
        self.feeds = []        # the pipe_outs of this device this pipe's values reach (runtime)
        self.root = 0          # this pipe's number among the device's pipe_ins (lineage tags)
        self.tagged = False    # the sender tags each value with its lineage: [tag, value]
        self.announced = False # the sender said where its numbering stands since this process started
        self.parked = []       # arrays held until every input of a joined device has announced
        self.skip_below = 0    # replayed values before this seq were taken before a restart
        self.conn = None
        self.running = False
        self.retry_timer = None
        self.ack_timer = None
        self.redial = Redial(RETRY_MS)
        self.every = ACK_EVERY   # acknowledge after this many values (less for a small sender buffer)
        self.soon = None         # the sender asked for acknowledgements up to this seq at once
        self.first_mark = None   # the mark of the announcement our first values follow (adopted with them)
        self.n_in = 0
        self.frames = 0
        self.last_error = None
        self.ts_next = None    # origin stamps of the next array (probe.py)
        self.connects = 0
        self.bytes_prev = 0

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

    def _stamped(self, stamps, start, emit):
        """An emit for the next array that processes its stamped values sampled, with their origin."""
        marks = {}
        for m in stamps:
            if type(m) is list and len(m) == 3 and type(m[0]) is int:
                marks[m[0]] = [m[1], m[2]]
        probe = self.rt.probe
        at = [start]

        def stamped(value):
            i = at[0]
            at[0] = i + 1
            o = marks.get(i)
            if o is None or probe is None:
                emit(value)
            else:
                from sensormesh.device.runtime.probe import run
                run(probe, self, value, o)
        return stamped

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
            adopt_marks(self.rt, self, self.first_mark)
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
        emit = self.emit if stamps is None else self._stamped(stamps, skip, self.emit)
        if self.tagged or rt.tracking:
            self._values_traced(msg, skip, emit)
        elif not rt.holders:
            # no step of this device holds values back: the frame's end is a checkpoint
            if skip:
                msg = msg[skip:]
            for v in msg:
                emit(v)
        else:
            # windows and joins hold values: a checkpoint is where none of them holds anything
            seq = rx.expect - n
            rt.feeding = True
            rt.settled = False
            i = skip
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

    def _values_traced(self, msg, skip, emit):
        """The frame's values one by one, with lineage: tagged values the steps had already are
        dropped, and rt.cur names the input value being pushed (for tagged pipe_outs)."""
        rt = self.rt
        rx = self.rx
        n = len(msg)
        seq = rx.expect - n
        root = self.root
        run = rx.run
        tagged = self.tagged
        track = rt.tracking
        holders = rt.holders
        rt.feeding = True
        rt.settled = False
        i = skip
        try:
            while i < n:
                v = msg[i]
                i += 1
                if tagged:
                    if type(v) is not list or len(v) != 2:
                        continue
                    if self._seen(v[0]):
                        rx.dups += 1
                        self.n_in -= 1
                        continue
                    v = v[1]
                if track:
                    rt.cur = [root, run, seq + i - 1]
                emit(v)
                if holders and rt.settled:
                    rt.settled = False
                    if not rt.holding:
                        self.checkpoint(seq + i)
        finally:
            rt.cur = None
            rt.feeding = False

    def _seen(self, tag):
        """True when the steps already had the value of this lineage tag (see PipeOut._tagged):
        per input, tags only grow, so one that is not beyond the last taken was taken."""
        if type(tag) is not list or len(tag) != 4:
            return False
        lin = self.rx.lin
        last = lin.get(tag[0])
        if last is not None and last[0] == tag[1]:
            if tag[2] < last[1] or (tag[2] == last[1] and tag[3] <= last[2]):
                return True
        lin[tag[0]] = [tag[1], tag[2], tag[3]]
        return False

    def checkpoint(self, seq):
        """Every value before seq has left this device's steps (into sinks or pipe_outs)."""
        if self.rt.joint:
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

    def _ack_soon(self, seq):
        """The sender's buffer is half full: acknowledge up to seq as soon as values take effect,
        and ask the same of the receivers of the pipes our values feed (module notes)."""
        if type(seq) is not int:
            return
        self.soon = seq
        sinks = False
        for po in self.feeds:
            if getattr(po, "PIPE", None) == "out":
                po.hurry()
            else:
                sinks = True          # a callback or csv sink (runtime outlets)
        if sinks:
            from sensormesh.device.runtime.delivery import hurry_outlets
            hurry_outlets(self.rt)
        self._maybe_ack()

    def _maybe_ack(self):
        rx = self.rx
        if rx.run is None or rx.run != rx.rx_run:
            return   # the connection's sender numbers another run: our acknowledgements would mislead it
        if rx.ack_due(self.every) or (self.soon is not None and rx.ack_due(1)):
            if self.rt.joint:
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
                ack_all(self.rt)
            else:
                self._send_ack()

    def _send_ack(self):
        conn = self.conn
        if conn is not None and not conn.closed:
            conn.send(self.rx.ack())
            if self.soon is not None and self.rx.acked >= self.soon:
                self.soon = None

    # a status reply: resident, as the controller asks every second (control.py is loaded then)
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


# -- the runtime's side of pipe_ins: joined inputs (a window or zip fed by several pipe_ins), marks
# (functions of the runtime rt, here so that a device without pipe_ins never loads them)

def joint_checkpoint(rt, pipe_in, seq):
    """A checkpoint of one input is one of all: every pipe_in notes where it stands, and the
    mark of each names all of them, so a restarted device can start every replay there."""
    inputs = {}
    for p in rt.pipe_ins.values():
        if p.rx.run is not None:
            inputs["<" + p.edge] = [seq if p is pipe_in else p.rx.expect, p.rx.run]
    for p in rt.pipe_ins.values():
        if p.rx.run is not None:
            p.cut(seq if p is pipe_in else p.rx.expect, inputs)


def ack_all(rt):
    for p in rt.pipe_ins.values():
        rx = p.rx
        if rx.ack_due(0) and rx.run is not None and rx.run == rx.rx_run:
            p._send_ack()


def adopt_marks(rt, pipe_in, mark):
    """pipe_in's first values since this device started come with the mark stored upstream:
    where our pipe_outs stood. A pipe_out it alone feeds that has numbered nothing yet
    continues there, so its receiver drops what it already had. [seq, run, k]: k inputs
    after the mark left the sender's buffer unacknowledged; only a relay (values leave as
    they came) knows where its outputs stand then: seq + k."""
    for edge in mark:
        p = rt.pipe_outs.get(edge) or rt.outlets.get(edge)
        m = mark[edge]
        if p is None or p.fed_by is not pipe_in or not p.fresh():
            continue
        if type(m) is list and len(m) in (2, 3) and type(m[0]) is int and m[0] >= 0:
            k = m[2] if len(m) == 3 else 0
            if k and (type(k) is not int or k < 0 or not p.relay):
                rt.log("pipe %s: starts a new numbering (%s values before its first input were "
                       "evicted upstream, unacknowledged)" % (p.edge, k))
                continue
            p.adopt(m[0] + k, m[1])
