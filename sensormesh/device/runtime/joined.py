# Values of several inputs joined on one device (docs/reliability.md, "Several inputs"): a pipe_out
# fed by more than one pipe_in tags each value it sends with the input value it was computed from,
# so a receiver restarted after a replay drops exactly what its steps already had. Loaded only by
# a deployment with such a pipe_out (install.pipe_paths sets PipeOut.lineage to `tagged`).


def tagged(po, value):
    """[tag, value]: tag [input, run, seq, k] names the input value it was computed from
    (the k-th result of value seq of run `run` on input pipe number `input`), None when it
    has no input value (a source of this device, a timer)."""
    cur = po.rt.cur
    if cur is None:
        return [None, value]
    last = po.lin_last
    if last is not None and last[0] == cur[0] and last[1] == cur[1] and last[2] == cur[2]:
        po.lin_k += 1
    else:
        po.lin_last = cur
        po.lin_k = 0
    return [[cur[0], cur[1], cur[2], po.lin_k], value]
