# Pipes: the edges of a pipeline that cross from one device to another.
#
# A pipe_out gathers the values its upstream step pushes and sends them as one JSON array per
# time frame (time-frame 0: every value on its own). A pipe_in receives those arrays and
# pushes each value into its downstream steps, in order. Either end may open the TCP
# connection (the controller decides who can reach whom):
#   pipe_out with "to": it dials the receiver and says {"pipe": {"edge", "epoch"}}
#   pipe_in with "from": it dials the sender and says {"pull": {"edge", "epoch"}}
# The dialing end names the other device in "peer"; a device with keys dials as its own identity
# and authenticates that device (device.dial, sensormesh/device/secure/__init__.py) before the first message.
# Values wait in the pipe_out while there is no connection, up to a bound; what overflows is
# counted as dropped and reported in status, never lost silently.
from sensormesh.device.compat import MICROPYTHON
from sensormesh.device.steps import Outlet, nowhere

# Values a pipe_out holds while it has no connection (or the connection is backed up).
MAX_PENDING = 2000 if MICROPYTHON else 1000000
# Values per array at most; a larger time frame leaves as several consecutive arrays.
MAX_FRAME_VALUES = 256 if MICROPYTHON else 65536
RETRY_MS = (100, 200, 500, 1000, 2000)


def _peer(runtime, sid, params, address):
    """The name of the device a pipe dials ("peer"). A device with keys authenticates the other
    end by that name, so it needs one whenever it dials."""
    peer = params.get("peer")
    if peer is not None and type(peer) is not str:
        raise ValueError("step '%s': peer must be a device name" % sid)
    if address and peer is None and getattr(runtime.device, "security", None) is not None:
        raise ValueError("step '%s': a device with keys needs the pipe's 'peer' (the name of the device at %s) "
                         "to authenticate it" % (sid, address))
    return peer


class PipeOut:
    SINK = True

    def __init__(self, runtime, sid, params):
        self.rt = runtime
        self.id = sid
        self.edge = params.get("edge") or sid
        self.to = params.get("to")
        self.peer = _peer(runtime, sid, params, self.to)
        tf = params.get("time-frame", 0)
        if type(tf) is not int or tf < 0:
            raise ValueError("step '%s': time-frame must be a non-negative integer" % sid)
        self.tf = tf
        self.frame = []
        self.pending = []   # frames waiting for a connection, oldest first
        self.pending_values = 0
        self.conn = None
        self.timer = None
        self.retry_timer = None
        self.retries = 0
        self.running = False
        self.n_in = 0
        self.n_out = 0
        self.dropped = 0
        self.connects = 0
        self.last_error = None

    def inlet(self, port):
        return self.push

    # -- values -------------------------------------------------------------------------
    def push(self, value, port=0):
        self.n_in += 1
        if self.tf:
            f = self.frame
            f.append(value)
            if len(f) >= MAX_FRAME_VALUES:
                self._ship()
        else:
            conn = self.conn
            if conn is not None and conn.writable() and not self.pending:
                conn.send([value])
                self.n_out += 1
            else:
                self.frame.append(value)
                self._ship()

    def _ship(self):
        frame = self.frame
        if not frame:
            return
        self.frame = []
        conn = self.conn
        if conn is not None and not self.pending and conn.writable():
            conn.send(frame)
            self.n_out += len(frame)
            return
        self.pending.append(frame)
        self.pending_values += len(frame)
        while self.pending_values > MAX_PENDING and self.pending:
            lost = self.pending.pop(0)
            self.pending_values -= len(lost)
            self.dropped += len(lost)
            self.rt.log("pipe %s: receiver unavailable, dropped %d values (%d so far)"
                        % (self.edge, len(lost), self.dropped))

    def _drain_pending(self):
        conn = self.conn
        while self.pending and conn is not None and conn.writable():
            frame = self.pending.pop(0)
            self.pending_values -= len(frame)
            conn.send(frame)
            self.n_out += len(frame)

    def _on_frame_timer(self):
        self.timer = None
        if not self.running:
            return
        self._ship()
        self.timer = self.rt.loop.call_later(self.tf, self._on_frame_timer)

    def backlogged(self):
        """True when this pipe cannot take values at full speed (free-running sources wait)."""
        c = self.conn
        return c is None or self.pending_values > 0 or not c.writable()

    # -- connection ---------------------------------------------------------------------
    def start(self):
        self.running = True
        if self.tf:
            self.timer = self.rt.loop.call_later(self.tf, self._on_frame_timer)
        if self.to:
            self._dial()

    def _dial(self):
        self.retry_timer = None
        if not self.running:
            return
        self.conn = None
        self.rt.device.dial(self.to, self, self.peer,
                            {"pipe": {"edge": self.edge, "epoch": self.rt.epoch, "from": self.rt.device.name}})

    def attach(self, conn):
        """A pipe_in dialed us and pulled this edge: its connection becomes ours."""
        if self.conn is not None and not self.conn.closed:
            self.conn.close("replaced by a new pull")
        self.conn = conn
        self.connects += 1
        self._drain_pending()
        self.rt.resume_sources()

    def on_connect(self, conn):
        self.conn = conn
        self.connects += 1
        self.retries = 0
        self._drain_pending()
        self.rt.resume_sources()

    def on_message(self, conn, msg):
        if type(msg) is dict and "error" in msg:
            self.last_error = msg["error"].get("message")
            self.rt.log("pipe %s to %s refused: %s" % (self.edge, self.to, self.last_error))

    def on_drain(self, conn):
        self._drain_pending()
        self.rt.resume_sources()

    def on_close(self, conn, reason):
        if conn is not self.conn and self.conn is not None:
            return
        self.conn = None
        if not self.running:
            return
        self.last_error = reason
        if self.to:
            delay = RETRY_MS[self.retries if self.retries < len(RETRY_MS) else -1]
            self.retries += 1
            if self.retries == 1 or self.retries % 10 == 0:
                self.rt.log("pipe %s to %s: %s; retrying in %d ms" % (self.edge, self.to, reason, delay))
            self.retry_timer = self.rt.loop.call_later(delay, self._dial)

    def flush(self):
        self._ship()
        self._drain_pending()

    def close(self):
        self.running = False
        for t in (self.timer, self.retry_timer):
            if t:
                t.cancel()
        if self.conn is not None:
            self.conn.close_after_flush("pipeline stopped")
            self.conn = None

    def stats(self):
        # in = out + pending + unshipped + dropped: unshipped is the current time frame's rest
        s = {"in": self.n_in, "out": self.n_out, "dropped": self.dropped, "pending": self.pending_values,
             "unshipped": len(self.frame),
             "connected": self.conn is not None and not self.conn.connecting, "connects": self.connects}
        if self.last_error:
            s["last_error"] = self.last_error
        return s


