# Building an assignment's nodes (the first stage of a deployment, deploy.py): checking it, running
# its shipped code (shipped.py), making its steps (steps/make.py), then its sources and pipes with
# their parameters, and wiring them (steps/wiring.py). Loaded for this stage only: a board running
# from precompiled .mpy files forgets its code and theirs (shipped.py and make.py as soon as they
# are done) before the next stage loads, so the running pipeline's modules, which stay loaded,
# never share the heap with all of the deployment's code.
from sensormesh.device.compat import forget
from sensormesh.device.runtime import Source
from sensormesh.device.steps import StepError


class AssignmentError(Exception):
    pass


def build(rt, a):
    """Check assignment a and build its nodes: (shipped code, nodes, order, edges). A bad one
    raises ValueError naming the step and the problem."""
    try:
        return _build(rt, a)
    except (AssignmentError, StepError) as e:
        raise ValueError(str(e))


def _build(rt, a):
    if type(a) is not dict:
        raise AssignmentError("assignment must be an object")
    specs = a.get("steps")
    if type(specs) is not list:
        raise AssignmentError("assignment needs a list of steps")
    pipes_first(specs)
    runs = free_running(rt, specs)
    rt.code = code = shipped_code(a.get("code") or {})   # resolve() of the steps looks here
    nodes = {}
    order = []
    edges = []
    __import__("sensormesh.device.steps.wiring")    # Step.BUILD: kept loaded while the build runs
    # the steps first, with make.py, which goes before the sources and pipes are made (their
    # modules, which stay loaded, then do not share the heap with it)
    from sensormesh.device.steps.make import build as build_step
    for spec in specs:
        if type(spec) is not dict or type(spec.get("id")) is not str:
            raise AssignmentError("every step needs a string id: %r" % (spec,))
        sid = spec["id"]
        if sid in nodes:
            raise AssignmentError("step id %r is used twice" % sid)
        order.append(sid)
        nodes[sid] = None if outlet(spec) else build_step(spec, rt, runs)
    build_step = None       # nothing holds make.py's code now
    forget("sensormesh.device.steps.make")
    for spec in specs:
        make = outlet(spec)
        if make is not None:
            nodes[spec["id"]] = make(rt, spec["id"], spec.get("params") or {}, runs)
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
    return code, nodes, order, edges


# The makers of the nodes that are not steps: each class has no __init__ of its own (the code
# that sets a node up is needed once, here, not kept loaded with the class while it runs).
def free_running(rt, specs):
    """True when a source of the assignment reads as fast as the pipeline takes values (rate 0):
    it reads runs of values, so the steps and pipes are made with their batch path (put_many);
    without one they are made without it (its code is not loaded)."""
    for spec in specs:
        if type(spec) is dict and spec.get("type") == "source":
            try:
                if not source_sensor(rt, spec.get("id"), spec.get("params") or {})[1]:
                    return True
            except AssignmentError:
                pass        # said when the source is made, in its turn
    return False


def source(rt, sid, params, runs=False):
    sensor, rate = source_sensor(rt, sid, params)
    if rate:
        src = Source()
    else:   # reads as fast as the pipeline takes values: its code is loaded for it
        from sensormesh.device.runtime.free_running import FreeSource
        src = FreeSource()
    source_setup(src, rt, sid, sensor, rate, params)
    return src


# The modules a pipe keeps loaded while it runs, by its type.
_PIPE_CODE = {"pipe_out": ("pipes", "replay"), "pipe_in": ("pipes", "receiver", "pipe_in")}


def pipes_first(specs):
    """Import the code the assignment's pipes keep loaded while it runs before anything else of
    the build, while the heap has its largest free blocks: their classes need a few hundred bytes
    in a row, which a board's heap, broken up by the build, may no longer have later on."""
    for spec in specs:
        t = spec.get("type") if type(spec) is dict else None
        if type(t) is str:
            for name in _PIPE_CODE.get(t, ()):
                __import__("sensormesh.device.runtime." + name)


def pipe_out(rt, sid, params, runs=True):
    """A pipe_out; runs: it may get runs of values at once (pipe_runs.py, free_running)."""
    if runs:
        from sensormesh.device.runtime.pipe_runs import PipeOutRuns as PipeOut
    else:
        from sensormesh.device.runtime.pipes import PipeOut
    po = PipeOut()
    pipe_out_setup(po, rt, sid, params)
    return po


def pipe_in(rt, sid, params, runs=False):
    from sensormesh.device.runtime.pipe_in import PipeIn
    p = PipeIn()
    pipe_in_setup(p, rt, sid, params)
    return p


def outlet(spec):
    """fn(rt, id, params, runs) making the node of spec when it is not a step (a source or a pipe; its
    module loaded then), else None."""
    t = spec.get("type")
    if t == "source":
        return source
    if t == "pipe_out":
        return pipe_out
    if t == "pipe_in":
        return pipe_in
    return None


def shipped_code(sources):
    """The assignment's shipped code run (shipped.py), first: its module is then forgotten on
    .mpy, so the steps and pipes built next do not share the heap with it (Runtime.resolve loads
    it for each step that names a shipped function)."""
    from sensormesh.device.runtime import shipped
    try:
        return shipped.load_code(sources)
    except shipped.ShippedError as e:
        raise AssignmentError(str(e))
    finally:
        forget("sensormesh.device.runtime.shipped")


def source_sensor(rt, sid, params):
    """(sensor, rate in Hz) of a source: its parameters checked against the device's sensors."""
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
    return sensor, rate


def source_setup(src, rt, sid, sensor, rate, params):
    """Set up a source's state."""
    from sensormesh.device.steps import nowhere
    src.rt = rt
    src.id = sid
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


def pipe_in_setup(p, runtime, sid, params):
    """Check a pipe_in's parameters and set up its state (pipe_in.PipeIn)."""
    from sensormesh.device.runtime.pipes import ACK_EVERY, RETRY_MS
    from sensormesh.device.runtime.receiver import Receiver
    from sensormesh.device.schedule import Redial
    from sensormesh.device.steps import nowhere
    p.frm = pipe_setup(p, runtime, sid, params, "from")
    p.emit = nowhere
    p.outputs = []
    p.rx = Receiver()
    p.feeds = []        # the pipe_outs of this device this pipe's values reach (runtime)
    p.root = 0          # this pipe's number among the device's pipe_ins (lineage tags)
    p.tagged = False    # the sender tags each value with its lineage: [tag, value]
    p.announced = False # the sender said where its numbering stands since this process started
    p.parked = []       # arrays held until every input of a joined device has announced
    p.skip_below = 0    # replayed values before this seq were taken before a restart
    p.conn = None
    p.running = False
    p.retry_timer = None
    p.ack_timer = None
    p.redial = Redial(RETRY_MS)
    p.every = ACK_EVERY     # acknowledge after this many values (less for a small sender buffer)
    p.soon = None         # the sender asked for acknowledgements up to this seq at once
    p.first_mark = None   # the mark of the announcement our first values follow (adopted with them)
    p.n_in = 0
    p.frames = 0
    p.last_error = None
    p.ts_next = None    # origin stamps of the next array (probe.py)
    p.connects = 0
    p.bytes_prev = 0


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
