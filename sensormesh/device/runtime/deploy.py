# Applying a deployment ({"deploy": ...}, on_deploy): building an assignment's steps, checking
# it, wiring it and swapping it in for the running one. Only needed while a deployment is
# applied: a board running from precompiled .mpy files loads it for each deployment and forgets
# its code afterwards (Runtime.rare, compat.forget), so the running pipeline does not pay for it.
# The code that only building needs (shipped.py, steps/make.py) is dropped before the running
# assignment is torn down (control.py), so a board never holds all of them at once.
from sensormesh.device.compat import MICROPYTHON, collect, forget, unload
from sensormesh.device.runtime import Source
from sensormesh.device.steps import StepError


class AssignmentError(Exception):
    pass


def on_deploy(rt, session, body):
    # Shipped code is loaded while building; its loader and the deployment's own code are
    # dropped afterwards (a board pays for them only during a deployment), and the garbage
    # of the deployment is collected, as is what came before it (the build needs free blocks).
    # A board without the memory for it refuses the assignment saying so ("out-of-memory"),
    # instead of leaving the controller waiting: the controller tries it again, alone.
    collect()
    short = False
    try:
        from sensormesh.device.runtime.shipped import ShippedError
        apply(rt, session, body, ShippedError)
    except MemoryError:
        short = True
    finally:
        _built()
    if short:
        free = ""
        if MICROPYTHON:
            import gc
            free = " (%d bytes free after collecting)" % gc.mem_free()
        text = "no memory free for its assignment%s; try again, or give it more heap or fewer steps" % free
        rt.log("deploy refused: " + text)
        session.conn.send({"error": {"code": "out-of-memory", "message": text}})


def _built():
    """The assignment is built (or refused): the code only building needs goes."""
    unload("sensormesh.device.runtime.shipped")
    forget("sensormesh.device.steps.make")
    collect()


def source_setup(src, rt, sid, params):
    """Check a source's parameters against the device's sensors and set up its state."""
    from sensormesh.device.steps import nowhere
    src.rt = rt
    src.id = sid
    name = params.get("sensor")
    dev = rt.device
    if name not in dev.sensors:
        # the spec may name a kind; take the first configured sensor of that kind
        for n in dev.sensor_names():
            if dev.sensor_kinds.get(n) == name:
                name = n
                break
    if name not in dev.sensors:
        raise AssignmentError("step '%s': this device has no sensor %r (it has: %s)"
                              % (sid, params.get("sensor"), ", ".join(dev.sensor_names())))
    sensor, rate = dev.sensors[name]
    if params.get("rate") is not None:
        rate = params["rate"]
        if type(rate) not in (int, float) or rate < 0:
            raise AssignmentError("step '%s': rate must be a non-negative number" % sid)
    src.read = sensor.get
    src.read_many = getattr(sensor, "get_many", None)
    src.period = 1000.0 / rate if rate else 0.0
    src.limit = params.get("count") or 0   # stop after this many values (tests, demos)
    src.emit = nowhere
    src.emit_many = nowhere
    src.wired = nowhere    # emit as connected (the probe swaps emit to sample a value)
    src.outputs = []
    src.timer = None
    src.running = False
    src.n_out = 0
    src.errors = 0
    src.missed = 0       # grid slots not read because the loop was stalled (schedule.py)
    src.last_error = None


def peer_param(runtime, sid, params, address):
    """The name of the device a pipe dials ("peer"). A device with keys authenticates the other
    end by that name, so it needs one whenever it dials."""
    peer = params.get("peer")
    if peer is not None and type(peer) is not str:
        raise ValueError("step '%s': peer must be a device name" % sid)
    if address and peer is None and getattr(runtime.device, "security", None) is not None:
        raise ValueError("step '%s': a device with keys needs the pipe's 'peer' (the name of the device at %s) "
                         "to authenticate it" % (sid, address))
    return peer


def pipe_setup(p, runtime, sid, params, key):
    """What both ends of a pipe take from their parameters: the runtime, id, edge and the name
    of the other end (peer); returns the other end's address, params[key], if it dials."""
    p.rt = runtime
    p.id = sid
    p.edge = params.get("edge") or sid
    address = params.get(key)
    p.peer = peer_param(runtime, sid, params, address)
    return address


