# A pipe_in's rarely run parts (pipe_in.py has what runs per value): taking over the previous
# deployment's receiver, its connections (dialing, attaching a pulled one, losing one, closing),
# the sender's announcement of its numbering, the marks its first values come with after a
# restart, the sender's request to acknowledge sooner (its counts and its end, a status reply's
# and a stop's, are pipe_in_counts.py's). PipeIn finds these through
# __getattr__ (steps/__init__.py, Rarely): this module is loaded per call and forgotten after it
# on a board running .mpy files. Each function takes the PipeIn first.
from sensormesh.device.compat import MICROPYTHON
from sensormesh.device.codec import MAX_FRAME_VALUES
from sensormesh.device.runtime.receiver import ACK_EVERY
from sensormesh.device.schedule import redial_delay


def take_over(pi, rx):
    """The previous deployment's receiver of this edge: keep what it knows (its checkpoints
    name pipes by edge; the new deployment's pipes of those edges carry their numbering)."""
    pi.rx = rx
    rx.acked = None


def start(pi):
    pi.running = True
    if pi.frm:
        pi._dial()


def _dial(pi):
    pi.retry_timer = None
    if not pi.running:
        return
    hs = {"edge": pi.edge, "epoch": pi.rt.epoch, "from": pi.rt.device.name}
    rx = pi.rx
    if rx.run is not None:
        hs["expect"] = [rx.expect, rx.run]
    if MICROPYTHON:
        hs["frame-values"] = MAX_FRAME_VALUES   # the arrays a board decodes (pipes.py)
    rx.acked = None   # say again on this connection how far we are
    pi.soon = None
    old = pi.conn
    pi._retire(old)
    pi.conn = None
    if old is not None and not old.closed:
        old.close("replaced by a new connection of edge %s" % pi.edge)
    pi.connects += 1
    try:
        pi.conn = pi.rt.device.dial(pi.frm, pi, pi.peer, {"pull": hs})
    except MemoryError:
        # no memory free to dial (or for the handshake's code) now: try again later
        pi.retry_timer = pi.rt.loop.call_later(redial_delay(pi), pi._dial)


def attach(pi, conn, body=None):
    old = pi.conn
    pi.conn = conn
    if conn is not old:
        pi._retire(old)
        pi.connects += 1
        if old is not None and not old.closed:
            # the newest connection of an edge wins; values still coming on the old one
            # would be counted as the new numbering's (the sender replays them anyway)
            old.close("replaced by a new connection of edge %s" % pi.edge)
    pi.soon = None
    rx = pi.rx
    rx.acked = None
    if MICROPYTHON:
        # a board decodes arrays of at most this many values: a PC's sender replaying a
        # backlog sends them so (pipes.py, FIRST_FRAME_VALUES until it reads this)
        try:
            conn.send({"frame-values": MAX_FRAME_VALUES})
        except MemoryError:
            pass     # (then its sender's arrays grow at our first acknowledgement)
    if type(body) is dict and "seq" in body:
        pi._announce([body.get("seq"), body.get("run"), body.get("mark"), body.get("buffer"), body.get("lin")])
        if rx.run is not None and rx.run == rx.rx_run:
            conn.send({"expect": [rx.expect, rx.run]})
        pi._maybe_ack()


def _announce(pi, s):
    if type(s) is not list or len(s) < 2:
        raise ValueError("a seq announcement is [seq, run, mark, buffer], got %r" % (s,))
    first = pi.rx.announce(s[0], s[1])
    pi.redials = 0       # the sender took the link (schedule.redial_delay)
    pi.parked = []       # the sender goes on from where it says: what was held comes again
    mark = s[2] if len(s) > 2 else None
    cap = s[3] if len(s) > 3 else None
    pi.tagged = len(s) > 4 and s[4] == 1
    if type(cap) is int and cap > 0:
        pi.every = cap // 4 if cap // 4 < ACK_EVERY else ACK_EVERY
        if pi.every < 1:
            pi.every = 1
    if first:
        # adopted when the first values come: a later announcement (a jump) may move them
        pi.first_mark = mark if type(mark) is dict else None
    if not pi.announced:
        pi.announced = True
        announced(pi.rt, pi, mark if first and type(mark) is dict else None)


