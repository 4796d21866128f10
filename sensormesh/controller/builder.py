# The Python API: a pipeline reads as a sentence (streamz style).
#
#   p = Pipeline("alarm")
#   p.device("esp-1", interpreter="micropython", cpu=1, memory=96_000, sensors=["temperature"],
#            address="192.168.1.20:7001")
#   t = p.source("temperature", on="esp-1", rate=10)
#   t.map(to_f).window(time_frame=1000, agg="mean").alarm(high=86, low=82).sink.print()
#
# Every call adds one Step; its parameters are checked at once against the catalogue, so a
# mistake points at the line that made it. The whole graph (inventory, sensors, shipped code)
# is checked when the model is built: p.model(), p.plan() or p.assignments(). sensormesh.api
# re-exports what users import.
import os
import sys

from sensormesh.controller import catalog
from sensormesh.controller.errors import ModelError, Problem
from sensormesh.controller.model import Device, Model, Step, _suggest
from sensormesh.controller.shipping import CodeShipper

_HERE = os.path.dirname(os.path.abspath(__file__))
_API = os.path.join(os.path.dirname(_HERE), "api.py")


def _caller():
    """'file.py:line' of the first frame outside the controller: where the user wrote the call."""
    f = sys._getframe(1)
    while f is not None:
        fn = os.path.abspath(f.f_code.co_filename)
        if not fn.startswith(_HERE + os.sep) and fn != _API:
            return "%s:%d" % (os.path.basename(fn), f.f_lineno), os.path.dirname(fn)
        f = f.f_back
    return None, None


def _params(kw):
    """Python keywords -> device parameter names, dropping the ones left at None."""
    return {catalog.canonical_param(k): v for k, v in kw.items() if v is not None}


