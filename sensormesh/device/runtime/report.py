# The counts of the running assignment (a "status" reply's, polled every few seconds while a
# controller watches, and a stopped pipeline's "stopped" reply's: the reply itself is
# device/replies.py's send_stats), every node's counts with them (stats: a step's, a source's, a
# pipe_out's; Rarely's COUNTS, steps/__init__.py, so that gathering them loads no module per
# node), and the runtime's other rarely used methods: Runtime.RARE (runtime/__init__.py) names
# them, and Runtime finds them here through __getattr__ (steps/__init__.py, Rarely), so this
# module is loaded per call and forgotten after it on a board running .mpy files, before the
# reply is sealed.
from sensormesh.device.runtime import Source


def status(rt):
    st = {"pipeline": rt.pipeline, "epoch": rt.epoch, "state": rt.state, "steps": {}}
    for i in rt.order:
        n = rt.nodes[i]
        try:
            # its class's own stats, else this module's (called here: no lookup through Rarely)
            st["steps"][i] = getattr(type(n), "stats", stats)(n)
        except Exception as e:
            st["steps"][i] = {"error": str(e)}
    lost = rt.lost_deliveries
    for d in rt.deliveries.values():
        lost += d.tx.dropped
    if lost:
        st["lost_deliveries"] = lost
    return st


# -- a node's counts (Rarely: COUNTS), when its class has none of its own -----------------------
def stats(n):
    if getattr(n, "PIPE", None) == "out":
        return _pipe_out(n)
    if isinstance(n, Source):
        s = {"in": n.n_out + n.errors, "out": n.n_out, "errors": n.errors, "missed": n.missed}
        if n.last_error:
            s["last_error"] = n.last_error
        return s
    return base_stats(n)


def base_stats(step):
    # a step's: what a family's own stats extends
    s = {"in": step.n_in, "out": getattr(type(step), "out_count", out_count)(step), "dropped": step.dropped,
         "errors": step.errors}
    if step.last_error is not None:
        # "": a port that cannot say which exception the step caught (steps.base.UNKNOWN)
        s["last_error"] = step.last_error or "an exception (this port does not say which)"
    return s


def out_count(step):
    """The values the step put out: its n_out, or for a step whose class says THROUGH (map,
    field, merge and the sinks that hand every value on) every value in but those dropped,
    which it does not count per value."""
    if getattr(step, "THROUGH", False):
        return step.n_in - step.dropped
    return step.n_out


def _pipe_out(po):
    # in = out + pending + dropped: out = values sent at least once, pending = never sent yet,
    # dropped = left the full replay buffer before being sent (evicted: also those sent but not
    # acknowledged). Counts of a deployment that carried over an edge's buffer start with it:
    # its `in` starts at the values it took over unsent plus those dropped before (install.py);
    # values the receiver had from an earlier process of this device count as out (replay.py).
    # "seq" and "acked" are positions in the edge's numbering.
    tx = po.tx
    out = tx.once - po.first
    pending = tx.next_seq() - (tx.high if tx.high > tx.base else tx.base)
    s = {"in": po.n_in, "out": out if out > 0 else 0, "pending": pending, "unshipped": 0,
         "dropped": tx.dropped, "evicted": tx.evicted, "resent": getattr(po, "resent", 0),
         "acked": tx.base, "unacked": tx.held(), "seq": tx.next_seq(), "buffer": tx.cap,
         "connected": po.conn is not None and not po.conn.connecting, "connects": po.connects}
    if tx.spool is not None:
        s["spool"] = tx.spool.stats()
        s["spooled"] = tx.spooled
    if getattr(po, "nulled", 0):    # values that could not travel, sent as null (pipe_nulls.py)
        s["nulled"] = po.nulled
    err = getattr(po, "last_error", None)
    if err:
        s["last_error"] = err
    return s



# -- the runtime's other rarely used methods, in the modules that hold their code -------------
def shutdown(rt):
    # the device stops (core.Device.close): its assignment stops as for a stop message
    rt.rare("stop", "teardown")


def deliver(rt, sid, value):
    # a callback step's values (deploy hands each callback its Delivery's deliver directly)
    from sensormesh.device.runtime.delivery import deliver
    deliver(rt, sid, value)