def _buffer_param(sid, params, default):
    cap = params.get("buffer")
    if cap is None:
        return default
    if type(cap) is not int or cap < 1:
        raise ValueError("step '%s': buffer must be a positive number of values, got %r" % (sid, cap))
    return cap


def pipe_out_setup(po, runtime, sid, params):
    """Check a pipe_out's parameters and set up its state (pipes.PipeOut)."""
    from sensormesh.device.runtime.pipes import DEFAULT_BUFFER, HEAP_CHECK, RETRY_MS
    from sensormesh.device.runtime.replay import Sender, new_run
    from sensormesh.device.schedule import Redial
    po.to = pipe_setup(po, runtime, sid, params, "to")
    tf = params.get("time-frame", 0)
    if type(tf) is not int or tf < 0:
        raise ValueError("step '%s': time-frame must be a non-negative integer" % sid)
    po.tf = tf
    acks = params.get("acks", True)
    if acks is not True and acks is not False:
        raise ValueError("step '%s': acks must be true or false" % sid)
    po.tx = Sender(_buffer_param(sid, params, DEFAULT_BUFFER), new_run(), acks)
    po.bound = po.tx.cap   # the configured bound; the heap may lower tx.cap for a while (pipes.py)
    spool = params.get("spool", 0)
    if type(spool) is not int or spool < 0:
        raise ValueError("step '%s': spool must be a number of bytes (0: off), got %r" % (sid, spool))
    po.spool_limit = spool if acks else 0
    po.spool_timer = None
    po.carried = False   # True: the numbering and buffer came from the previous deployment
    po.fed_by = None     # the pipe_in that alone feeds this pipe (runtime: may adopt its marks)
    po.relay = False     # True: its input is that pipe_in itself (values leave as they came)
    po.lineage = False   # fed by several inputs: each value leaves as [tag, value] (runtime)
    po.lin_last = None   # the input value the last tagged value came from, and its count
    po.lin_k = 0
    po.conn = None
    po.dialing = None    # the connection being set up (its handshake already queued)
    po.timer = None
    po.retry_timer = None
    po.redial = Redial(RETRY_MS)
    po.running = False
    po.n_in = 0
    po.first = 0     # values the edge's sender had sent before this deployment
    po.resent = 0
    po.connects = 0
    po.logged_drops = 0
    po.last_error = None
    po.stamps = []       # [seq, device, tick_us] of sampled values not sent yet (probe.py)
    po.asked = False     # {"ack-soon"} sent since the last acknowledgement (buffer half full)
    po.frames = 0    # arrays sent
    po.bytes_prev = 0    # bytes sent on earlier connections
    po.rtt_us = None
    po.roomy = HEAP_CHECK    # buffer length at which the heap is checked next (pipes.heap_check)


def take_over(po, tx):
    """The previous deployment's sender of po's edge: po keeps its numbering and replay buffer."""
    tx.cap = po.tx.cap
    tx.acks = po.tx.acks
    po.tx = tx
    po.carried = True
    po.first = tx.once
    if tx.held() > tx.cap:
        tx.evict(tx.held() - tx.cap)


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
    from sensormesh.device.steps.make import build as build_step    # forgotten after building
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
            node = build_step(spec, rt)
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
                        from sensormesh.device.runtime.joined import tagged
                        n.lineage = tagged    # each value leaves as [tag, value]


def apply(rt, session, body, ShippedError):
    """Build the assignment in body and, when it is complete, run it instead of the current one
    (stopped, its pipes' numbering carried over); a bad one is refused and the current one runs on."""
    a = body.get("assignment") if type(body) is dict and "assignment" in body else body
    old_code = rt.code
    try:
        code, nodes, order, edges = build(rt, a)
    except (AssignmentError, StepError, ShippedError, ValueError, TypeError) as e:
        rt.code = old_code
        rt.log("deploy refused: %s" % e)
        session.conn.send({"error": {"code": "bad-assignment", "message": str(e)}})
        return
    _built()
    rt.rare("control", "teardown", True)     # keep: the pipes carry over
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
                take_over(n, old)
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
        from sensormesh.device import metrics
        rt.probe = metrics.install(rt, nodes, edges)
        forget("sensormesh.device.metrics")
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
            d = Delivery(rt, i)
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
        o.fed_by = rt.fed_by.get(sid)
