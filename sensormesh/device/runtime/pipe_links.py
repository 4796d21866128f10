# A pipe_out's rarely run parts (pipes.py has what runs per value; its counts and its close are
# pipe_counts.py's): its connections (dialing, taking a connection, losing one), the receiver's "expect" and errors, adopting a
# numbering, its replay buffer's bound back up, and two log lines: the bound coming down (heap
# low) and values dropped from a full buffer (a board without room for this code then counts
# them only, pipes.py). PipeOut finds these through __getattr__
# (steps/__init__.py, Rarely): this module is loaded per call and forgotten after it on a board
# running .mpy files. Each function takes the PipeOut first.
from sensormesh.device.codec import MAX_FRAME_VALUES
from sensormesh.device.schedule import LOG_EVERY_REDIALS, redial_delay


def bound_back(po, free):
    """An acknowledgement found `free` bytes of heap, room again (pipes.py's notes): the replay
    buffer's bound is the configured one again."""
    po.tx.cap = po.bound
    po.rt.log("pipe %s: %d bytes of heap free again: its replay buffer holds up to %d values"
              % (po.edge, free, po.tx.cap))


def bound_down(po, free):
    """heap_check found only `free` bytes of heap: the replay buffer's bound came down to what it
    holds (pipes.py's notes)."""
    po.rt.log("pipe %s: %d bytes of heap free: its replay buffer holds at most the %d values it has"
              % (po.edge, free, po.tx.cap))


def log_drops(po, n):
    po.rt.log("pipe %s: receiver unavailable and the replay buffer (%d values) is full: "
              "%d unacknowledged values dropped so far" % (po.edge, po.tx.cap, n))


# -- numbering ------------------------------------------------------------------------
def fresh(po):
    # numbered nothing and took no numbering back (a pipe carried over a redeployment that
    # came before its first value is still fresh)
    return po.tx.next_seq() == 0 and not po.tx.adopted


def adopt(po, seq, run):
    """Continue the numbering the upstream's mark hands back (this device restarted)."""
    po.tx.adopt(seq, run)
    po.rt.log("pipe %s: continues at value %d of its earlier run" % (po.edge, seq))
    c = po.conn or po.dialing
    if c is not None and not c.closed:
        c.send(po._seq())


# -- connection ---------------------------------------------------------------------
def start(po):
    po.running = True
    tx = po.tx
    if getattr(po, "spool_limit", 0) or tx.spool is not None:
        from sensormesh.device.runtime import spool   # only pipes that spool load it
        spool.start(po)
    if po.tf:
        po.timer = po.rt.loop.call_later(po.tf, po._on_frame_timer)
    if po.to:
        # on the next loop turn, once the start message's code (runtime/control.py) and this
        # module are forgotten: a keyed board loads the handshake's code for the dial (its
        # largest heap); _dial is pipes.py's for the same reason
        po.retry_timer = po.rt.loop.call_later(0, po._dial)


def on_connect(po, conn):
    if not po.running or (po.dialing is not None and conn is not po.dialing):
        conn.close("pipe %s no longer uses this connection" % po.edge)   # a stale dial
        return
    po.conn = conn
    po.dialing = None
    po.connects += 1
    po.asked = False
    # (redials starts over at the receiver's first word, not here: one that refuses the edge
    # answers after the connection, and a keyed one's handshake, came up: schedule.py)
    # What waits in the buffer leaves on the next loop turn, once this module's code and the
    # dial's (connect.py, the handshake's) are garbage: a board's heap is at its fullest here,
    # and sealing the first arrays on top of it could find no room.
    po.rt.loop.call_soon(po._send)
    po.rt.resume_sources()


def on_control(po, conn, msg):
    """A control object on the pipe other than an acknowledgement or a round-trip probe."""
    if "expect" in msg:
        po.redials = 0      # the receiver took the link (schedule.redial_delay)
        e = msg["expect"]
        tx = po.tx
        if type(e) is list and len(e) == 2 and tx.unsent():
            was = tx.sent
            tx.skip_to(e[0], e[1])
            if tx.sent != was:
                conn.send(po._seq())   # the next array starts further on
    elif "frame-values" in msg:
        # the receiver takes arrays of at most this many values (a board: its own limit)
        po.redials = 0
        v = msg["frame-values"]
        if type(v) is int and v > 0:
            po.fv_max = po.fv = v if v < MAX_FRAME_VALUES else MAX_FRAME_VALUES
    elif "error" in msg:
        err = msg["error"]
        po.last_error = err.get("message") if type(err) is dict else str(err)
        po.refused_by = conn    # its close keeps this reason (on_close)
        n = po.redials      # a refusal that lasts is logged as its redials are (on_close)
        if n == 0 or n % LOG_EVERY_REDIALS == 0:
            po.rt.log("pipe %s to %s refused: %s" % (po.edge, po.to, po.last_error))


def on_close(po, conn, reason):
    if reason is None:    # a close the pipe found itself (pipes._send): the transport said none
        reason = "connection closed"
    if getattr(po, "refused_by", None) is conn:
        po.refused_by = None
        reason = po.last_error   # the receiver's reason, not "closed by peer"
    if conn is not po.conn and conn is not po.dialing:
        return    # a connection this pipe had already let go
    if po.running and po.to:
        # The redial is set before the pipe lets go of the connection: without heap free for
        # it, the pipe still holds the closed connection and its next value or frame tries
        # again (pipes._send); a log line that finds no heap free is left out. (Let go first,
        # the pipe was left with neither a connection nor a dial to come: its values waited in
        # the replay buffer for ever.)
        delay = redial_delay(po)
        po.retry_timer = po.rt.loop.call_later(delay, po._dial)
    if conn is po.conn:
        po.bytes_prev = getattr(po, "bytes_prev", 0) + getattr(conn, "bytes_out", 0)   # as pipe_counts._retire
    po.conn = None
    po.dialing = None
    if not po.running:
        return
    po.last_error = reason
    if po.to:
        n = po.redials
        if n == 1 or n % LOG_EVERY_REDIALS == 0:
            try:
                po.rt.log("pipe %s to %s: %s; retrying in %d ms" % (po.edge, po.to, reason, delay))
            except MemoryError:
                pass
