# The metrics probe of a deployment (probe.py), made when the deployment is applied: only
# needed then, so a board running from .mpy files forgets this code afterwards (deploy.py).
def install(rt, nodes, edges):
    """The probe of the assignment just built (probe.py: a list in its order); edges: its
    (upstream id, downstream id, port), in the order they were connected, which is the order of
    each node's outputs."""
    downs = {}
    for up, down, port in edges:
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
            plan += [node, node.emit, n]
            plan += lst
            n += len(lst)
    # rt, plan, counts, latency, dropped, active, origin, child, held, timer, samples taken
    return [rt, tuple(plan), [0] * n, [], 0, False, None, 0, {}, None, 0]
