# Wiring steps, sources and pipes to each other (connect, and the emit functions that follow from
# it; connect_all, the last stage of building a deployment, runtime/deploy.py), and the methods
# every step has while it is built (Step.BUILD: setup, bad, inlet...). Loaded for that stage and
# forgotten after it on a board running from .mpy files (and, for a Step.BUILD method called while
# the steps are made, per call: steps.rare_call), so it never shares the heap with make.py.
from sensormesh.device.steps import Step, StepError, emitter, one_by_one


def connect_all(built):
    """Each node of a built assignment connected to the outputs of its inputs, in the order of
    its specs (built["order"], built["inputs"]) and their inputs; the edges (upstream id,
    downstream id, port) in built["edges"]."""
    nodes = built["nodes"]
    inputs_of = built["inputs"]
    for i in range(len(inputs_of)):
        sid = built["order"][i]
        inputs = inputs_of[i] or []
        for port in range(len(inputs)):
            up = inputs[port]
            if up not in nodes:
                raise StepError("step '%s': input %r is not a step of this assignment" % (sid, up))
            if getattr(nodes[up], "SINK", False):
                raise StepError("step '%s': input %r is a sink or pipe_out and has no output" % (sid, up))
            connect(nodes[up], nodes[sid], port)     # what node.connect() is (Step.BUILD, Outlet.BUILD)
            built["edges"].append((up, sid, port))


def connect(node, target, port=0):
    """node.connect(target, port) of a Step or an Outlet (a source, a pipe_in): its output goes to
    target, a step (its input `port`) or, for a step, a callable."""
    step = isinstance(node, Step)
    if step and node.SINK:
        raise node.bad("%s is a sink and has no outputs" % node.TYPE)
    # a step's inlet is this module's (Step.BUILD), called here as it is: through the step
    # (steps.Rarely) each lookup would make a callable and go through rare_call
    if getattr(type(target), "inlet", None) is not None:
        fn = target.inlet(port)        # its class's own (a pipe_out's, an alarm's)
    elif isinstance(target, Step):
        fn = base_inlet(target, port)
    elif not step or (callable(target) and port == 0):
        fn = target
    else:
        raise node.bad("cannot connect to %r port %r" % (target, port))
    node.outputs.append(fn)
    wire(node, target, port)


def wire(node, target, port):
    """node.emit and node.emit_many after node.outputs changed: emit calls each output; emit_many
    is the one downstream's batch inlet (its inlet_many(port), a fn(list)) when it has one, else
    the values one by one. An Outlet keeps its emit as wired (the probe swaps emit for a value)."""
    node.emit = emitter(node.outputs)
    if not isinstance(node, Step):
        node.wired = node.emit
    many = None
    if len(node.outputs) == 1 and target is not None:
        if getattr(type(target), "inlet_many", None) is not None:
            many = target.inlet_many(port)     # its class's own (a pipe_out's batch path)
        elif isinstance(target, Step):
            many = inlet_many(target, port)    # Step.BUILD's, this module's
    node.emit_many = many or one_by_one(node)


# -- a Step's methods while it is built (steps/__init__.py: Step.BUILD; each takes the step first)
def setup(step, params, n_inputs):
    pass


def bad(step, text):
    return StepError("step '%s': %s" % (step.id, text))


def base_inlet(step, port):
    """The callable fn(value) for input `port`: bound once, called per value."""
    lo, hi = step.INPUTS
    if type(port) is not int or port < 0 or (hi is not None and port >= hi):
        raise step.bad("%s has no input port %r" % (step.TYPE, port))
    return step.put1 if port == 1 and hi == 2 else step.put


inlet = base_inlet


def inlet_many(step, port):
    """The callable fn(list of values) for input `port` when this step takes runs of values
    at once (put_many), else None: the upstream then calls inlet(port) per value."""
    if port == 0 and hasattr(step, "put_many"):
        return step.put_many
    return None


def set_outputs(step, fns):
    """Replace the outputs with a list of callables fn(value)."""
    if step.SINK and fns:
        raise step.bad("%s is a sink and has no outputs" % step.TYPE)
    step.outputs = list(fns)
    wire(step, None, 0)