class Pipeline:
    """A processing sequence under construction, plus its device inventory."""

    def __init__(self, name):
        self.name = name
        self._steps = []
        self._ids = set()
        self._devices = []
        self.callbacks = {}
        self.network = None
        self.topology = None
        self._shipper = CodeShipper()
        self._model = None
        self._model_checked_devices = None

    # -- inventory ---------------------------------------------------------------------------

    def device(self, name, interpreter="cpython", cpu=None, memory=None, sensors=(), address=None,
               unix=None, local=False, description=None, addresses=None, heap=None, romfs=None):
        """Add a device to the inventory; returns the Device. heap: a MicroPython device's
        Python heap (e.g. "96K", the default), which `up` gives a local one; romfs: whether its
        board runs the package from a ROMFS partition (default True) or from files (False)."""
        where, _ = _caller()
        if any(d.name == name for d in self._devices):
            raise ModelError(Problem("two devices with this name (%s)" % where, device=name))
        d = Device(name, interpreter=interpreter, cpu=cpu, memory=memory, sensors=sensors, address=address,
                   unix=unix, local=local, description=description, origin=where, addresses=addresses,
                   heap=heap, romfs=romfs)
        probs = d.problems()
        if probs:
            raise ModelError([Problem("%s (%s)" % (m, where) if where else m, device=name, key=k)
                              for k, m in probs])
        self._devices.append(d)
        self._model = None
        return d

    def devices_from(self, path):
        """Add the devices (and network) of a YAML file: a pipeline file or an inventory file."""
        from sensormesh.controller.pipeline_file import load_inventory
        devices, network, topology = load_inventory(path)
        for d in devices:
            if any(x.name == d.name for x in self._devices):
                raise ModelError(Problem("two devices with this name (one from %s) (%s)" % (path, _caller()[0]),
                                         device=d.name))
            self._devices.append(d)
        if network is not None:
            self.network, self.topology = network, topology
        self._model = None
        return self

    @property
    def devices(self):
        return list(self._devices)

    # -- graph -------------------------------------------------------------------------------

    def source(self, sensor, on=None, rate=None, id=None, requires=None, **hints):
        """A stream of a sensor's values: `sensor` is a kind or a configured sensor name."""
        return self._add("source", [], dict(sensor=sensor, rate=rate), id, on, requires, hints,
                         default_id=sensor if isinstance(sensor, str) else "source")

    def mqtt_in(self, broker, topic, id=None, on=None, requires=None, **options):
        """A stream of the values published to an MQTT topic filter (options: qos, client_id,
        username, password_env, tls, rate: expected messages/s for planning)."""
        params = {"broker": broker, "topic": topic}
        params.update(options)
        return self._add("mqtt_in", [], params, id, on, requires, {}, default_id="mqtt_in")

    def merge(self, *streams, **kw):
        """One stream of the values of all `streams` as they come."""
        return merge(*streams, **kw)

    def _add(self, type_, inputs, params, id, on, requires, hints, default_id=None, fn=None):
        where, base = _caller()
        for s in inputs:
            if not isinstance(s, Stream):
                raise ModelError(Problem("expected a stream, got %r (%s)" % (s, where), key="inputs"))
            if s.pipeline is not self:
                raise ModelError(Problem("cannot join streams of two pipelines (%r and %r) (%s)"
                                         % (self.name, s.pipeline.name, where), key="inputs"))
        sid = id if id is not None else self._new_id(default_id or type_)
        if sid in self._ids:
            raise ModelError(Problem("two steps with this id (%s)" % where, step=sid, key="id"))
        p = _params(params)
        p.update(_params(hints))
        t = catalog.get(type_)
        if fn is not None and not isinstance(fn, str):
            p["fn"] = "user:placeholder"      # replaced by the shipped reference later
        elif isinstance(fn, str):
            p["fn"] = fn if ".py:" not in fn else "user:placeholder"
        probs = t.check_params(p, len(inputs))
        if probs:
            raise ModelError([Problem("%s (%s)" % (m, where), step=sid, key=k) for k, m in probs])
        if fn is not None:
            del p["fn"]
            if isinstance(fn, str) and ".py:" in fn and not os.path.isabs(fn.rpartition(":")[0]):
                fn = os.path.join(base or os.getcwd(), fn)     # relative to the caller's file
            self._check_fn(fn, sid, where)
        step = Step(sid, type_, p, [s.id for s in inputs], on=on, requires=requires, origin=where, fn=fn)
        self._steps.append(step)
        self._ids.add(sid)
        self._model = None
        return Stream(self, sid) if t.outputs else SinkStep(self, sid)

    def _check_fn(self, fn, sid, where):
        """Cheap checks at the call: a lambda fails here, not at deployment."""
        import types
        if isinstance(fn, types.FunctionType) and fn.__name__ == "<lambda>":
            raise ModelError(Problem(
                "a lambda cannot be shipped to a device (%s); write a module-level function, "
                "e.g. `def my_step(x): return ...`" % where, step=sid, key="fn"))
        if not (isinstance(fn, str) or callable(fn)):
            raise ModelError(Problem("fn must be a function or \"module:name\", not %r (%s)" % (fn, where),
                                     step=sid, key="fn"))

    def _new_id(self, base):
        base = "".join(c if c.isalnum() or c in "_.-" else "_" for c in str(base)) or "step"
        if not (base[0].isalpha() or base[0] == "_"):
            base = "s_" + base
        sid, n = base, 2
        while sid in self._ids:
            sid, n = "%s_%d" % (base, n), n + 1
        return sid

    # -- results -------------------------------------------------------------------------------

    def model(self, require_devices=True):
        """The validated Model (raises ModelError naming every problem)."""
        if self._model is None or self._model_checked_devices != require_devices:
            try:
                m = Model(self.name, [Step(s.id, s.type, s.params, s.inputs, s.on, s.requires, s.origin, s.fn)
                                      for s in self._steps],
                          self._devices, callbacks=self.callbacks, network=self.network,
                          topology=self.topology, shipper=self._shipper, require_devices=require_devices)
            except ModelError as e:
                origins = {s.id: s.origin for s in self._steps}
                for p in e.problems:
                    if p.step in origins and origins[p.step]:
                        p.message = "%s (%s)" % (p.message, origins[p.step])
                raise ModelError(e.problems)
            self._model, self._model_checked_devices = m, require_devices
        return self._model

    def validate(self):
        """Check the graph without an inventory; returns the warnings."""
        return self.model(require_devices=bool(self._devices)).warnings

    def plan(self, strategy=None, **options):
        """Place the steps on the devices: a placement.Placement."""
        return self.model().place(strategy, **options)

    def assignments(self, strategy=None, epoch=0, **options):
        """{device: assignment dict} for the given strategy."""
        return self.plan(strategy, **options).assignments(epoch=epoch)

    def up(self, strategy=None, duration=None, count=None, until=None, on_event=None, **options):
        """Run the pipeline on this machine: start the devices marked local=True (MicroPython
        ones on the unix port when `micropython` is installed), deploy, call the callback
        functions as values arrive, and stop everything after `duration` seconds, `count`
        callback values, when until() is true, or on Ctrl-C. Returns each device's final
        counts. Devices that are not local must already run (`sensormesh worker`)."""
        from sensormesh.controller import runner
        return runner.up(self.model(), strategy, duration=duration, count=count, until=until,
                         on_event=on_event, **options)

    def __repr__(self):
        return "Pipeline(%r, %d steps, %d devices)" % (self.name, len(self._steps), len(self._devices))


