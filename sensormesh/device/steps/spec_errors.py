# The error of a step spec that make.build refuses: what is wrong with it, said in full (its id,
# its type, its parameters or its number of inputs). Loaded only for such an error, so the
# deployment of a good assignment does not hold these texts (make.py, where they were, is the
# largest module a deployment loads).
from sensormesh.device.steps import StepError, rare_call


# The most values a window, sliding window, median or quantile holds (its "values", its "size"):
# make.int_param refuses more; the controller's catalog has the same bound.
MAX_VALUES = 1000000


def integer(step, name, least, v):
    """The StepError of integer parameter `name` of step, which make.int_param found wrong."""
    most = " and <= %d" % MAX_VALUES if name in ("size", "values") else ""
    return step.bad("%s must be an integer >= %d%s, got %r" % (name, least, most, v))


def short(value):
    # the value as a refusal shows it (base.py's, loaded for the call)
    return rare_call("sensormesh.device.steps.base", "short", value)


def bad(spec, cls):
    """The StepError of spec (a step's spec; cls: the class of its type, None for an unknown
    type), which make.inputs_of found wrong."""
    sid = spec.get("id") if type(spec) is dict else None
    if type(sid) is not str or not sid:
        return StepError("step spec needs an 'id' string: %s" % short(spec))
    kind = spec.get("type")
    if cls is None:
        from sensormesh.device.steps import kinds
        return kinds.unknown(sid, kind)
    params = spec.get("params")
    if params is None:
        params = {}
    if type(params) is not dict:
        return StepError("step '%s': params must be an object, got %s" % (sid, short(params)))
    for name in params:
        if name not in cls.ARGS:
            return StepError("step '%s': unknown parameter '%s' (%s takes: %s)"
                             % (sid, name, cls.TYPE, ", ".join(cls.ARGS) or "none"))
    n = len(spec.get("inputs"))
    lo, hi = cls.INPUTS
    if lo == hi:
        want = str(lo)
    elif hi is None:
        want = "%d or more" % lo
    else:
        want = "%d or %d" % (lo, hi)
    return StepError("step '%s': %s takes %s input%s, got %d" % (sid, kind, want, "" if want == "1" else "s", n))


def shape(sid, inputs, params):
    """The StepError of step `sid` whose inputs are not a list of step ids or whose params are not
    an object (runtime/build.py checks both for every node, sources and pipes included)."""
    if inputs is not None and (type(inputs) is not list or [i for i in inputs if type(i) is not str]):
        return StepError("step '%s': inputs must be a list of step ids, got %s" % (sid, short(inputs)))
    return StepError("step '%s': params must be an object, got %s" % (sid, short(params)))
