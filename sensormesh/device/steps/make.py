# Making a deployment's steps from their specs (make_steps, a stage of runtime/deploy.py; build:
# one step), with the parameter checks the families' setup() calls (int_param & co; those only
# some families need are more_params.py's, which their setup loads). Loaded while
# an assignment's steps are made: a board running from .mpy files forgets this module once they
# are, before the sources' and pipes' stage loads, so running steps do not pay for it. The classes
# of the step types, and the families that hold them, are kinds.py's: a deployment has found them
# (and loaded the families) before this module loads. What is wrong with a spec it refuses is
# said by spec_errors.py, loaded for the error only.
from sensormesh.device.steps import StepError, nowhere, rare_call

STEPS = "sensormesh.device.steps."    # the package of the families
AGGS = ("mean", "min", "max", "sum", "count", "list")   # aggregates of window and sliding


def no_ctx_call():
    # hold()/release() of a ctx that has none (steps run outside a runtime, in tests); a step's
    # setup (build time) takes it when its ctx has no hold()
    pass


def int_param(step, name, default, least):
    v = step.params.get(name, default)
    if v is None:
        raise step.bad("%s needs parameter '%s'" % (step.TYPE, name))
    if type(v) is float:
        try:
            if v == int(v):
                v = int(v)
        except (OverflowError, ValueError):
            pass
    # the values a window holds ("size", "values") are bounded (spec_errors.MAX_VALUES): an
    # assignment from any controller cannot make a device allocate gigabytes
    if type(v) is not int or v < least or v > 1000000 and name in ("size", "values"):
        raise rare_call(STEPS + "spec_errors", "integer", step, name, least, v)
    return v


def choice_param(step, name, default, choices):
    v = step.params.get(name, default)
    if v not in choices:
        raise step.bad("%s must be one of %s, got %r" % (name, "|".join(choices), v))
    return v


def str_param(step, name, default):
    v = step.params.get(name, default)
    if type(v) is not str or not v:
        raise step.bad("%s must be a non-empty string, got %r" % (name, v))
    return v


def user_setup(step, params, n_inputs):
    """map and filter (user.py): the shipped function or class their `fn` names."""
    ref = str_param(step, "fn", None)
    try:
        fn = step.ctx.resolve(ref)
    except MemoryError:
        raise       # the board's heap, not the fn: the deployment is refused as short of memory
    except Exception as e:
        raise step.bad("fn '%s': %s" % (ref, e))
    step.instance = None
    if isinstance(fn, type):
        # A class is a stateful step: one instance per step, made here, called per value.
        try:
            fn = fn()
        except MemoryError:
            raise
        except Exception as e:
            raise step.bad("fn '%s': making an instance failed: %s: %s"
                           % (ref, type(e).__name__, e))
        step.instance = fn
    if not callable(fn):
        raise step.bad("fn '%s' is not callable" % ref)
    step.fn = fn
    step.what = "fn '%s' raised" % ref


def window_setup(step, params, n_inputs):
    """window (windows.py): its parameters checked, its state set up, its put chosen."""
    step.frame = int_param(step, "time-frame", 0, 0)
    step.n = step.edge = int_param(step, "values", 0, 0)
    if not (step.frame or step.n):
        raise step.bad("window needs time-frame or values > 0")
    step.agg = agg = choice_param(step, "agg", "mean", AGGS)
    step.what = "window %s needs numbers" % agg
    step.k = 0          # values in the open window
    step.closed = 0     # values in windows already closed
    step.timer = None
    step._hold = getattr(step.ctx, "hold", no_ctx_call)
    step._release = getattr(step.ctx, "release", no_ctx_call)
    step._reset()
    # One put per aggregate, chosen here: no per-value dispatch on agg. Its name is made, not
    # written out: a board interns the names of the puts of the aggregates it runs only
    # (windows.py has _put_sum, for sum and mean; window_aggs.py the others').
    step.put = getattr(step, "_put_" + ("sum" if agg == "mean" else agg))


# The setup of the families whose parameter checks are here, not in their class (a running step
# keeps none of this code); any other step type's setup is its class's (Step.setup).
# The setups of throttle, changes and callback are more_params.py's (its SETUPS), loaded for them.
SETUPS = {"window": window_setup, "map": user_setup, "filter": user_setup}


def inputs_of(sid, spec, cls, params):
    """How many inputs step `sid` of this spec has (cls: its class); -1 when its id, its type,
    its parameters or its inputs are wrong."""
    if type(sid) is not str or not sid or cls is None or type(params) is not dict:
        return -1
    for name in params:
        if name not in cls.ARGS:
            return -1
    inputs = spec.get("inputs")
    if inputs is None:      # an alarm without its high limit compares with a second input
        return 2 if cls.TYPE == "alarm" and "high" not in params else cls.INPUTS[0]
    n = len(inputs)
    lo, hi = cls.INPUTS
    return n if lo <= n and (hi is None or n <= hi) else -1


def make_steps(rt, a, built):
    """The assignment's steps (a deployment's stage, runtime/deploy.py): each spec that is not a
    source or a pipe made with the class its check found (runtime/build.py: built["classes"]),
    into built["nodes"]; the specs of its pipes, made next, into built["pipes"]."""
    nodes = built["nodes"]
    classes = built.pop("classes")
    for spec in a["steps"]:
        cls = classes.get(spec["id"])
        if cls is not None:     # (family, type): the family is loaded (runtime/deploy.py)
            fam = getattr(__import__(STEPS + cls[0]).device.steps, cls[0])
            nodes[spec["id"]] = build(spec, rt, built["runs"], fam.CLASSES[cls[1]])
    # the stage that follows takes the pipes' specs only (built["pipes"]; runtime/deploy.py lets
    # go of the assignment): the nodes made keep what they need of theirs
    built["pipes"] = [spec for spec in a["steps"] if nodes[spec["id"]] is None]


def build(spec, ctx, runs=True, cls=None):
    """{"id", "type", "params", "inputs"} -> a step object connected to nothing yet; runs False:
    nothing upstream of it reads runs of values (no free-running source), so it needs no batch
    path (kinds.RUNS); cls: the class of its type, when the caller found it (kinds.step_class).

    Raises StepError naming the step, and the parameter when one is wrong (spec_errors.py, loaded
    for the error only, says what is wrong)."""
    sid = spec.get("id") if type(spec) is dict else None
    params = spec.get("params") if sid else None
    if params is None:
        params = {}
    if type(sid) is str and sid and cls is None:
        from sensormesh.device.steps import kinds
        cls = kinds.step_class(spec.get("type"), params, runs)
    n = inputs_of(sid, spec, cls, params)
    if n < 0:
        raise rare_call(STEPS + "spec_errors", "bad", spec, cls)
    step = cls()
    step.id = sid
    step.ctx = ctx
    step.params = params
    step.outputs = []
    step.emit = nowhere
    step.emit_many = nowhere
    setup = SETUPS.get(cls.TYPE)
    if setup is None and cls.TYPE in ("throttle", "changes", "callback"):   # a tuple: no names kept
        setup = __import__(STEPS + "more_params").device.steps.more_params.SETUPS[cls.TYPE]
    if setup is not None:
        setup(step, params, n)
    else:
        step.setup(params, n)
    step.params = None    # only setup reads them (the checks above): a running step keeps none
    return step