class Stream:
    """The output of a step; every method adds a step reading it and returns that step's stream."""

    def __init__(self, pipeline, id):
        self.pipeline = pipeline
        self.id = id

    def _then(self, type_, inputs, params, id, on, requires, hints, default_id=None, fn=None):
        return self.pipeline._add(type_, [self] + list(inputs), params, id, on, requires, hints,
                                  default_id=default_id, fn=fn)

    def then(self, type_, *others, id=None, on=None, requires=None, **params):
        """Any step type by name: s.then("window", values=10) == s.window(values=10)."""
        t = catalog.get(type_)
        if t is None or not t.user:
            raise ModelError(Problem("unknown step type %r%s; known: %s (%s)"
                                     % (type_, _suggest(type_, catalog.USER_TYPES), ", ".join(catalog.USER_TYPES),
                                        _caller()[0]),
                                     key="type"))
        fn = params.pop("fn", None)
        return self._then(type_, others, params, id, on, requires, {}, fn=fn,
                          default_id=getattr(fn, "__name__", type_) if fn is not None else type_)

    # one input ---------------------------------------------------------------------------------

    def map(self, fn, id=None, on=None, requires=None, **hints):
        """fn(value) -> new value, shipped to wherever the step runs."""
        return self._then("map", [], {}, id, on, requires, hints, default_id=_fn_name(fn, "map"), fn=fn)

    def filter(self, fn, id=None, on=None, requires=None, **hints):
        """Keep the values for which fn(value) is true (hint: selectivity=fraction kept)."""
        return self._then("filter", [], {}, id, on, requires, hints, default_id=_fn_name(fn, "filter"), fn=fn)

    def field(self, key, id=None, on=None, requires=None, **hints):
        """value[key]; key may be a dotted path such as "accel.0"."""
        return self._then("field", [], dict(key=key), id, on, requires, hints,
                          default_id=str(key).replace(".", "_") if isinstance(key, str) else "field")

    def window(self, time_frame=0, values=0, agg="mean", id=None, on=None, requires=None, **hints):
        """Tumbling window: aggregate `values` values or `time_frame` ms, whichever comes first."""
        return self._then("window", [], dict(time_frame=time_frame, values=values, agg=agg),
                          id, on, requires, hints)

    def sliding(self, size, slide=1, agg="mean", id=None, on=None, requires=None, **hints):
        """Aggregate over the last `size` values, every `slide` values."""
        return self._then("sliding", [], dict(size=size, slide=slide, agg=agg), id, on, requires, hints)

    def throttle(self, interval, mode="latest", id=None, on=None, requires=None, **hints):
        """At most one value per `interval` ms (the first or the latest of each interval)."""
        return self._then("throttle", [], dict(interval=interval, mode=mode), id, on, requires, hints)

    def changes(self, tolerance=0, id=None, on=None, requires=None, **hints):
        """Only values that differ from the last one emitted (numbers: by more than tolerance)."""
        return self._then("changes", [], dict(tolerance=tolerance), id, on, requires, hints)

    # -- filters -------------------------------------------------------------------------
    def ema(self, alpha, id=None, on=None, requires=None, **hints):
        """Exponential moving average: s = alpha * x + (1 - alpha) * s."""
        return self._then("ema", [], dict(alpha=alpha), id, on, requires, hints)

    def delta(self, delta=None, percent=None, id=None, on=None, requires=None, **hints):
        """Only numbers that moved by at least `delta` (or `percent` %) from the last one passed."""
        params = {k: v for k, v in (("delta", delta), ("percent", percent)) if v is not None}
        return self._then("delta", [], params, id, on, requires, hints)

    def calibrate(self, points, id=None, on=None, requires=None, **hints):
        """Linear calibration through [[raw, true], ...] point pairs (least squares)."""
        return self._then("calibrate", [], dict(points=[list(p) for p in points]), id, on, requires, hints)

    def clamp(self, min=None, max=None, mode="clamp", id=None, on=None, requires=None, **hints):
        """Limit numbers to [min, max]; mode="drop" leaves out-of-range values out."""
        params = {k: v for k, v in (("min", min), ("max", max)) if v is not None}
        params["mode"] = mode
        return self._then("clamp", [], params, id, on, requires, hints)

    def median(self, size, slide=1, id=None, on=None, requires=None, **hints):
        """The median of the last `size` numbers, every `slide` numbers."""
        return self._then("median", [], dict(size=size, slide=slide), id, on, requires, hints)

    def quantile(self, q, size, slide=1, id=None, on=None, requires=None, **hints):
        """The q-quantile (0..1) of the last `size` numbers, every `slide` numbers."""
        return self._then("quantile", [], dict(q=q, size=size, slide=slide), id, on, requires, hints)

    def heartbeat(self, interval, id=None, on=None, requires=None, **hints):
        """Pass every value; re-emit the last one every `interval` ms while nothing new came."""
        return self._then("heartbeat", [], dict(interval=interval), id, on, requires, hints)

    def debounce(self, time, id=None, on=None, requires=None, **hints):
        """Emit a value once it has held for `time` ms and differs from the last one emitted."""
        return self._then("debounce", [], dict(time=time), id, on, requires, hints)

    def timeout(self, time, marker=None, id=None, on=None, requires=None, **hints):
        """Pass every value; emit `marker` once when no value came for `time` ms."""
        params = dict(time=time)
        if marker is not None:
            params["marker"] = marker
        return self._then("timeout", [], params, id, on, requires, hints)

    def alarm(self, high=None, low=None, threshold=None, hysteresis=None, key=None, id=None, on=None,
              requires=None, **hints):
        """Alarm state changes: fixed `high`/`low`, or a `threshold` stream and `hysteresis`."""
        others = []
        if threshold is not None:
            if not isinstance(threshold, Stream):
                raise ModelError(Problem("threshold must be a stream (use high/low for fixed numbers), "
                                         "not %r (%s)" % (threshold, _caller()[0]), key="threshold"))
            others = [threshold]
            if hysteresis is None:
                hysteresis = 0
        return self._then("alarm", others, dict(high=high, low=low, hysteresis=hysteresis, key=key),
                          id, on, requires, hints)

    # joins ---------------------------------------------------------------------------------

    def zip(self, other, max_pending=1000, id=None, on=None, requires=None, **hints):
        """[a, b] pairs in arrival order."""
        return self._then("zip", [other], dict(max_pending=max_pending), id, on, requires, hints)

    def combine_latest(self, other, id=None, on=None, requires=None, **hints):
        """[latest a, latest b] on every update once both have a value."""
        return self._then("combine_latest", [other], {}, id, on, requires, hints)

    def merge(self, *others, id=None, on=None, requires=None, **hints):
        """This stream's values and the others', as they come."""
        return self._then("merge", others, {}, id, on, requires, hints)

    # sinks ---------------------------------------------------------------------------------

    @property
    def sink(self):
        """s.sink.print() == s.print(): the sinks, for sentences that read that way."""
        return Sinks(self)

    def print(self, id=None, on=None, requires=None, **hints):
        """Print every value on the device that runs the sink."""
        return self._then("print", [], {}, id, on, requires, hints)

    def csv(self, path, columns=None, id=None, on=None, requires=None, **hints):
        """Append values as CSV rows to `path` on the device that runs the sink."""
        return self._then("csv", [], dict(path=path, columns=list(columns) if columns is not None else None),
                          id, on, requires, hints)

    def mqtt_out(self, broker, topic, id=None, on=None, requires=None, **options):
        """Publish every value (or every time_frame ms as one array) to an MQTT topic.

        options: qos, retain, client_id, username, password_env, tls, time_frame, offline_buffer,
        discovery (Home Assistant) and placement hints."""
        params = {"broker": broker, "topic": topic}
        params.update(options)
        return self._then("mqtt_out", [], params, id, on, requires, {})

    def callback(self, fn, name=None, id=None, on=None, requires=None, **hints):
        """Call fn(value) in this program (on the controller) for every value."""
        if not callable(fn):
            raise ModelError(Problem("callback needs a function, not %r (%s)" % (fn, _caller()[0]), key="fn"))
        name = name or getattr(fn, "__name__", None) or "callback"
        known = self.pipeline.callbacks.get(name)
        if known is not None and known is not fn:
            raise ModelError(Problem("two different callbacks named %r; pass name= (%s)" % (name, _caller()[0]),
                                     key="name"))
        sink = self._then("callback", [], dict(name=name), id, on, requires, hints, default_id=name)
        self.pipeline.callbacks[name] = fn
        return sink

    def __repr__(self):
        return "Stream(%r)" % self.id


