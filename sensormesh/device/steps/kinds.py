# The step types: the family module that holds each type's class (FAMILIES), and that class, its
# family imported on first use (as sensors.make imports one driver per kind), so a board pays in
# heap only for the steps it runs. A deployment loads this module while it checks its assignment
# (runtime/build.py), which imports the families of its steps then, before the code that makes the
# steps (make.py) is loaded, and forgets it after the check on a board running .mpy files.
from sensormesh.device.steps import StepError

# The family module (sensormesh/device/steps/<family>.py) that holds each step type's class: a
# line per family, "family: its types". A text rather than a dict: a board interns the words of a
# dict for good (some 20 bytes each, though only a few families ever run there), a text's only
# while this module is loaded.
FAMILIES = """
user: map
user_filter: filter
field: field
windows: window
sliding: sliding
joins: zip combine_latest merge
change: changes
throttle: throttle
alarm: alarm
sinks: print csv
callback: callback
filters: ema delta calibrate clamp median quantile heartbeat debounce timeout
mqtt: mqtt_out mqtt_in
"""

# Step type -> the family module whose class of that type also takes runs of values at once
# (put_many), for the steps of an assignment with a free-running source (runs below).
RUNS = {"map": "user_runs", "filter": "user_runs"}


def types():
    """Step type -> its family, for every built-in type."""
    out = {}
    for line in FAMILIES.split("\n"):
        if line:
            fam, kinds = line.split(": ")
            for kind in kinds.split():
                out[kind] = fam
    return out


def family(name):
    """The family module `name` (of FAMILIES), imported on first use."""
    mod = __import__("sensormesh.device.steps." + name)
    return getattr(mod.device.steps, name)


def family_of(kind, params=None, runs=True):
    """The family module (its name) whose class is step type `kind`'s; None for an unknown type.
    A window whose aggregate is not sum or mean is window_aggs.py's (its puts are there); with
    runs False (no free-running source feeds the assignment) a step without the batch path of
    RUNS."""
    fam = None
    if type(kind) is str:
        for line in FAMILIES.split("\n"):
            if kind in line.split()[1:]:
                fam = line.split(":")[0]
    if fam is None:
        return None
    if runs and kind in RUNS:
        fam = RUNS[kind]
    elif fam == "windows" and type(params) is dict and params.get("agg", "mean") not in ("sum", "mean"):
        fam = "window_aggs"
    return fam


def step_class(kind, params=None, runs=True):
    """The class of step type `kind` (imports its family: family_of); None for an unknown type."""
    fam = family_of(kind, params, runs)
    return None if fam is None else family(fam).CLASSES[kind]


def unknown(sid, kind):
    """The error of step `sid`, whose type `kind` no family has."""
    return StepError("step '%s': unknown step type %r (built-in: %s)" % (sid, kind, ", ".join(sorted(types()))))
