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
    """(strategy, {step: device}) of placement file `path`, checked against `model`. Every
    problem is named at once, each with the file's line and column."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        # names as written, as the pipeline file reads them: YAML 1.1 would turn a step or
        # device called `on`, `no` or `1` into a boolean or a number
        root = yaml.compose(text, Loader=yaml.BaseLoader)
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
    problems = []

    def problem(node, text):
        m = node.start_mark if node is not None else None
        problems.append(((m.line, m.column) if m is not None else (-1, -1),
                         "%s:%d:%d: %s" % (path, m.line + 1, m.column + 1, text) if m is not None
                         else "%s: %s" % (path, text)))

    def fail():
        lines = [text for _, text in sorted(problems, key=lambda p: p[0])]     # in file order
        if len(lines) == 1:
            raise PlacementFileError("placement file " + lines[0])
        raise PlacementFileError("placement file %s: %d problems:\n  %s" % (path, len(lines), "\n  ".join(lines)))

    top = _pairs(root, problem, "the top level")
    if top is None:
        problem(root, "give `steps:` mapping step names to devices (and optionally `strategy:`)")
        fail()
    unknown = [key for key in top if key not in ("strategy", "steps")]
    if unknown:
        problem(top[unknown[0]][0], "unknown key(s) %s (known: strategy, steps)"
                % ", ".join(k + _suggest(k, ("strategy", "steps")) for k in unknown))
    strategy = "optimal"
    if "strategy" in top:
        vnode = top["strategy"][1]
        strategy = _value(vnode)
        if strategy not in STRATEGIES:
            problem(vnode, "strategy %r%s is not one of %s" % (strategy, _suggest(strategy, STRATEGIES),
                                                             ", ".join(STRATEGIES)))
    if "steps" not in top:
        problem(root, "give `steps:` mapping step names to devices (and optionally `strategy:`)")
        fail()
    steps = _pairs(top["steps"][1], problem, "steps:") or {}
    devices = sorted(model.devices)
    pins = {}
    for step, (knode, vnode) in steps.items():
        if step not in model.steps:
            problem(knode, "the pipeline has no step %r%s (steps: %s)"
                    % (step, _suggest(step, model.steps), ", ".join(sorted(model.steps))))
            continue
        device = _value(vnode)
        if not isinstance(device, str) or not device:
            problem(vnode, "step %s: give one device name, not %r (devices: %s)" % (step, device, ", ".join(devices)))
            continue
        if device not in model.devices:
            problem(vnode, "step %s on %r%s, which is no device of the pipeline (devices: %s)"
                    % (step, device, _suggest(device, devices), ", ".join(devices)))
            continue
        why = _not_there(model, step, device)
        if why:
            problem(vnode, "step %s: %s" % (step, why))
            continue
        pins[step] = device
    if problems:
        fail()
    return strategy, pins


def _pairs(node, problem, what):
    """{key: (key node, value node)} of a YAML mapping node; duplicates and a node that is not
    a mapping are problems (None then)."""
    if not isinstance(node, yaml.MappingNode):
        if node is not None and what != "the top level":
            problem(node, "%s must map step names to devices" % what)
        return None
    out = {}
    for knode, vnode in node.value:
        key = knode.value if isinstance(knode, yaml.ScalarNode) else None
        if key is None:
            problem(knode, "a key must be a plain name")
        elif key in out:
            problem(knode, "%r is given twice (first on line %d)" % (key, out[key][0].start_mark.line + 1))
        else:
            out[key] = (knode, vnode)
    return out


def _value(node):
    """The value of a node as written: names stay text, lists and mappings are built alike."""
    if isinstance(node, yaml.ScalarNode):
        return node.value
    if isinstance(node, yaml.SequenceNode):
        return [_value(x) for x in node.value]
    return {_value(k): _value(v) for k, v in node.value}


def _suggest(word, options):
    import difflib
    close = difflib.get_close_matches(word, [str(o) for o in options], n=1) if isinstance(word, str) else []
    return " (did you mean %r?)" % close[0] if close else ""


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