class Sinks:
    """s.sink: the sink constructors of a stream."""

    def __init__(self, stream):
        self._s = stream

    def print(self, **kw):
        return self._s.print(**kw)

    def csv(self, path, **kw):
        return self._s.csv(path, **kw)

    def callback(self, fn, **kw):
        return self._s.callback(fn, **kw)


class SinkStep:
    """A sink: the end of a sentence. It has an id and no output."""

    def __init__(self, pipeline, id):
        self.pipeline = pipeline
        self.id = id

    def __getattr__(self, name):
        if not name.startswith("_") and callable(getattr(Stream, name, None)):
            raise ModelError(Problem("a sink has no output to %s (%s)" % (name, _caller()[0]), step=self.id))
        raise AttributeError(name)

    def __repr__(self):
        return "SinkStep(%r)" % self.id


def merge(*streams, id=None, on=None, requires=None, **hints):
    """merge(a, b, c): one stream of the values of all inputs as they come."""
    if not streams:
        raise ModelError(Problem("merge needs at least one stream (%s)" % _caller()[0], key="inputs"))
    first = streams[0]
    if not isinstance(first, Stream):
        raise ModelError(Problem("merge takes streams, not %r (%s)" % (first, _caller()[0]), key="inputs"))
    return first.merge(*streams[1:], id=id, on=on, requires=requires, **hints)


