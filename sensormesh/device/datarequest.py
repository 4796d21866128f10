# The data request of the original design (docs/design.md): a client asks for one sensor, the device streams arrays of values.
#
#   {"data-request": {"sensor": "dht11", "time-frame": 1000, "values-per-time-frame": 10}}
#
# time-frame (ms): send what was gathered every x ms; 0 or missing = send every value on its own.
# values-per-time-frame: gather x evenly spaced values per frame (one every time-frame/x ms);
#   0 or missing = as many as the sensor gives. The time frame has precedence: when it expires,
#   what was gathered is sent even if fewer than x. With time-frame 0 it has no effect.
# Frames are laid on a fixed grid (start + k * time-frame), so they do not drift.
from sensormesh.device.codec import MAX_FRAME_VALUES, ProtocolError   # a larger time frame leaves as several arrays
from sensormesh.device.compat import MICROPYTHON
from sensormesh.device.schedule import grid_due, wait_ms

# Free-running sensors (rate 0) are read in bursts of this many values per loop turn, so the
# loop still serves other sockets between bursts.
BURST = 64 if MICROPYTHON else 512
# Batched (time-frame > 0), values only join a list between loop turns: longer bursts cost no
# frames, and each turn of the loop (timer, poll) is paid once per burst (4096 values take about
# 0.3 ms on CPython).
BATCH_BURST = 64 if MICROPYTHON else 4096

FIELDS = ("sensor", "time-frame", "values-per-time-frame", "max-frame")


