# Applying a deployment: building an assignment's steps, checking it, wiring it and swapping it
# in for the running one (runtime/__init__.py, on_deploy). Only needed while a deployment is
# applied: a board running from precompiled .mpy files loads it for each deployment and forgets
# its code afterwards (compat.forget), so the running pipeline does not pay for it.
from sensormesh.device import steps
from sensormesh.device.compat import forget
from sensormesh.device.runtime import MAX_UNDELIVERED, AssignmentError, Source


def _kind(node):
    """"in" for a pipe_in, "out" for a pipe_out, else None (their modules load only when an
    assignment has such a pipe)."""
    return getattr(node, "PIPE", None)


def build(rt, a):
    """Build every node of assignment a; raises AssignmentError / StepError naming the step."""
    if type(a) is not dict:
        raise AssignmentError("assignment must be an object")
    specs = a.get("steps")
    if type(specs) is not list:
        raise AssignmentError("assignment needs a list of steps")
    from sensormesh.device.runtime import shipped
    code = shipped.load_code(a.get("code") or {})
    rt.code = code  # resolve() of the steps being built looks here
    nodes = {}
    order = []
    edges = []
    for spec in specs:
        if type(spec) is not dict or type(spec.get("id")) is not str:
            raise AssignmentError("every step needs a string id: %r" % (spec,))
        sid = spec["id"]
        if sid in nodes:
            raise AssignmentError("step id %r is used twice" % sid)
        t = spec.get("type")
        params = spec.get("params") or {}
        if t == "source":
            node = Source(rt, sid, params)
        elif t == "pipe_out":
            from sensormesh.device.runtime.pipes import PipeOut
            node = PipeOut(rt, sid, params)
        elif t == "pipe_in":
            from sensormesh.device.runtime.pipe_in import PipeIn
            node = PipeIn(rt, sid, params)
        else:
            node = steps.build(spec, rt)
        nodes[sid] = node
        order.append(sid)
    for spec in specs:
        inputs = spec.get("inputs") or []
        for port in range(len(inputs)):
            up = inputs[port]
            if up not in nodes:
                raise AssignmentError("step '%s': input %r is not a step of this assignment" % (spec["id"], up))
            src = nodes[up]
            if getattr(src, "SINK", False):
                raise AssignmentError("step '%s': input %r is a sink or pipe_out and has no output"
                                      % (spec["id"], up))
            src.connect(nodes[spec["id"]], port)
            edges.append((up, spec["id"], port))
    pipe_paths(rt, specs, nodes)
    return code, nodes, order, edges


def pipe_paths(rt, specs, nodes):
    """Tell each pipe_in which pipe_outs its values reach (its checkpoints wait for their
    acknowledgements), and each pipe_out fed by one pipe_in alone which one that is."""
    inputs = {}
    consumers = {}
    for spec in specs:
        ins = spec.get("inputs") or []
        inputs[spec["id"]] = ins
        for up in ins:
            consumers.setdefault(up, []).append(spec["id"])

    def reach(start, links):
        seen = {}
        todo = [start]
        while todo:
            i = todo.pop()
            for j in links.get(i, ()):
                if j not in seen:
                    seen[j] = True
                    todo.append(j)
        return seen
    rt.fed_by = {}
    rt.reaches = {}
    for sid in nodes:
        n = nodes[sid]
        if _kind(n) == "in":
            rt.reaches[sid] = [j for j in reach(sid, consumers)]
        elif _kind(n) == "out" or getattr(n, "SINK", False):
            up = reach(sid, inputs)
            roots = [j for j in up if not inputs.get(j)]
            if len(roots) == 1 and _kind(nodes[roots[0]]) == "in":
                rt.fed_by[sid] = nodes[roots[0]]
                if _kind(n) == "out":
                    n.fed_by = nodes[roots[0]]
                    n.relay = inputs.get(sid) == [roots[0]]
            elif _kind(n) == "out" and len(roots) > 1:
                for j in roots:
                    if _kind(nodes[j]) == "in":
                        n.lineage = True


def apply(rt, session, body, ShippedError):
    """Build the assignment in body and, when it is complete, run it instead of the current one
    (stopped, its pipes' numbering carried over); a bad one is refused and the current one runs on."""
    a = body.get("assignment") if type(body) is dict and "assignment" in body else body
    old_code = rt.code
    try:
        code, nodes, order, edges = build(rt, a)
    except (AssignmentError, steps.StepError, ShippedError, ValueError, TypeError) as e:
        rt.code = old_code
        rt.log("deploy refused: %s" % e)
        session.conn.send({"error": {"code": "bad-assignment", "message": str(e)}})
        return
    rt.teardown(keep=True)
    rt.code = code
    rt.nodes = nodes
    rt.order = order
    rt.holding = 0
    rt.holders = 0
    rt.pipeline = a.get("pipeline")
    rt.epoch = a.get("epoch", 0)
    rt.sources = [nodes[i] for i in order if isinstance(nodes[i], Source)]
    rt.pipe_outs = {}
    rt.pipe_ins = {}
    carry = rt.carry
    rt.carry = {}
    outlets(rt, nodes, order, carry)
    for i in order:
        n = nodes[i]
        if _kind(n) == "out":
            rt.pipe_outs[n.edge] = n
            old = carry.pop("out " + n.edge, None)
            if old is not None:
                n.take_over(old)
        elif _kind(n) == "in":
            rt.pipe_ins[n.edge] = n
            old = carry.pop("in " + n.edge, None)
            if old is not None:
                n.take_over(old)
        elif getattr(n, "HOLDS", False):
            rt.holders += 1
    rt.tracking = False
    for p in rt.pipe_outs.values():
        if p.lineage:
            rt.tracking = True
    ins = sorted(rt.pipe_ins)
    rt.joint = rt.holders > 0 and len(ins) > 1
    rt.parking = False
    rt.cut_marks = {}
    for e in ins:
        rt.pipe_ins[e].root = ins.index(e)
    for i in order:
        n = nodes[i]
        if _kind(n) == "in":
            feeds = []
            for j in rt.reaches.get(i, ()):
                m = nodes[j]
                if _kind(m) == "out":
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
    rt.probe = None
    if rt.metrics:
        from sensormesh.device.runtime import probe_wiring
        rt.probe = probe_wiring.install(rt, nodes, edges)
        forget("sensormesh.device.runtime.probe_wiring")
    rt.state = "deployed"
    rt._subscribed(session, body)
    rt.log("deployed %s epoch %s: %d steps" % (rt.pipeline, rt.epoch, len(order)))
    session.conn.send({"deployed": {"pipeline": rt.pipeline, "epoch": rt.epoch, "steps": len(order)}})


def outlets(rt, nodes, order, carry):
    """The sinks whose position goes into checkpoint marks: a Delivery per callback step
    (its numbering carried over from the previous deployment), and csv steps."""
    rt.deliveries = {}
    rt.outlets = {}
    rt.files = []
    for i in order:
        n = nodes[i]
        t = getattr(n, "TYPE", None)
        if t == "callback":
            from sensormesh.device.runtime.delivery import Delivery
            from sensormesh.device.runtime.replay import new_run
            d = Delivery(i, MAX_UNDELIVERED, new_run())
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
        o.fed_by = rt.fed_by.get(sid)
