# A pipe_out's array that could not be sealed because a value in it cannot travel: NaN or
# infinity (JSON cannot carry them), or a value larger than the receiver's frames. Each such
# value leaves as null in its place, so the numbering of the values around it holds (the
# receiver counts values, it does not read their numbers); they are counted ("nulled" in the
# pipe's status) and logged at about every doubling of their count. Loaded only for such an array
# (pipes.py), and forgotten after it on a board running .mpy files.
from sensormesh.device import codec


def send(po, conn, vals, first, high, error):
    """Send the array `vals` (values first.. of the pipe's numbering; those before `high` were
    sent before), which failed with `error` and was taken back (Sender.untake), with null for
    each value that cannot travel alone. When every value travels alone the array failed for
    another reason: `error` is raised again, its values still unsent."""
    limit = conn.peer_max_frame
    out = []
    new = 0
    why = None
    for j in range(len(vals)):
        v = vals[j]
        try:
            codec.payloads([v], limit)
        except codec.ProtocolError as e:
            why = str(e)
            v = None
            if first + j >= high:
                new += 1
        out.append(v)
    if why is None:
        raise error
    vals = None
    tx = po.tx
    n = len(out)
    if tx.acks:
        tx.take(n)          # the same values again, counted as sent
    else:
        tx.dropped -= n     # (untake counted them as dropped; they leave now)
    try:
        conn.send(out)
    except MemoryError:     # not sealed: its values are unsent again (pipes.py)
        tx.untake(first, high, n)
        raise
    if new:
        n = getattr(po, "nulled", 0) + new
        po.nulled = n
        if n >= getattr(po, "nulled_log", 1):      # logged at about every doubling
            po.nulled_log = 2 * n
            po.rt.log("pipe %s: a value cannot travel (%s); sent as null (%d so far)" % (po.edge, why, n))
