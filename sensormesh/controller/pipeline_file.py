# The pipeline file: YAML describing the same graph the Python API builds, plus the inventory.
#
#   pipeline: alarm
#   devices:
#     esp-1: {interpreter: micropython, cpu: 1, memory: 96000, sensors: [dht11], address: "10.0.0.5:7001"}
#     laptop: {interpreter: cpython, cpu: 20, address: "127.0.0.1:7002", local: true}
#   network: ...                 # topology (domains, gateways, links): topology.py reads it
#   steps:
#     t: {type: source, sensor: dht11}
#     c: {type: field, key: temperature, input: t}
#     f: {type: map, fn: "user_steps.py:fahrenheit", input: c}
#     w: {type: window, time-frame: 1000, agg: mean, input: f}
#     a: {type: alarm, high: 86, low: 82, input: w}
#   sinks:
#     out: {type: print, input: a, on: laptop}
#
# Why YAML and not TOML: PyYAML's composer gives every node a start mark (line, column), so an
# error names the line of the exact key that is wrong, also for model errors found after
# parsing (cycles, unknown sensors); a graph of steps keyed by id, each a small mapping, reads
# as one block per step, where TOML needs a [steps.<id>] table per step or long inline tables.
#
# Every error is a PipelineFileError naming the file, line and column, the key path and what
# is wrong; validation reports all problems at once.
import difflib
import importlib
import importlib.util
import os
import re
import sys

import yaml

from sensormesh.controller import catalog
from sensormesh.controller.errors import FileProblem, ModelError, PipelineFileError
from sensormesh.controller.model import DEVICE_KEYS, Device, Model, Step

TOP_KEYS = ("pipeline", "devices", "network", "steps", "sinks")
STEP_KEYS = catalog.STEP_KEYS       # ("type", "input", "inputs", "on", "requires"); the rest are parameters


