# Building an assignment's nodes (the first stage of a deployment, deploy.py): checking it, running
# its shipped code (shipped.py), making its steps (steps/make.py), then its sources and pipes with
# their parameters (the pipes' makers are build_pipes.py's, loaded once make.py is forgotten), and
# wiring them (steps/wiring.py). Loaded for this stage only: a board running
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
        nodes[sid] = None if spec.get("type") in OUTLETS else build_step(spec, rt, runs)
    build_step = None       # nothing holds make.py's code now
    forget("sensormesh.device.steps.make")
    # then the sources and pipes (the pipes' makers, build_pipes.py, load only now: not beside
    # make.py)
    for spec in specs:
        make = outlet(spec)
        if make is not None:
            nodes[spec["id"]] = make(rt, spec["id"], spec.get("params") or {}, runs)
    make = None
    forget("sensormesh.device.runtime.build_pipes")
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


# The makers of the nodes that are not steps (sources here, pipes in build_pipes.py): each class
# has no __init__ of its own (the code that sets a node up is needed once, at a deployment, not
# kept loaded with the class while it runs).
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


# The types of the nodes that are not steps: sources (made here) and pipes (build_pipes.py).
OUTLETS = ("source", "pipe_out", "pipe_in")


def outlet(spec):
    """fn(rt, id, params, runs) making the node of spec when it is not a step (a source or a
    pipe: build_pipes.py loaded for it), else None."""
    t = spec.get("type")
    if t == "source":
        return source
    if t == "pipe_out" or t == "pipe_in":
        from sensormesh.device.runtime import build_pipes
        return getattr(build_pipes, t)
    return None


def shipped_code(sources):
    """The assignment's shipped code run (shipped.py), first: its module is then forgotten on
    .mpy, so the steps and pipes built next do not share the heap with it (Runtime.resolve loads
    the smaller shipped_names.py for each step that names a shipped function)."""
    from sensormesh.device.runtime import shipped
    try:
        return shipped.load_code(sources)
    except shipped.ShippedError as e:
        raise AssignmentError(str(e))
    finally:
        forget("sensormesh.device.runtime.shipped")
        forget("sensormesh.device.runtime.shipped_names")   # Runtime.resolve loads it per step


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