def _fn_name(fn, default):
    if isinstance(fn, str):
        return fn.rpartition(":")[2] or default
    name = getattr(fn, "__name__", None)
    return name if name and name != "<lambda>" else default


class FilePipeline(Pipeline):
    """A pipeline read from a file (`load`): plan(), assignments(), validate() and up() work as
    for a Pipeline written in Python. Its steps and devices are the file's: change them there.
    Attributes of the validated Model (steps, order, place, ...) are reachable on it too."""

    def __init__(self, path, model):
        Pipeline.__init__(self, model.name)
        self.path = path
        self._model = model
        self._model_checked_devices = True
        self.callbacks = model.callbacks
        self._devices = list(model.device_list)
        self.network, self.topology = model.network, model.topology

    def model(self, require_devices=True):
        return self._model

    def validate(self):
        return self._model.warnings

    def up(self, strategy=None, duration=None, count=None, until=None, on_event=None, **options):
        """As Pipeline.up; the values of a callback sink `callbacks` gives no function for are
        printed one per line (`name  value`), as `sensormesh up` prints them."""
        if "on_deliver" not in options:
            from sensormesh.controller.runner import Printer
            options["on_deliver"] = Printer(print, self._model).deliver
        return Pipeline.up(self, strategy, duration=duration, count=count, until=until,
                           on_event=on_event, **options)

    def _fixed(self, what):
        where, _ = _caller()
        raise ModelError(Problem("a pipeline loaded from %s gets its %s from that file; change them "
                                 "there (%s)" % (self.path, what, where)))

    def device(self, *args, **kw):
        self._fixed("devices")

    def devices_from(self, path):
        self._fixed("devices")

    def _add(self, *args, **kw):
        self._fixed("steps")

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._model, name)

    def __repr__(self):
        return "FilePipeline(%r, %d steps, %d devices)" % (self.name, len(self._model.steps),
                                                            len(self._devices))


def load(path, callbacks=None):
    """The pipeline of a file, ready to plan() or up(): `callbacks` maps the names of its
    callback sinks (their `name`, else their id) to the functions that get their values."""
    from sensormesh.controller.pipeline_file import load_model
    where, _ = _caller()
    if callbacks is not None and not isinstance(callbacks, dict):
        raise ModelError(Problem("must be a dict {callback sink name: function}, not %r (%s)"
                                 % (callbacks, where), key="callbacks"))
    model = load_model(path, callbacks=callbacks)
    name_of = {sid: (s.params or {}).get("name") or sid for sid, s in model.steps.items() if s.type == "callback"}
    names = sorted(set(name_of.values()))
    problems = []
    for name, fn in (callbacks or {}).items():
        if name not in names and name in name_of:
            problems.append(Problem("%r is a callback sink whose name is %r: give that name (%s)"
                                    % (name, name_of[name], where), key="callbacks"))
        elif name not in names:
            problems.append(Problem(
                "%r is not a callback sink of %s%s (its callback sinks: %s) (%s)"
                % (name, path, _suggest(name, names), ", ".join(names) or "none", where), key="callbacks"))
        elif not callable(fn):
            problems.append(Problem("%r needs a function, not %r (%s)" % (name, fn, where), key="callbacks"))
    if problems:
        raise ModelError(problems)
    return FilePipeline(path, model)