class _Doc:
    """Parsed YAML with the start mark of every key and value, by key path."""

    def __init__(self, filename):
        self.filename = filename
        self.key_marks = {}     # path -> mark of the key (mappings) or item (sequences)
        self.value_marks = {}   # path -> mark of the value
        self.problems = []

    def where(self, path, prefer_value=False):
        path = tuple(path)
        exact = True
        while True:
            # a missing key is reported at its parent's key, a bad value at the value
            marks = (self.value_marks, self.key_marks) if prefer_value and exact else (self.key_marks, self.value_marks)
            for table in marks:
                if path in table:
                    m = table[path]
                    return m.line + 1, m.column + 1
            if not path:
                return None, None
            path = path[:-1]
            exact = False

    def problem(self, message, path, prefer_value=False, **kw):
        line, col = self.where(path, prefer_value)
        self.problems.append(FileProblem(message, line, col, path, **kw))

    def fail(self):
        if self.problems:
            raise PipelineFileError(self.filename, self.problems)

    def parse(self, text):
        try:
            loader = _Loader(text)
        except yaml.reader.ReaderError as e:
            # a character YAML does not take (a NUL, a control character: often a binary file)
            before = text[:e.position]
            line, col = before.count("\n") + 1, e.position - (before.rfind("\n") + 1) + 1
            raise PipelineFileError(self.filename, [FileProblem(
                "a character YAML does not take here (code %#x: %s); is this a text file?"
                % (e.character, "a NUL byte" if e.character == 0 else "a control character"
                   if e.character < 0x20 or 0x7f <= e.character < 0xa0 else "not a printable character"),
                line, col)]) from None
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            self._check_expansion(node)
            return self._convert(loader, node, ())
        except yaml.MarkedYAMLError as e:
            mark, what = _syntax_error(e)
            raise PipelineFileError(self.filename, [FileProblem(
                "YAML syntax error: %s" % what, mark.line + 1 if mark else None,
                mark.column + 1 if mark else None)])
        except yaml.YAMLError as e:
            raise PipelineFileError(self.filename, [FileProblem("YAML error: %s" % e)])
        except RecursionError:
            raise PipelineFileError(self.filename, [FileProblem(
                "the file nests lists and mappings too deeply to be read")]) from None
        finally:
            loader.dispose()

    def _error(self, message, mark, path=()):
        return PipelineFileError(self.filename, [FileProblem(message, mark.line + 1, mark.column + 1, path)])

    def _check_expansion(self, root):
        """Refuse a file whose aliases expand to more than MAX_VALUES values (nested aliases
        each repeating the one before grow exponentially: a few hundred bytes can stand for
        billions of values), before any of it is expanded. Names the alias whose expansion
        goes past the limit, or an alias used inside the value it names."""
        sizes = {}          # id(node) -> values it expands to
        active = set()      # ids of the nodes being sized (an alias to one of them is a loop)

        def size(node):
            key = id(node)
            if key in sizes:
                return sizes[key]
            active.add(key)
            n = 1
            for child in _children(node):
                if isinstance(child, _Alias):
                    if id(child.node) in active:
                        raise self._error("alias *%s is used inside the value it names (a value cannot "
                                          "contain itself)" % child.anchor, child.start_mark)
                    child = child.node
                n += size(child)
            active.discard(key)
            sizes[key] = n
            return n

        count = 0

        def walk(node):
            # the nodes as written, each alias counted as the values it stands for
            nonlocal count
            count += 1
            if count > MAX_VALUES:
                raise self._error("the file holds more than %d values" % MAX_VALUES, node.start_mark)
            for child in _children(node):
                if isinstance(child, _Alias):
                    count += size(child.node)
                    if count > MAX_VALUES:
                        raise self._error("aliases expand to more than %d values (alias *%s here stands for "
                                          "%d); write the values out or use fewer nested aliases"
                                          % (MAX_VALUES, child.anchor, size(child.node)), child.start_mark)
                else:
                    walk(child)

        walk(root)

    def _convert(self, loader, node, path):
        if isinstance(node, _Alias):
            node = node.node
        self.value_marks[path] = node.start_mark
        if isinstance(node, yaml.ScalarNode):
            return loader.construct_object(node, deep=True)
        if isinstance(node, yaml.SequenceNode):
            out = []
            for i, item in enumerate(node.value):
                self.key_marks[path + (i,)] = _node(item).start_mark
                out.append(self._convert(loader, item, path + (i,)))
            return out
        # YAML merge keys (<<: *defaults, or <<: [*a, *b]): a key written in this mapping wins
        # over a merged one, and of several merged mappings the first one that has a key wins.
        # Only keys written twice in this mapping are duplicates.
        sources, written, first = [], [], {}
        for knode, vnode in node.value:
            knode = _node(knode)
            if not isinstance(knode, yaml.ScalarNode):
                m = knode.start_mark
                raise PipelineFileError(self.filename, [FileProblem(
                    "a key must be a plain name, not a list or mapping", m.line + 1, m.column + 1, path)])
            if knode.tag == MERGE_TAG:
                sources.extend(self._merge_sources(vnode, path))
                continue
            # Keys are names: take the text as written. (YAML 1.1 would read the key `on:`
            # as the boolean true, and `1:` as an integer.)
            key = knode.value
            if key in first:
                raise self._error("duplicate key %r (first on line %d)" % (key, first[key].line + 1),
                                  knode.start_mark, path + (key,))
            first[key] = knode.start_mark
            written.append((key, knode, vnode))
        out = {}
        if sources:
            # the last source first, so that the marks kept for a key are those of the value used
            merged = [self._convert(loader, src, path) for src in reversed(sources)]
            for part in reversed(merged):
                for key, value in part.items():
                    out.setdefault(key, value)
            self.value_marks[path] = node.start_mark
        for key, knode, vnode in written:
            self.key_marks[path + (key,)] = knode.start_mark
            out[key] = self._convert(loader, vnode, path + (key,))
        return out

    def _merge_sources(self, vnode, path):
        """The mappings a merge key `<<` brings in, in order."""
        target = _node(vnode)
        if isinstance(target, yaml.MappingNode):
            return [target]
        if isinstance(target, yaml.SequenceNode) and all(isinstance(_node(x), yaml.MappingNode)
                                                         for x in target.value):
            return [_node(x) for x in target.value]
        what = "list holding other values" if isinstance(target, yaml.SequenceNode) else "single value"
        raise self._error("<< merges a mapping (<<: *name) or a list of mappings (<<: [*a, *b]) into this "
                          "one, not a %s" % what, vnode.start_mark, path + ("<<",))