def adopt_marks(pi, mark):
    """pi's first values since this device started come with the mark stored upstream:
    where our pipe_outs stood. A pipe_out it alone feeds that has numbered nothing yet
    continues there, so its receiver drops what it already had. [seq, run, k]: k inputs
    after the mark left the sender's buffer unacknowledged; only a relay (values leave as
    they came) knows where its outputs stand then: seq + k."""
    rt = pi.rt
    for edge in mark:
        p = rt.pipe_outs.get(edge) or rt.outlets.get(edge)
        m = mark[edge]
        if p is None or p.fed_by is not pi or not p.fresh():
            continue
        if type(m) is list and len(m) in (2, 3) and type(m[0]) is int and m[0] >= 0:
            k = m[2] if len(m) == 3 else 0
            if k and (type(k) is not int or k < 0 or not p.relay):
                rt.log("pipe %s: starts a new numbering (%s values before its first input were "
                       "evicted upstream, unacknowledged)" % (p.edge, k))
                continue
            p.adopt(m[0] + k, m[1])


def _ack_soon(pi, seq):
    """The sender's buffer is half full: acknowledge up to seq as soon as values take effect,
    and ask the same of the receivers of the pipes our values feed (module notes)."""
    if type(seq) is not int:
        return
    pi.soon = seq
    sinks = False
    for po in pi.feeds:
        if getattr(po, "PIPE", None) == "out":
            po.hurry()
        else:
            sinks = True          # a callback or csv sink (runtime outlets)
    if sinks:
        from sensormesh.device.runtime import delivery
        from sensormesh.device.steps import rare_call
        rare_call(delivery.RARE_IN, "hurry_outlets", pi.rt)
    pi._maybe_ack()


def _retire(pi, conn):
    if conn is not None:
        pi.bytes_prev += getattr(conn, "bytes_in", 0)    # test doubles may not count


def on_close(pi, conn, reason):
    if conn is not pi.conn:
        return
    pi._retire(conn)
    pi.conn = None
    if pi.running and pi.frm:
        pi.retry_timer = pi.rt.loop.call_later(redial_delay(pi), pi._dial)


def untaken_said(pi, seq, e):
    # PipeIn.untaken: a value found no heap free and comes again from the sender
    pi.last_error = "no heap free for value %d: taken again from there" % seq
    pi.rt.log("pipe %s: %s (%s)" % (pi.edge, pi.last_error, e))


def announced(rt, pipe_in, mark):
    """pipe_in's sender said where it stands for the first time since this process started.
    A mark that names the joined inputs means this device restarted: values are held until
    every input has announced, then each replay starts at the latest cut any mark names (the
    others' acknowledgements may lag behind: those values had taken effect)."""
    if not rt.joint:
        return
    if mark:
        for k in mark:
            if k[:1] == "<":
                m = mark[k]
                old = rt.cut_marks.get(k)
                if type(m) is list and (len(m) == 2 or (len(m) == 3 and m[2] == 0)) and type(m[0]) is int \
                        and (old is None or m[0] > old[0]):
                    rt.cut_marks[k] = m
                rt.parking = True
    if not rt.parking:
        return
    for p in rt.pipe_ins.values():
        if not p.announced:
            return
    rt.parking = False
    for p in rt.pipe_ins.values():
        m = rt.cut_marks.get("<" + p.edge)
        if m is not None and m[1] == p.rx.rx_run:
            p.skip_below = m[0]
    rt.cut_marks = {}
    for p in rt.pipe_ins.values():
        held = p.parked
        p.parked = []
        for msg in held:
            p._values(msg)
