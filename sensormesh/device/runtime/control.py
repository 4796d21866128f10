# The runtime's control messages and reports: deploy-part, start, stop, undeploy,
# subscribe, pipe, pull (runtime/__init__.py has the message list), the status of the running
# assignment and the teardown that stops it. A running assignment needs none of this between two
# messages, so Runtime.rare() loads this module per message and a board running from .mpy files
# forgets its code after each one (compat.forget).
from sensormesh.device import codec
from sensormesh.device.compat import collect, unload


def on_deploy_part(rt, session, body):
    # An assignment too large for one frame (parts.py): deployed once its last part is in.
    from sensormesh.device.runtime import parts
    a = parts.receive(rt, session, body)
    if rt.incoming is None:        # none arriving: a board frees the module's code
        unload("sensormesh.device.runtime.parts")
    if a is not None:
        # only a controller that confirms callback values sends an assignment in parts
        rt.deploy(session, {"assignment": a, "acks": True})
    else:
        collect()


def on_start(rt, session, body):
    if rt.state == "empty":
        session.conn.send({"error": {"code": "not-deployed", "message": "nothing is deployed on this device"}})
        return
    if rt.state != "running":
        for kind in ("in", "out"):     # pipe receivers, then pipe senders, then sources
            for i in rt.order:
                n = rt.nodes[i]
                if getattr(n, "PIPE", None) == kind:
                    n.start()
        for n in rt.sources:
            n.start()
        if rt.probe is not None:
            from sensormesh.device.runtime.probe import run
            run(rt.probe, None, None)      # the metrics probe's sample timer: its first turn
        rt.state = "running"
    session.conn.send({"started": {"pipeline": rt.pipeline, "epoch": rt.epoch}})


def on_stop(rt, session, body):
    # {"stop": {"keep": true}}: a new deployment follows (the controller moves the pipeline);
    # the pipes of its edges carry on the numbering and replay buffers of these
    final = teardown(rt, keep=type(body) is dict and body.get("keep") is True)
    send_stats(rt, session.conn, "stopped", final if final is not None else status(rt))


on_undeploy = on_stop


def send_stats(rt, conn, key, st):
    """Send a status or stopped reply. When it does not fit the link (the per-step counts of
    hundreds of steps, over a board's small frames or a keyed link), the per-step counts give
    way to their number ("steps_omitted") and the reply says why."""
    try:
        conn.send({key: st})
        return
    except codec.ProtocolError as e:
        why = str(e)
    a = st.get("assignment") if type(st.get("assignment")) is dict else st
    a["steps_omitted"] = len(a.get("steps") or ())
    a["steps"] = {}
    a["omitted_because"] = why
    conn.send({key: st})


def on_subscribe(rt, session, body):
    from sensormesh.device.runtime import delivery
    delivery.subscribed(rt, session, body)
    session.conn.send({"subscribed": {"pipeline": rt.pipeline, "epoch": rt.epoch}})
    delivery.send(rt)


def _attach(rt, session, body, table, what):
    """A pipe connection from another device: it serves one of our pipe_ins or pipe_outs."""
    edge = body.get("edge") if type(body) is dict else None
    node = table.get(edge)
    if node is None:
        session.fail(session.conn, "unknown-edge", "no %s for edge %r on device %s (pipeline %s epoch %s)"
                     % (what, edge, rt.device.name, rt.pipeline, rt.epoch))
        return
    ep = body.get("epoch")
    if ep is not None and ep != rt.epoch:
        session.fail(session.conn, "stale-epoch", "edge %r belongs to epoch %s; this device runs epoch %s"
                     % (edge, ep, rt.epoch))
        return
    session.kind = "pipe"
    session.handler = node
    try:
        if node.PIPE == "out":
            _pull(node, session.conn, body)
        else:
            node.attach(session.conn, body)
    except ValueError as e:
        session.handler = None
        session.fail(session.conn, "bad-request", "edge %r: %s" % (node.edge, e))


def on_pipe(rt, session, body):
    _attach(rt, session, body, rt.pipe_ins, "pipe_in")


def on_pull(rt, session, body):
    _attach(rt, session, body, rt.pipe_outs, "pipe_out")


def teardown(rt, keep=False):
    """Stop sources, flush every step upstream-first, close everything. Returns the status
    taken after the flushes (so the counts include the last frames), or None if empty.
    keep: a new deployment follows; the pipes' numbering and replay buffers carry over to the
    pipes of the same edges in it."""
    if not keep:
        rt.carry = {}
    if not rt.nodes:
        return None
    # each node's flush, stats and close load the module of its rarely called methods for the
    # call (steps/__init__.py, Rarely): one at a time, so a board never holds them all at once
    for s in rt.sources:
        s.close()
    if rt.probe is not None:
        from sensormesh.device.runtime.probe import run
        run(rt.probe, None, False)         # the metrics probe's sample timer stops
    for i in rt.order:
        try:
            rt.nodes[i].flush()
        except Exception as e:
            rt.log("flush of %s failed: %s" % (i, e))
    if rt.deliveries:
        from sensormesh.device.runtime import delivery
        delivery.send(rt)
    final = status(rt)
    if keep:
        for sid in rt.deliveries:
            rt.carry["cb " + sid] = rt.deliveries[sid].tx
        for e in rt.pipe_outs:
            rt.carry["out " + e] = rt.pipe_outs[e].tx
        for e in rt.pipe_ins:
            rt.carry["in " + e] = rt.pipe_ins[e].rx
    for i in rt.order:
        try:
            n = rt.nodes[i]
            if keep and getattr(n, "PIPE", None) == "out":
                n.close(keep=True)    # its replay buffer (and spool) goes on in the next deployment
            else:
                n.close()
        except Exception as e:
            rt.log("close of %s failed: %s" % (i, e))
    rt.nodes = {}
    rt.order = []
    rt.sources = []
    rt.pipe_outs = {}
    rt.pipe_ins = {}
    rt.state = "empty"
    final["state"] = "stopped"
    return final


def status(rt):
    st = {"pipeline": rt.pipeline, "epoch": rt.epoch, "state": rt.state, "steps": {}}
    for i in rt.order:
        try:
            st["steps"][i] = rt.nodes[i].stats()
        except Exception as e:
            st["steps"][i] = {"error": str(e)}
    lost = rt.lost_deliveries
    for d in rt.deliveries.values():
        lost += d.tx.dropped
    if lost:
        st["lost_deliveries"] = lost
    return st


def _pull(po, conn, body):
    """A pipe_in dialed us and pulled this edge: its connection becomes ours."""
    po._retire(po.conn)
    if po.conn is not None and not po.conn.closed:
        po.conn.close("replaced by a new pull")
    po.conn = conn
    po.connects += 1
    po.asked = False
    tx = po.tx
    tx.restart()
    if tx.acks:
        exp = body.get("expect") if type(body) is dict else None
        if type(exp) is list and len(exp) == 2:
            tx.skip_to(exp[0], exp[1])
        conn.send(po._seq())
    po._send()
    po.rt.resume_sources()


# -- the runtime's rarely used methods (runtime/__init__.py: Runtime.RARE) -------------------
shutdown = teardown


def deliver(rt, sid, value):
    # a callback step's values (deploy hands each callback its Delivery's deliver directly)
    from sensormesh.device.runtime.delivery import deliver
    deliver(rt, sid, value)
