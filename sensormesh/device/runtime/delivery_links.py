# What callback deliveries (delivery.py) do only now and then: the confirming controllers coming
# or the last one going as the live subscribers are counted (confirming), a new deployment taking
# the numbering of the previous one's callback (take_over) or a restarted sink device taking it
# back from a mark (fresh, adopt), the log line of values dropped while no controller takes them,
# values that cannot be delivered, and a pipe_in's hurry. Loaded per call (a Delivery's through Rarely,
# steps/__init__.py; the runtime's functions through rare_call) and forgotten after it on a
# board running .mpy files, so a board running a callback keeps only what it does per value.
# Each function takes the Delivery or the Runtime first.


def fresh(d):
    return d.tx.next_seq() == 0 and not d.tx.adopted


def adopt(d, seq, run):
    d.tx.adopt(seq, run)


def take_over(d, tx):
    tx.cap = d.tx.cap
    d.tx = tx


def dropped(d, n):
    d.rt.log("callback %s: no controller took its values; %d dropped so far (the oldest go)" % (d.sid, n))


def confirming(rt, flag):
    """A confirming controller is subscribed (flag) or the last one went away: then what is
    queued has taken effect (as in the original design), and checkpoints may move on."""
    rt.confirmed = flag
    for d in rt.deliveries.values():
        d.confirmed = flag
    if not flag:
        if rt.deliveries:
            rt.log("no subscribed controller confirms callback values: they count as taken once queued")
        rt.outputs_acked()


def undeliverable(rt, d, n, e):
    """n values of callback d cannot leave (a value JSON cannot carry, a message too large for
    a subscriber's link): counted in the status reply's lost_deliveries; logged the 1st, 2nd,
    4th... time, so a step that yields NaN on every value does not flood the log. The values
    after them leave as usual."""
    before = rt.lost_deliveries
    rt.lost_deliveries = before + n
    p = 1
    while p <= before:       # the first power of two above what was lost before
        p <<= 1
    if p <= rt.lost_deliveries:
        rt.log("%d callback value(s) of %s not delivered (%d so far): %s" % (n, d.sid, rt.lost_deliveries, e))


def hurry_outlets(rt):
    """An upstream buffer is half full: callback values leave now (the controller confirms
    them sooner) and csv rows are flushed."""
    from sensormesh.device.runtime.delivery import commit_files, send
    if getattr(rt, "deliver_timer", None) is not None:
        rt.deliver_timer.cancel()
        send(rt)
    commit_files(rt)
