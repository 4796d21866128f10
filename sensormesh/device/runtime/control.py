# The runtime's control messages: deploy-part, subscribe, pipe, pull (runtime/__init__.py has the
# message list; start is start.py's, stop and undeploy are stop.py's, the status of the running
# assignment is report.py's). A running assignment needs none of this between two messages, so Runtime.rare()
# loads this module per message and a board running from .mpy files forgets its code after each
# one (compat.forget).
from sensormesh.device.compat import collect, unload
from sensormesh.device.codec import FIRST_FRAME_VALUES, MAX_FRAME_VALUES


def on_deploy_part(rt, session, body):
    # An assignment too large for one frame (parts.py): deployed once its last part is in.
    from sensormesh.device.runtime import parts
    a = parts.receive(rt, session, body)
    if getattr(rt, "incoming", None) is None:        # none arriving: a board frees the module's code
        unload("sensormesh.device.runtime.parts")
    if a is not None:
        # only a controller that confirms callback values sends an assignment in parts
        rt.deploy(session, {"assignment": a, "acks": True})
    else:
        collect()


def on_subscribe(rt, session, body):
    from sensormesh.device.runtime import delivery
    delivery.subscribed(rt, session, body)
    session.conn.send({"subscribed": {"pipeline": rt.pipeline, "epoch": rt.epoch}})
    delivery.send(rt)


def _attach(rt, session, body, table, what):
    """A pipe connection from another device: it serves one of our pipe_ins or pipe_outs."""
    edge = body.get("edge") if type(body) is dict else None
    node = table.get(edge) if type(edge) is str else None
    if node is None:
        session.fail(session.conn, "unknown-edge", "no %s for edge %r on device %s (pipeline %s epoch %s)"
                     % (what, edge, rt.device.name, rt.pipeline, rt.epoch))
        return
    # with keys, a pipe named for its peer serves that device's authenticated session only:
    # another key must not feed values into it, take its values or displace its connection
    who = getattr(session, "peer_name", None)
    if who is not None and type(node.peer) is str and who != node.peer:
        session.fail(session.conn, "wrong-peer", "edge %r of device %s is %s's; this session is %s's"
                     % (edge, rt.device.name, node.peer, who))
        return
    ep = body.get("epoch")
    if ep is not None and ep != rt.epoch:
        session.fail(session.conn, "stale-epoch", "edge %r belongs to epoch %r; this device runs epoch %s"
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


def _pull(po, conn, body):
    """A pipe_in dialed us and pulled this edge: its connection becomes ours."""
    po._retire(po.conn)
    if po.conn is not None and not po.conn.closed:
        po.conn.close("replaced by a new pull")
    po.conn = conn
    po.connects += 1
    po.asked = False
    if FIRST_FRAME_VALUES < MAX_FRAME_VALUES:
        po.fv = FIRST_FRAME_VALUES      # until the receiver says what it takes (pipes.py)
        if type(body) is dict and "frame-values" in body:    # it says so in its pull
            po.on_control(conn, {"frame-values": body["frame-values"]})
    tx = po.tx
    tx.restart()
    if tx.acks:
        exp = body.get("expect") if type(body) is dict else None
        if type(exp) is list and len(exp) == 2:
            tx.skip_to(exp[0], exp[1])
        conn.send(po._seq())
    po._send()
    po.rt.resume_sources()