# A file may hold at most this many values (scalars, lists and mappings), each alias counted as
# the values it stands for: far more than any pipeline needs, and converted in well under a second.
MAX_VALUES = 100_000
MERGE_TAG = "tag:yaml.org,2002:merge"


class _Alias:
    """One use of an alias (*name): the node it names and where it is used. PyYAML's composer
    gives the anchored node itself, which has only the anchor's position."""

    __slots__ = ("node", "anchor", "start_mark")

    def __init__(self, node, anchor, start_mark):
        self.node = node
        self.anchor = anchor
        self.start_mark = start_mark


class _Loader(yaml.SafeLoader):
    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            return _Alias(super().compose_node(parent, index), event.anchor, event.start_mark)
        return super().compose_node(parent, index)


# Numbers with an exponent and no dot or no exponent sign (1e9, 5E-3, 1.5e9) are floats, as in
# YAML 1.2 and JSON; YAML 1.1, which PyYAML follows, reads them as text.
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))


def _node(x):
    return x.node if isinstance(x, _Alias) else x


def _children(node):
    if isinstance(node, yaml.SequenceNode):
        return node.value
    if isinstance(node, yaml.MappingNode):
        return [x for pair in node.value for x in pair]
    return ()


def _syntax_error(e):
    """(mark, words) for a PyYAML syntax error. PyYAML notices an unclosed bracket or quote
    only where the next token does not fit (often the next line); its context mark is where
    the unclosed thing starts, so that is where the error points, with the place it was noticed
    in the words. Other errors point where PyYAML found the problem."""
    ctx, prob = e.context_mark, e.problem_mark
    opened = e.context and (e.context.startswith("while parsing a flow") or e.context.startswith("while scanning"))
    if opened and ctx is not None:
        what = e.context.split(" ", 2)[2]                     # "a flow sequence"
        opener = {"a flow sequence": "'['", "a flow mapping": "'{'", "a quoted scalar": "quote"}.get(what)
        words = "%s here is not closed: %s" % ("the " + opener if opener else what + " that starts", e.problem)
        if prob is not None and (prob.line, prob.column) != (ctx.line, ctx.column):
            words += " (noticed at line %d, column %d)" % (prob.line + 1, prob.column + 1)
        return ctx, words
    if e.problem and "'\\t'" in e.problem:
        return prob or ctx, "a tab here: use spaces (YAML does not take tabs for indentation)"
    return prob or ctx, " ".join(x for x in (e.context, e.problem) if x)


def _suggest(word, options):
    close = difflib.get_close_matches(str(word), [str(o) for o in options], n=1)
    return " (did you mean %r?)" % close[0] if close else ""


def _read(path):
    doc = _Doc(path)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise PipelineFileError(path, [FileProblem("cannot read the file: %s" % (e.strerror or e))])
    except UnicodeDecodeError as e:
        raise PipelineFileError(path, [FileProblem("not UTF-8 text: %s" % e)])
    data = doc.parse(text)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        doc.problem("a pipeline file is a mapping with %s, not a %s" % (", ".join(TOP_KEYS), type(data).__name__), ())
        doc.fail()
    steps = data.get("steps")
    if "strategy" in data and "devices" not in data and isinstance(steps, dict) and steps \
            and all(isinstance(v, str) for v in steps.values()):
        # strategy: and steps: step -> device: an experiment's placement file, not a pipeline
        doc.problem("this is a placement file (strategy: and steps: step -> device), which `sensormesh "
                    "experiment FILE --placement NAME=THIS_FILE` takes beside a pipeline file; give a pipeline "
                    "file (devices:, steps:, sinks:) here", ("strategy",))
        doc.fail()
    for key in data:
        if key not in TOP_KEYS:
            doc.problem("unknown top-level key %r%s; known: %s" % (key, _suggest(key, TOP_KEYS), ", ".join(TOP_KEYS)),
                        (key,))
    return doc, data


