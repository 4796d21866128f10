# Putting a built assignment in place of the running one (the last stage of a deployment,
# deploy.py, once the running one is stopped): its pipes (carrying over the numbering and replay
# buffers of the edges it keeps), the paths of their checkpoints (which pipe_in's values reach
# which outputs: build_pipes.pipe_paths found them), its outlets (deploy.py then makes
# its metrics probe and sends the "deployed" reply). Loaded for this stage only and forgotten after
# it on a board running from precompiled .mpy files.
from sensormesh.device.runtime import Source


def install(rt, built):
    """Put the assignment built (deploy.build) in place of the stopped one (its pipes'
    numbering carried over)."""
    nodes = built["nodes"]
    order = built["order"]
    fed_by = built["fed_by"]
    reaches = built["reaches"]
    rt.code = built["code"]
    rt.nodes = nodes
    rt.order = order
    rt.holding = 0
    rt.holders = 0
    rt.pipeline = built["pipeline"]
    rt.epoch = built["epoch"]
    rt.sources = [nodes[i] for i in order if isinstance(nodes[i], Source)]
    rt.pipe_outs = {}
    rt.pipe_ins = {}
    carry = rt.carry
    rt.carry = {}
    outlets(rt, nodes, order, carry, fed_by)
    for i in order:
        n = nodes[i]
        pipe = getattr(n, "PIPE", None)     # "in", "out": a pipe_in's, a pipe_out's
        if pipe == "out":
            rt.pipe_outs[n.edge] = n
            old = carry.pop("out " + n.edge, None)
            if old is not None:
                take_over(n, old)
        elif pipe == "in":
            rt.pipe_ins[n.edge] = n
            old = carry.pop("in " + n.edge, None)
            if old is not None:
                n.take_over(old)
        elif getattr(n, "HOLDS", False):
            rt.holders += 1
    tracking = False
    for p in rt.pipe_outs.values():
        if p.lineage:
            tracking = True
    ins = sorted(rt.pipe_ins)
    _flag(rt, "tracking", tracking)
    _flag(rt, "joint", rt.holders > 0 and len(ins) > 1)
    _flag(rt, "parking", False)
    rt.cut_marks = {}
    for e in ins:
        rt.pipe_ins[e].root = ins.index(e)
    for i in order:
        n = nodes[i]
        if getattr(n, "PIPE", None) == "in":
            feeds = []
            for j in reaches.get(i, ()):
                m = nodes[j]
                if getattr(m, "PIPE", None) == "out":
                    feeds.append(m)
                elif "@" + j in rt.outlets:
                    feeds.append(rt.outlets["@" + j])
            n.feeds = feeds
    if rt.joint:
        # joined inputs wait for the same outputs, so their checkpoints settle together
        every = []
        for p in rt.pipe_ins.values():
            for f in p.feeds:
                if f not in every:
                    every.append(f)
        for p in rt.pipe_ins.values():
            p.feeds = every
    for k in carry:
        if k.startswith("out ") and carry[k].held():
            rt.log("pipe %s is not in the new deployment: %d unacknowledged values dropped"
                   % (k[4:], carry[k].held()))
        if k.startswith("out ") and carry[k].spool is not None:
            carry[k].spool.clear()


def _flag(rt, name, on):
    """Set the runtime's flag `name`; off, it is the class's default (False) again: a runtime
    whose assignment needs none of these keeps them out of its dict (a board's stays smaller)."""
    if on:
        setattr(rt, name, True)
    else:
        try:
            delattr(rt, name)    # set by an earlier assignment
        except AttributeError:
            pass


def outlets(rt, nodes, order, carry, fed_by):
    """The sinks whose position goes into checkpoint marks: a Delivery per callback step
    (its numbering carried over from the previous deployment), and csv steps."""
    rt.deliveries = {}
    rt.outlets = {}
    rt.files = []
    for i in order:
        n = nodes[i]
        t = getattr(n, "TYPE", None)
        if t == "callback":
            from sensormesh.device.runtime import delivery
            d = delivery.Delivery(rt, i)
            n.deliver = d.deliver     # the step hands its values straight to its Delivery
            old = carry.pop("cb " + i, None)
            if old is not None:
                d.take_over(old)
            d.confirmed = rt.confirmed
            rt.deliveries[i] = d
            rt.outlets[d.edge] = d
        elif t == "csv":
            rt.files.append(n)
            rt.outlets[n.edge] = n
    for o in rt.outlets.values():
        sid = o.sid
        o.fed_by = fed_by.get(sid)


def take_over(po, tx):
    """The previous deployment's sender of po's edge: po keeps its numbering and replay buffer."""
    tx.cap = po.tx.cap
    tx.acks = po.tx.acks
    po.tx = tx
    po.first = tx.once
    if tx.held() > tx.cap:
        tx.evict(tx.held() - tx.cap)
    # its counts start here: the values it took over unsent (they leave as this deployment's
    # `out`) and those the sender dropped before (its `dropped` goes on counting) are its first
    # `in`, so that in = out + pending + dropped holds for it too
    po.n_in = tx.next_seq() - (tx.high if tx.high > tx.base else tx.base) + tx.dropped