class PipeIn(Outlet):
    """Receives one edge's arrays and pushes every value downstream, in order."""

    def __init__(self, runtime, sid, params):
        self.rt = runtime
        self.id = sid
        self.edge = params.get("edge") or sid
        self.frm = params.get("from")
        self.peer = _peer(runtime, sid, params, self.frm)
        self.emit = nowhere
        self.outputs = []
        self.conn = None
        self.running = False
        self.retry_timer = None
        self.retries = 0
        self.n_in = 0
        self.frames = 0
        self.last_error = None

    def start(self):
        self.running = True
        if self.frm:
            self._dial()

    def _dial(self):
        self.retry_timer = None
        if not self.running:
            return
        self.conn = self.rt.device.dial(self.frm, self, self.peer,
                                        {"pull": {"edge": self.edge, "epoch": self.rt.epoch, "from": self.rt.device.name}})

    def attach(self, conn):
        self.conn = conn

    def on_message(self, conn, msg):
        if type(msg) is list:
            self.frames += 1
            self.n_in += len(msg)
            emit = self.emit
            for v in msg:
                emit(v)
        elif "error" in msg:
            self.last_error = msg["error"].get("message")
            self.rt.log("pipe %s: peer says %s" % (self.edge, self.last_error))

    def on_close(self, conn, reason):
        if conn is not self.conn:
            return
        self.conn = None
        if self.running and self.frm:
            delay = RETRY_MS[self.retries if self.retries < len(RETRY_MS) else -1]
            self.retries += 1
            self.retry_timer = self.rt.loop.call_later(delay, self._dial)

    def flush(self):
        pass

    def close(self):
        self.running = False
        if self.retry_timer:
            self.retry_timer.cancel()
        if self.conn is not None:
            self.conn.close("pipeline stopped")
            self.conn = None

    def stats(self):
        s = {"in": self.n_in, "out": self.n_in, "frames": self.frames, "connected": self.conn is not None}
        if self.last_error:
            s["last_error"] = self.last_error
        return s
