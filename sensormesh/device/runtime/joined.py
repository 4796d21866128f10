# Values of several inputs joined on one device (docs/reliability.md, "Several inputs"): a pipe_out
# fed by more than one pipe_in tags each value it sends with the input value it was computed from,
# so a receiver restarted after a replay drops exactly what its steps already had. Loaded only by
# a deployment with such a pipe_out (install.pipe_paths sets PipeOut.lineage to `tagged`), and by
# the pipe_ins of a device that receives tagged values or joins several pipe_ins (their frames
# pushed value by value with lineage, the checkpoints and acknowledgements of all inputs at once):
# a device with one plain pipe_in never loads it.


def tagged(po, value):
    """[tag, value]: tag [input, run, seq, k] names the input value it was computed from
    (the k-th result of value seq of run `run` on input pipe number `input`), None when it
    has no input value (a source of this device, a timer)."""
    cur = getattr(po.rt, "cur", None)    # set while a pipe_in pushes a value (feed below)
    if cur is None:
        return [None, value]
    last = po.lin_last
    if last is not None and last[0] == cur[0] and last[1] == cur[1] and last[2] == cur[2]:
        po.lin_k += 1
    else:
        po.lin_last = cur
        po.lin_k = 0
    return [[cur[0], cur[1], cur[2], po.lin_k], value]


def values_traced(pi, msg, skip, emit):
    """A frame of pipe_in `pi` from a sender that tags its values, or on a device whose pipe_outs
    tag theirs (PipeIn._values): its values one by one, with lineage: tagged values the steps
    had already are dropped, and rt.cur names the input value being pushed."""
    rt = pi.rt
    rx = pi.rx
    n = len(msg)
    seq = rx.expect - n
    root = pi.root
    run = rx.run
    tags = pi.tagged
    track = rt.tracking
    holders = rt.holders
    rt.feeding = True
    rt.settled = False
    i = skip
    try:
        while i < n:
            v = msg[i]
            i += 1
            if tags:
                if type(v) is not list or len(v) != 2:
                    continue
                if _seen(pi, v[0]):
                    rx.dups += 1
                    pi.n_in -= 1
                    continue
                v = v[1]
            if track:
                rt.cur = [root, run, seq + i - 1]
            emit(v)
            if holders and rt.settled:
                rt.settled = False
                if not rt.holding:
                    pi.checkpoint(seq + i)
    finally:
        rt.cur = None
        rt.feeding = False


def _seen(pi, tag):
    """True when the steps already had the value of this lineage tag (see PipeOut._tagged):
    per input, tags only grow, so one that is not beyond the last taken was taken."""
    if type(tag) is not list or len(tag) != 4:
        return False
    lin = pi.rx.lin
    last = lin.get(tag[0])
    if last is not None and last[0] == tag[1]:
        if tag[2] < last[1] or (tag[2] == last[1] and tag[3] <= last[2]):
            return True
    lin[tag[0]] = [tag[1], tag[2], tag[3]]
    return False


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
