# The metrics probe of a deployment (runtime/probe.py has its layout and what it does), made when
# the deployment is applied with metrics on (runtime/deploy.py). A module of its own, loaded for
# that and forgotten after it on a board running .mpy files: the deployment's last stages run when
# a board's heap is fullest and most broken up, and this is all they load for the probe (the
# metrics reply's code, ../metrics.py, would need larger free blocks for its own).


def install(rt, nodes, links):
    """The metrics probe of the assignment just built (runtime/probe.py: a list in its order), made
    when the deployment is applied (runtime/deploy.py); links: its edges (upstream id, downstream
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