def _devices(doc, data):
    devices = []
    raw = data.get("devices")
    if raw is None:
        return devices
    if not isinstance(raw, dict):
        doc.problem("devices must be a mapping of device name -> settings", ("devices",), True)
        return devices
    for name, entry in raw.items():
        path = ("devices", name)
        if entry is None:
            entry = {}
        if not isinstance(entry, dict):
            doc.problem("a device is a mapping (interpreter, cpu, memory, sensors, address, ...), not %r"
                        % (entry,), path, True, device=name)
            continue
        bad = False
        for k in entry:
            if k not in DEVICE_KEYS:
                doc.problem("unknown device key %r%s; known: %s"
                            % (k, _suggest(k, DEVICE_KEYS), ", ".join(DEVICE_KEYS)),
                            path + (k,), device=name, key=k)
                bad = True
        if bad:
            continue
        devices.append(Device(str(name), origin="%s:%s:%s" % ((doc.filename,) + doc.where(path)), **entry))
    return devices


def _topology(doc, data, devices):
    """HOOK: the `network:` section -> topology.Topology, when sensormesh/controller/topology.py
    exists and offers Topology.from_dict(data, device_names). Without it the raw section is
    kept on the model (Model.network) and placement treats every device pair as one hop."""
    network = data.get("network")
    if network is None:
        return None, None
    topo_mod = _topology_module()
    cls = getattr(topo_mod, "Topology", None)
    build = getattr(cls, "from_dict", None)
    if not callable(build):
        return network, None
    names = [d.name for d in devices]
    check = getattr(cls, "check", None)
    try:
        errors = check(network, names) if callable(check) else []    # every problem, not only the first
        if not errors:
            return network, build(network, names)
    except (ValueError, TypeError, KeyError) as e:
        errors = [e]
    for e in errors:
        path = getattr(e, "path", None) or getattr(e, "key_path", None) or getattr(e, "key", None) or ()
        if isinstance(path, str):
            path = tuple(int(p) if p.isdigit() else p for p in path.split(".") if p)
        path = tuple(path)
        if not path or path[0] != "network":
            path = ("network",) + path
        msg = getattr(e, "message", None) or (e.args[0] if e.args else str(e))
        doc.problem(str(msg), path)
    return network, None


def _topology_module():
    """sensormesh.controller.topology if it exists (it is written separately), else None."""
    name = "sensormesh.controller.topology"
    if name not in sys.modules and importlib.util.find_spec(name) is None:
        return None
    return importlib.import_module(name)


def _steps(doc, data):
    steps, section_of, aliases = [], {}, {}
    for section in ("steps", "sinks"):
        raw = data.get(section)
        if raw is None:
            continue
        if not isinstance(raw, dict):
            doc.problem("%s must be a mapping of step id -> step" % section, (section,), True)
            continue
        for sid, entry in raw.items():
            path = (section, sid)
            if not isinstance(sid, str):
                doc.problem("step ids must be names, not %r" % (sid,), path, step=sid)
                continue
            if sid in section_of:
                doc.problem("step id %r is used in steps and in sinks" % sid, path, step=sid)
                continue
            if not isinstance(entry, dict):
                doc.problem("a step is a mapping with a type (e.g. {type: map, fn: ..., input: ...}), not %r"
                            % (entry,), path, True, step=sid)
                continue
            t = entry.get("type")
            if t is None:
                doc.problem("needs a type (one of %s)" % ", ".join(catalog.USER_TYPES), path, step=sid, key="type")
                continue
            if not isinstance(t, str):
                doc.problem("a step type is a name (one of %s), not %r" % (", ".join(catalog.USER_TYPES), t),
                            path + ("type",), True, step=sid, key="type")
                continue
            if section == "sinks" and t in catalog.CATALOG and t not in catalog.SINK_TYPES:
                doc.problem("%s is not a sink (sinks: %s); put it under steps:" % (t, ", ".join(catalog.SINK_TYPES)),
                            path + ("type",), True, step=sid, key="type")
                continue
            if section == "steps" and t in catalog.SINK_TYPES:
                doc.problem("%s is a sink; put it under sinks:" % t, path + ("type",), True, step=sid, key="type")
                continue
            if "input" in entry and "inputs" in entry:
                doc.problem("give input (one) or inputs (a list), not both", path + ("inputs",), step=sid, key="inputs")
                continue
            if "input" in entry:
                inputs = entry["input"]
                if not isinstance(inputs, str):
                    doc.problem("input is one step id; use inputs: [a, b] for several", path + ("input",), True,
                                step=sid, key="input")
                    continue
                inputs = [inputs]
                aliases.setdefault(sid, {})["inputs"] = "input"
            else:
                inputs = entry.get("inputs", [])
                if isinstance(inputs, str):
                    inputs = [inputs]
            params = {}
            for k, v in entry.items():
                if k in STEP_KEYS:
                    continue
                canon = catalog.canonical_param(str(k))
                if canon in params:
                    first = aliases.get(sid, {}).get(canon, canon)
                    doc.problem("given twice, as %s and as %s (one parameter); keep one" % (first, k),
                                path + (k,), step=sid, key=canon)
                    continue
                if canon != k:
                    aliases.setdefault(sid, {})[canon] = k
                params[canon] = v
            on = entry.get("on")
            if isinstance(on, bool):
                on = "true" if on else "false"     # as written (YAML reads `on: true` as a boolean)
            elif on is not None and not isinstance(on, str):
                on = str(on)
            steps.append(Step(sid, t, params, inputs, on=on, requires=entry.get("requires"),
                              origin="%s:%s:%s" % ((doc.filename,) + doc.where(path))))
            section_of[sid] = section
    return steps, section_of, aliases


