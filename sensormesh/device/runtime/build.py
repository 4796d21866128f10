# Checking an assignment, a stage of building it (runtime/deploy.py has the stages; its shipped
# code has run before): its shape and step ids; the code its nodes keep loaded while they run,
# found (the modules of its pipes and of the deliveries of its callbacks, its steps' families:
# kinds.py finds each step's), for deploy.py to import once this module is forgotten; its sources,
# made. Loaded for this stage and forgotten after it on a board running from precompiled .mpy
# files (and kinds.py with it), so neither the code its nodes keep loaded nor the stages that
# follow (the steps, the pipes, the wiring) share the heap with its code.
from sensormesh.device.compat import forget
from sensormesh.device.runtime import Source
from sensormesh.device.steps import rare_call

# The types of the nodes that are not steps: sources (made here) and pipes (build_pipes.py).
OUTLETS = ("source", "pipe_out", "pipe_in")

# The modules of this package a node keeps loaded while it runs, by its type (besides its class's:
# a step's family, a source's): a pipe's, and the deliveries of a callback's or a csv file's values
# to the controller (install.py, probe_plan.finish).
_KEPT_CODE = {"pipe_out": ("pipes", "replay"), "pipe_in": ("receiver", "pipe_in"),
              "callback": ("delivery",), "csv": ("delivery",)}


def check(rt, a):
    """Check assignment a (raises ValueError naming the problem) and start building it: its
    sources made. Returns what the next stages fill in ("nodes", "edges"; "code":
    runtime/deploy.py) and use ("load": its steps' families, which deploy.py imports before its
    steps are made, "kept": the modules its pipes and deliveries keep loaded, which it imports
    before its pipes are made, "order": the ids, "inputs": their inputs in the same order, "classes":
    id -> (family, type) of each step, "runs": whether a source reads runs of values)."""
    if type(a) is not dict:
        raise ValueError("assignment must be an object")
    specs = a.get("steps")
    if type(specs) is not list:
        raise ValueError("assignment needs a list of steps")
    # what the status and stop replies carry back (deploy.build keeps them)
    v = a.get("pipeline")
    if v is not None and type(v) is not str:
        raise ValueError("assignment's pipeline must be a string, not %s" % type(v).__name__)
    v = a.get("epoch", 0)
    if type(v) is not int:
        raise ValueError("assignment's epoch must be an integer, not %s" % type(v).__name__)
    runs = free_running(rt, specs)
    nodes = {}
    order = []
    inputs = []
    classes = {}
    from sensormesh.device.steps import kinds
    try:
        for spec in specs:
            if type(spec) is not dict or type(spec.get("id")) is not str:
                raise ValueError("every step needs a string id: %r" % (spec,))
            sid = spec["id"]
            if sid in nodes:
                raise ValueError("step id %r is used twice" % sid)
            ins = spec.get("inputs")
            params = spec.get("params")
            if (ins is not None and (type(ins) is not list or [i for i in ins if type(i) is not str])
                    or (params is not None and type(params) is not dict)):
                raise rare_call("sensormesh.device.steps.spec_errors", "shape", sid, ins, params)
            order.append(sid)
            inputs.append(ins)
            nodes[sid] = None
            kind = spec.get("type")
            if kind == "source":
                nodes[sid] = source(rt, sid, spec.get("params") or {})
            elif kind not in OUTLETS:
                fam = kinds.family_of(kind, spec.get("params"), runs)
                if fam is None:
                    raise kinds.unknown(sid, kind)
                classes[sid] = (fam, kind)
    finally:
        forget("sensormesh.device.steps.kinds")
    load = []
    for sid in classes:
        name = "sensormesh.device.steps." + classes[sid][0]
        if name not in load:
            load.append(name)
    return {"nodes": nodes, "order": order, "inputs": inputs, "edges": [], "classes": classes, "runs": runs,
            "load": load, "kept": kept_code(specs)}


def free_running(rt, specs):
    """True when a source of the assignment reads as fast as the pipeline takes values (rate 0):
    it reads runs of values, so the steps and pipes are made with their batch path (put_many);
    without one they are made without it (its code is not loaded)."""
    for spec in specs:
        if type(spec) is dict and spec.get("type") == "source":
            try:
                if not source_sensor(rt, spec.get("id"), spec.get("params") or {})[1]:
                    return True
            except (ValueError, AttributeError):
                pass        # said when the source is made, in its turn
    return False


def kept_code(specs):
    """The modules of the code the assignment's pipes and deliveries keep loaded while it runs
    (their full names), in the order of its specs: imported once its steps are made and make.py
    is forgotten (the largest of them, pipes.py and replay.py, would otherwise share the heap
    with make.py)."""
    load = []
    for spec in specs:
        t = spec.get("type") if type(spec) is dict else None
        if type(t) is str:
            for name in _KEPT_CODE.get(t, ()):
                name = "sensormesh.device.runtime." + name
                if name not in load:
                    load.append(name)
    return load


# The maker of a source (pipes: build_pipes.py): the class has no __init__ of its own (the code
# that sets a node up is needed once, at a deployment, not kept loaded with the class while it
# runs).
def source(rt, sid, params, runs=False):
    sensor, rate = source_sensor(rt, sid, params)
    if rate:
        src = Source()
    else:   # reads as fast as the pipeline takes values: its code is loaded for it
        from sensormesh.device.runtime import free_running as free
        src = free.FreeSource()
    from sensormesh.device.steps import nowhere
    src.rt = rt
    src.id = sid
    src.read = sensor.get
    if not rate:    # a FreeSource's reads of a run of values (a rated source keeps a smaller dict)
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
    return src


def source_sensor(rt, sid, params):
    """(sensor, rate in Hz) of a source: its parameters checked against the device's sensors."""
    name = params.get("sensor")
    dev = rt.device
    if name not in dev.sensors:
        # the spec may name a kind; take the first configured sensor of that kind
        for n in sorted(dev.sensors):
            if dev.sensor_kinds.get(n) == name:
                name = n
                break
    if name not in dev.sensors:
        raise ValueError("step '%s': this device has no sensor %r (it has: %s)"
                         % (sid, params.get("sensor"), ", ".join(sorted(dev.sensors))))
    sensor, rate = dev.sensors[name]
    if params.get("rate") is not None:
        rate = params["rate"]
        if type(rate) not in (int, float) or rate < 0:
            raise ValueError("step '%s': rate must be a non-negative number" % sid)
    return sensor, rate
