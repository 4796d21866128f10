# The step types: the family module that holds each type's class (TYPES), and that class, its
# family imported on first use (as sensors.make imports one driver per kind), so a board pays in
# heap only for the steps it runs. A deployment loads this module while it checks its assignment
# (runtime/build.py), which imports the families of its steps then, before the code that makes the
# steps (make.py) is loaded, and forgets it after the check on a board running .mpy files.
from sensormesh.device.steps import StepError

# Step type -> the family module (sensormesh/device/steps/<family>.py) that holds its class.
TYPES = {
    "map": "user", "filter": "user", "field": "field", "window": "windows", "sliding": "sliding",
    "zip": "joins", "combine_latest": "joins", "merge": "joins", "throttle": "change",
    "changes": "change", "alarm": "alarm", "print": "sinks", "csv": "sinks", "callback": "callback",
    "ema": "filters", "delta": "filters", "calibrate": "filters", "clamp": "filters",
    "median": "filters", "quantile": "filters", "heartbeat": "filters", "debounce": "filters",
    "timeout": "filters", "mqtt_out": "mqtt", "mqtt_in": "mqtt",
}

# Step type -> the family module whose class of that type also takes runs of values at once
# (put_many), for the steps of an assignment with a free-running source (runs below).
RUNS = {"map": "user_runs", "filter": "user_runs"}


def family(name):
    """The family module `name` of TYPES' values, imported on first use."""
    mod = __import__("sensormesh.device.steps." + name)
    return getattr(mod.device.steps, name)


def step_class(kind, params=None, runs=True):
    """The class of step type `kind` (imports its family); None for an unknown type. A window
    whose aggregate is not sum or mean is window_aggs.py's (its puts are there); with runs
    False (no free-running source feeds the assignment) a step without the batch path of RUNS."""
    fam = TYPES.get(kind) if type(kind) is str else None
    if fam is None:
        return None
    if runs and kind in RUNS:
        fam = RUNS[kind]
    elif fam == "windows" and type(params) is dict and params.get("agg", "mean") not in ("sum", "mean"):
        fam = "window_aggs"
    return family(fam).CLASSES[kind]


def unknown(sid, kind):
    """The error of step `sid`, whose type `kind` no family has."""
    return StepError("step '%s': unknown step type %r (built-in: %s)" % (sid, kind, ", ".join(sorted(TYPES))))
