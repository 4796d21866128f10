"""Placement files: a placement written down, to compare with the strategies.

    # mixed.yaml: the boards filter their own values, the PC does the rest
    strategy: optimal          # places every step the file does not name (default: optimal)
    steps:
      hot-1: esp-1
      hot-2: pc

Each named step is pinned to its device (as `on:` in the pipeline file would); the strategy
places the others. Sources stay with their sensors. `apply()` works on a freshly loaded model.
"""
from __future__ import annotations

import yaml

from sensormesh.controller.placement import STRATEGIES


class PlacementFileError(ValueError):
    pass


def load(path, model):
    """(strategy, {step: device}) of placement file `path`, checked against `model`."""
    try:
        with open(path, encoding="utf-8") as f:
            # names as written, as the pipeline file reads them: YAML 1.1 would turn a step or
            # device called `on`, `no` or `1` into a boolean or a number
            data = yaml.load(f, Loader=yaml.BaseLoader)
    except UnicodeDecodeError as e:
        raise PlacementFileError("placement file %s: not UTF-8 text: %s" % (path, e))
    except OSError as e:
        raise PlacementFileError("placement file %s: %s" % (path, e.strerror or e))
    except yaml.MarkedYAMLError as e:       # one line: where, and what PyYAML found there
        from sensormesh.controller.pipeline_file import _syntax_error
        mark, what = _syntax_error(e)
        where = " (line %d, column %d)" % (mark.line + 1, mark.column + 1) if mark is not None else ""
        raise PlacementFileError("placement file %s is not valid YAML%s: %s" % (path, where, what))
    except yaml.YAMLError as e:
        raise PlacementFileError("placement file %s is not valid YAML: %s" % (path, " ".join(str(e).split())))
    if not isinstance(data, dict) or not isinstance(data.get("steps"), dict):
        raise PlacementFileError("placement file %s: give `steps:` mapping step names to devices "
                                 "(and optionally `strategy:`)" % path)
    unknown = sorted(set(data) - {"strategy", "steps"})
    if unknown:
        raise PlacementFileError("placement file %s: unknown key(s) %s (known: strategy, steps)"
                                 % (path, ", ".join(unknown)))
    strategy = data.get("strategy", "optimal")
    if strategy not in STRATEGIES:
        raise PlacementFileError("placement file %s: strategy %r is not one of %s"
                                 % (path, strategy, ", ".join(STRATEGIES)))
    pins = {}
    for step, device in data["steps"].items():
        step = str(step)
        if step not in model.steps:
            raise PlacementFileError("placement file %s: the pipeline has no step %r (steps: %s)"
                                     % (path, step, ", ".join(sorted(model.steps))))
        if not isinstance(device, str) or not device:
            raise PlacementFileError("placement file %s: step %s: give one device name, not %r (devices: %s)"
                                     % (path, step, device, ", ".join(sorted(model.devices))))
        if device not in model.devices:
            raise PlacementFileError("placement file %s: step %s on %r, which is no device of the "
                                     "pipeline (devices: %s)" % (path, step, device, ", ".join(sorted(model.devices))))
        why = _not_there(model, step, device)
        if why:
            raise PlacementFileError("placement file %s: step %s: %s" % (path, step, why))
        pins[step] = device
    return strategy, pins


def _not_there(model, step, device):
    """Why `step` cannot be pinned to `device`, in the words `on: device` gets (a source to a
    device without its sensor, a step to a device of an interpreter it cannot run on), or None."""
    s = model.steps[step]
    dev = model.devices[device]
    ref = s.params.get("sensor") if s.type == "source" else None
    if isinstance(ref, str) and dev.find_sensor(ref) is None:
        have = ", ".join(x["name"] for x in dev.sensors) or "none"
        return "device %r has no sensor %r (its sensors: %s)" % (device, ref, have)
    interps = model.interpreters.get(step)
    if interps is not None and dev.interpreter not in interps:
        return "must run on %s (%s) but needs %s: %s" % (
            device, dev.interpreter, "/".join(sorted(interps)) or "no interpreter",
            "; ".join(model.interpreter_reasons.get(step) or ()) or "no interpreter fits")
    return None


def apply(model, pins):
    """Pin the steps of a placement file on `model` (a model loaded for this one run), as `on:`
    in the pipeline file would: a pinned source reads its sensor on its pinned device."""
    for step, device in pins.items():
        why = _not_there(model, step, device)
        if why:          # load() refuses these; a model that differs from the one it checked
            raise PlacementFileError("step %s: %s" % (step, why))
        s = model.steps[step]
        s.on = device
        if s.type == "source" and isinstance(s.params.get("sensor"), str):
            model.source_device[step] = device
            model.sensor_spec[step] = model.devices[device].find_sensor(s.params["sensor"])
