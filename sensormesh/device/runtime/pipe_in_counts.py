# A pipe_in's counts (a status or metrics reply) and its end (a stop's flush and close): the
# rarely run parts needed at a board's fullest moments, apart from its connections and the
# sender's announcements (pipe_in_links.py), so that a status reply or a stop loads only this.
# PipeIn finds these through __getattr__ (steps/__init__.py, Rarely: ALSO): loaded per call and
# forgotten after it on a board running .mpy files. Each function takes the PipeIn first.


def pipe_metrics(pi):
    c = pi.conn
    return {"dir": "in", "peer": pi.peer or pi.frm, "values": pi.n_in, "frames": pi.frames,
            "bytes": pi.bytes_prev + (getattr(c, "bytes_in", 0) if c is not None else 0),
            "reconnects": pi.connects - 1 if pi.connects > 1 else 0, "queue": 0, "rtt_us": None}


def flush(pi):
    pass


def close(pi):
    pi.running = False
    for t in (pi.retry_timer, pi.ack_timer):
        if t:
            t.cancel()
    pi.ack_timer = None
    if pi.conn is not None:
        if pi.rx.ack_due(0) and pi.rx.run == pi.rx.rx_run:
            pi._send_ack()
        pi.conn.close_after_flush("pipeline stopped")
        pi.conn = None