def _file_problem(doc, p, section_of, aliases):
    """A model Problem -> the key path in the file, and its mark."""
    if p.step is not None and p.step in section_of:
        key = p.key
        path = (section_of[p.step], p.step)
        if key is not None and key != "id":
            fkey = aliases.get(p.step, {}).get(key, key)
            path = path + (fkey,)
            if p.item is not None and fkey == "inputs":
                path = path + (p.item,)
        doc.problem(p.message, path, prefer_value=key is not None and key not in ("inputs",),
                    step=p.step, key=p.key)
    elif p.device is not None:
        path = ("devices", p.device)
        if p.key and p.key != "name":
            k = p.key
            if k.startswith("sensors[") and k.endswith("]"):
                path = path + ("sensors", int(k[8:-1]))
            else:
                path = path + (k,)
        doc.problem(p.message, path, prefer_value=p.key != "name", device=p.device, key=p.key)
    else:
        doc.problem(p.message, (p.key,) if p.key in TOP_KEYS else (), key=p.key)


def load_model(path, callbacks=None, require_devices=True):
    """The validated Model of a pipeline file; raises PipelineFileError."""
    doc, data = _read(path)
    name = data.get("pipeline", os.path.splitext(os.path.basename(path))[0])
    if not isinstance(name, str) or not name:
        doc.problem("the pipeline name must be a non-empty string, not %r" % (name,), ("pipeline",), True)
    devices = _devices(doc, data)
    network, topology = _topology(doc, data, devices)
    steps, section_of, aliases = _steps(doc, data)
    if not steps and not doc.problems:
        doc.problem("the file defines no steps (add steps: and sinks:)", ())
    doc.fail()
    try:
        return Model(name, steps, devices, callbacks=callbacks, network=network, topology=topology,
                     base_dir=os.path.dirname(os.path.abspath(path)), require_devices=require_devices)
    except ModelError as e:
        for p in e.problems:
            _file_problem(doc, p, section_of, aliases)
        doc.fail()
        raise


def load_inventory(path):
    """(devices, raw network section, topology) of a file with devices: (a pipeline file or not)."""
    doc, data = _read(path)
    doc.problems = [p for p in doc.problems if p.path[:1] in (("devices",), ("network",))]
    devices = _devices(doc, data)
    for d in devices:
        for key, msg in d.problems():
            from sensormesh.controller.errors import Problem
            _file_problem(doc, Problem(msg, device=d.name, key=key), {}, {})
    network, topology = _topology(doc, data, devices)
    doc.fail()
    return devices, network, topology