class RequestError(Exception):
    """A data request the device cannot serve. code is a short machine-readable word."""

    def __init__(self, code, message, extra=None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.extra = extra

    def to_message(self):
        err = {"code": self.code, "message": self.message}
        if self.extra:
            for k in self.extra:
                err[k] = self.extra[k]
        return {"error": err}


def _nonneg_int(req, key):
    v = req.get(key, 0)
    if v is None:
        return 0
    if type(v) is bool or type(v) is not int:
        # v - v is 0 only for a finite float: 1e400 reads as infinity, which int() refuses
        if type(v) is float and v - v == 0 and v == int(v) and v >= 0:
            return int(v)
        raise RequestError("bad-field", "%s must be a non-negative integer, got %s" % (key, _show(v)))
    if v < 0:
        raise RequestError("bad-field", "%s must not be negative, got %d" % (key, v))
    return v


def _show(v):
    if type(v) is str:
        return "the string %r" % v
    if type(v) is bool:
        return "a boolean"
    if v is None:
        return "null"
    if type(v) in (list, dict):
        return "a JSON " + ("array" if type(v) is list else "object")
    return repr(v)


def parse(req, sensor_names):
    """Validate the body of a data-request; returns (sensor, time_frame, values_per_frame, max_frame)."""
    if type(req) is not dict:
        raise RequestError("bad-request", "data-request must be a JSON object, got %s" % _show(req))
    for k in req:
        if k not in FIELDS:
            raise RequestError("bad-field", "unknown field %r in data-request (fields: %s)" % (k, ", ".join(FIELDS)))
    sensor = req.get("sensor")
    if sensor is None:
        raise RequestError("bad-request", "data-request has no sensor", {"sensors": sensor_names})
    if type(sensor) is not str:
        raise RequestError("bad-field", "sensor must be a string, got %s" % _show(sensor))
    if sensor not in sensor_names:
        raise RequestError("unknown-sensor", "unknown sensor %r; this device has: %s"
                           % (sensor, ", ".join(sensor_names) or "no sensors"), {"sensors": sensor_names})
    tf = _nonneg_int(req, "time-frame")
    vpf = _nonneg_int(req, "values-per-time-frame")
    mf = _nonneg_int(req, "max-frame")
    return sensor, tf, vpf, mf


def serve(dev, session, body):
    """{"data-request": body} on a session of device dev (control.handle loads this module for it):
    the stream started on the session's connection, or the refusal sent, saying why, and logged."""
    conn = session.conn
    try:
        name, tf, vpf, mf = parse(body, sorted(dev.sensors))
    except RequestError as e:
        # logged here, once (the client may close first); on_close then stays silent, also
        # when the close below completes at once
        peer = conn.peer
        dev.log("refused data request%s (%s): %s" % (" from %s" % (peer,) if peer else "", e.code, e.message))
        session.logged = True
        conn.send(e.to_message())
        conn.close_after_flush("refused data request (%s): %s" % (e.code, e.message))
        return
    sensor, rate = dev.sensors[name]
    if mf:
        from sensormesh.device import control   # (loaded: it called this function)
        control.peer_limit(dev, conn, mf)
    session.kind = "stream"
    stream = Stream(dev.loop, conn, sensor, rate, tf, vpf)
    stream.name = name
    stream.log = dev.log
    session.stream = stream
    dev.streams.append(stream)
    stream.start()


class Stream:
    """Reads one sensor on a schedule and sends time frames to one connection. A read that
    raises (a sensor unplugged, a CSV row that is not text) gives no value: it is counted in
    `failed`, named in `last_error` and logged (the 1st, 2nd, 4th... time, with the sensor's
    name), and the stream reads on at its next slot, so a sensor plugged back in is read again."""

    name = None      # the sensor's name on the device (serve sets it)
    log = None       # the device's log function (serve sets it)
    failed = 0       # reads that raised
    nulled = 0       # values sent as null: JSON cannot carry them, or too large for the client
    last_error = None

    def __init__(self, loop, conn, sensor, rate, time_frame, values_per_frame):
        self.loop = loop
        self.conn = conn
        self.read = sensor.get
        self.tf = time_frame
        self.vpf = values_per_frame if time_frame else 0
        # Sampling period in ms: evenly spaced values within a frame, never faster than the
        # sensor gives them. 0 = free-running (read as fast as the connection takes values).
        period = 1000.0 / rate if rate else 0.0
        if time_frame and self.vpf:
            even = time_frame / self.vpf
            if even > period:
                period = even
        self.period = period
        self.frame = []
        self.timer = None
        self._tick_cb = self._tick   # one bound method for every reschedule, not one per tick
        self.running = False
        self.sent_values = 0
        self.sent_frames = 0
        self.skipped = 0   # slots not read because the reader was too slow (back-pressure)
        self.missed = 0    # slots not read because the loop was stalled

    def start(self):
        now = self.loop.now()
        self.t0 = now
        self.taken = 0
        self.deadline = now + self.tf if self.tf else 0
        self.running = True
        self._tick()

    def stop(self):
        self.running = False
        if self.timer:
            self.timer.cancel()
            self.timer = None

    def stats(self):
        st = {"sensor": self.name, "values": self.sent_values, "frames": self.sent_frames,
              "skipped": self.skipped, "missed": self.missed, "failed": self.failed,
              "nulled": self.nulled}
        if self.last_error:
            st["last_error"] = self.last_error
        return st

    def _send_frame(self):
        frame = self.frame
        if frame:
            self.frame = []
            try:
                self.conn.send(frame)
            except ProtocolError:       # a value in it cannot travel: null in its place
                self.conn.send(self._nulled(frame))
            self.sent_values += len(frame)
            self.sent_frames += 1

    def _nulled(self, frame):
        """frame with null for each value JSON cannot carry (NaN, infinity) or that is larger
        than the client's frames, as a pipe sends them; counted in `nulled` and logged."""
        from sensormesh.device.codec import payloads
        limit = self.conn.peer_max_frame
        out = []
        why = None
        for v in frame:
            try:
                payloads([v], limit)
            except ProtocolError as e:
                why = str(e)
                v = None
                n = self.nulled = self.nulled + 1
                if self.log and n & (n - 1) == 0:
                    self.log("sensor %s: a value cannot travel (%s); sent as null (%d so far)"
                             % (self.name, why, n))
            out.append(v)
        if why is None:
            raise ProtocolError("frame cannot be sent")   # not because of one value: a failure
        return out

    def on_drain(self):
        if self.running and self.period == 0 and self.timer is None:
            self._tick()

    def _tick(self):
        self.timer = None
        if not self.running or self.conn.closed:
            return
        try:
            if self.period:
                self._periodic()
            else:
                self._free_run()
        except Exception as e:     # the sensor's read raised: that slot gives no value
            self._failed(e)

    def _failed(self, e):
        self._count_failed(e)
        if self.running and not self.conn.closed and self.timer is None:
            # the slots still due, then on schedule (a free-running sensor: after a
            # millisecond, not in a busy loop)
            self.timer = self.loop.call_later(0 if self.period else 1, self._tick_cb)

    def _count_failed(self, e):
        n = self.failed = self.failed + 1
        self.last_error = "%s: %s" % (type(e).__name__, e)
        if self.log and n & (n - 1) == 0:
            self.log("sensor %s: read failed: %s (%d so far; the stream to %s reads on)"
                     % (self.name, self.last_error, n, self.conn.peer))

    def _free_run(self):
        conn = self.conn
        read = self.read
        if not self.tf:
            # One value per frame: the original design's "send every value individually".
            send = conn.send
            n = 0
            v = None
            try:
                while n < BURST and conn.writable():
                    v = read()
                    send([v])
                    n += 1
            except ProtocolError:       # v cannot travel: null in its place
                send(self._nulled([v]))
                n += 1
            finally:        # (a read that raised ends the burst: what was sent is counted)
                self.sent_values += n
                self.sent_frames += n
        elif conn.writable():
            frame = self.frame
            append = frame.append
            try:
                for _ in range(BATCH_BURST):
                    append(read())
            finally:    # (also when a read raised: what was read leaves in its time frame)
                if len(frame) >= MAX_FRAME_VALUES:
                    self._send_frame()
                now = self.loop.now()
                if now >= self.deadline:
                    self._send_frame()
                    self.deadline += self.tf
                    if self.deadline <= now:
                        self.deadline = now + self.tf
        if conn.writable():
            self.timer = self.loop.call_later(0, self._tick_cb)
        # else: wait for on_drain

    def _periodic(self):
        now = self.loop.now()
        period = self.period
        tf = self.tf
        due = grid_due(self, now)      # a stall beyond schedule.MAX_CATCH_UP counts as missed
        conn = self.conn
        read = self.read
        while due > 0:
            slot = self.t0 + self.taken * period
            if tf and slot >= self.deadline:
                self._send_frame()
                self.deadline += tf
                if self.deadline <= slot:
                    # no slot fell into one or more whole frames: move on to the frame holding slot
                    self.deadline += ((slot - self.deadline) // tf + 1) * tf
            self.taken += 1
            due -= 1
            if not conn.writable():
                self.skipped += 1
                continue
            if tf:
                self.frame.append(read())
                n = len(self.frame)
                if n >= MAX_FRAME_VALUES or (self.vpf and n >= self.vpf):
                    self._send_frame()
            else:
                v = read()
                try:
                    conn.send([v])
                except ProtocolError:   # v cannot travel: null in its place
                    conn.send(self._nulled([v]))
                self.sent_values += 1
                self.sent_frames += 1
        if tf and now >= self.deadline:
            self._send_frame()
            self.deadline += tf
            if self.deadline <= now:
                self.deadline = now + tf
        nxt = self.t0 + self.taken * period
        if tf and self.deadline < nxt:
            nxt = self.deadline
        self.timer = self.loop.call_later(wait_ms(nxt, self.loop.now()), self._tick_cb)
