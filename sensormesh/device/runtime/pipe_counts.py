# A pipe_out's metrics (a metrics reply) and its end (a stop's flush and close): the rarely run
# parts needed at a board's fullest moments, apart from its connection's events (pipe_links.py),
# so that a stop loads only this (its counts are report.py's). PipeOut finds these through
# __getattr__ (steps/__init__.py, Rarely: ALSO): loaded per call and forgotten after it on a board
# running .mpy files. Each function takes the PipeOut first.


def _retire(po, conn):
    if conn is not None:
        po.bytes_prev = getattr(po, "bytes_prev", 0) + getattr(conn, "bytes_out", 0)   # test doubles may not count


def pipe_metrics(po):
    c = po.conn
    out = po.tx.once - po.first
    return {"dir": "out", "peer": po.peer or po.to, "values": out if out > 0 else 0, "frames": po.frames,
            "bytes": getattr(po, "bytes_prev", 0) + (getattr(c, "bytes_out", 0) if c is not None else 0),
            "reconnects": po.connects - 1 if po.connects > 1 else 0,
            "queue": po.tx.unsent(), "rtt_us": getattr(po, "rtt_us", None)}


def flush(po):
    po._send()


def close(po, keep=False):
    po.running = False
    for t in (po.timer, po.retry_timer, getattr(po, "spool_timer", None)):
        if t:
            t.cancel()
    if po.tx.spool is not None:
        po.spool_timer = None
    c = po.conn
    if c is not None:
        po.conn = None
        _retire(po, c)
        # its close is this pipe's own doing: no on_close of the pipe's (pipe_links.py) to load
        c.protocol = None
        try:
            c.close_after_flush("pipeline stopped")
        except MemoryError:      # no room for closing.py's code: closed without what is queued
            c.close("pipeline stopped")
    if po.dialing is not None:
        if not po.dialing.closed:
            po.dialing.close("pipeline stopped")   # a late connect must not send for us
        po.dialing = None
    if not keep and po.tx.spool is not None:
        po.tx.spool.clear()
