# The last stage of a deployment (runtime/deploy.py): the metrics probe of the assignment just
# installed, when metrics are on (runtime/probe.py has its layout and what it does), and the
# reply. A module of its own, loaded for that and forgotten after it on a board running .mpy
# files: the deployment's last stages run when a board's heap is fullest and most broken up, and
# this is all they load for the probe (the metrics reply's code, ../metrics.py, would need larger
# free blocks for its own).


def finish(rt, session, body, built):
    """The assignment installed, its metrics probe made (with metrics on) and running: the
    session that deployed it is subscribed to its callback values, and told."""
    rt.probe = install(rt, built["nodes"], built["edges"]) if rt.metrics else None
    rt.state = "deployed"
    if rt.deliveries or rt.files:
        from sensormesh.device.runtime import delivery
        delivery.subscribed(rt, session, body)
    else:      # no outlet to deliver from: the session is noted (delivery.py is not loaded)
        if session not in rt.subscribers:
            rt.subscribers.append(session)
        if type(body) is dict and body.get("acks") is True:
            session.confirms = True
            rt.confirmed = True
    n = len(rt.order)
    rt.log("deployed %s epoch %s: %d steps" % (rt.pipeline, rt.epoch, n))
    session.conn.send({"deployed": {"pipeline": rt.pipeline, "epoch": rt.epoch, "steps": n}})


def install(rt, nodes, links):
    """The metrics probe of the assignment just built (runtime/probe.py: a list in its order);
    links: its edges (upstream id, downstream
    id, port), in the order they were connected, which is the order of each node's outputs."""
    downs = {}
    for up, down, port in links:
        lst = downs.get(up)
        if lst is None:
            lst = downs[up] = []
        node = nodes[down]
        if getattr(node, "PIPE", None) == "out":
            kind = 2
        elif getattr(node, "SINK", False):
            kind = 1
        elif getattr(node, "TYPE", None) in ("window", "sliding", "zip", "combine_latest", "throttle"):
            # its output may come later than (or combine) the values it takes in (other steps
            # that pass nothing on, a filter saying no, drop the value and its origin with it)
            kind = 3
        else:
            kind = 0
        lst.append(node)
        lst.append(kind)
    plan = []
    n = 0
    for sid in rt.order:
        lst = downs.get(sid)
        if lst:
            node = nodes[sid]
            plan += [node, node.emit]
            plan += lst
            n += len(lst)     # two per output: the downstream node and its kind; two counters
    # rt, plan, samples taken, latency, dropped, active, origin, child, armed nodes, timer, counters
    return [rt, tuple(plan), 0, [], 0, False, None, 0, {}, None] + [0] * n
