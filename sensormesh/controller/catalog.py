# The built-in step types: how many inputs each takes, its parameters, and the estimates
# placement needs (output rate and value size given the inputs, CPU and memory cost).
#
# Parameter names and meanings are the device-side contract (sensormesh/device/steps/ implements
# them with these names); docs/pipelines.md is the reference for users. The controller fills
# in every default before it sends an assignment, so a device never has to guess.
#
# Cost model (see docs/pipelines.md, "Cost model"): CPU is counted in *units*; one unit is
# roughly 100 us of an ESP32 running MicroPython, about the time one value takes to pass a
# trivial step. A device's `cpu` is how many such cores it is worth, so cpu=1 can do about
# CPU_UNITS_PER_S units per second. Traffic is JSON bytes per value on a pipe (values are sent
# as JSON arrays, see docs/protocol.md). Memory is bytes of heap a step keeps while it runs.
import json
import math
import re

# The most values a window, sliding window, median or quantile holds: a device refuses more too
# (steps/make.py, steps/spec_errors.py), so a size that would take gigabytes is refused before
# anything is deployed.
from sensormesh.device.steps.spec_errors import MAX_VALUES

NOTHING = object()      # "no default": the parameter is required or optional-and-omitted

# One cpu = one ESP32 core running MicroPython ~ 10,000 trivial step calls per second.
CPU_UNITS_PER_S = 10000.0

# A source with rate 0 ("as fast as the reader takes them") is estimated at this rate.
FAST_RATE_HZ = 1000.0

# Heap a step object costs on a device before any buffers (closures, dict of params, the
# chain link). Measured ballpark on the MicroPython unix port, halved for 32-bit ESP32.
STEP_MEMORY = 600

# Heap a shipped function costs per byte of source once compiled (bytecode + names).
CODE_MEMORY_PER_BYTE = 2

# Default value size when nothing better is known (a float as JSON plus a comma).
DEFAULT_VALUE_BYTES = 8

# A representative value per sensor kind (docs/architecture.md, "Sensors"): used to estimate
# JSON bytes per value and to check `field` keys and numeric aggregates before deployment.
SENSOR_SAMPLES = {
    "temperature": 23.4567,
    "hall": -123,
    "poti": {"raw": 32768, "fraction": 0.50001},
    "gyro": {"accel": [0.0123, -0.9812, 0.0345], "gyro": [1.2512, -0.5034, 0.0211], "temp": 24.312},
    "dht11": {"temperature": 23.0, "humidity": 41.0},
    "ultrasonic": 123.45,
    "co2": 612,
    "touch": False,
    "touchpad": 412,
    "rotary": 17,
    "counter": 123456,
    "clock": 1234567890,
}

# Native sample rates (Hz) per kind, the sensors' RATE_HZ.
SENSOR_RATES = {
    "temperature": 10, "hall": 100, "poti": 100, "gyro": 100, "dht11": 1, "ultrasonic": 20,
    "co2": 1, "touch": 50, "touchpad": 50, "rotary": 100, "counter": 1000, "clock": 1000,
}

# CPU units one read costs. DHT11 bit-bangs for about 20 ms, HC-SR04 waits for its echo,
# the MPU-6050 reads 14 bytes over I2C; the rest are a register or an ADC read.
SENSOR_READ_COST = {"dht11": 200.0, "ultrasonic": 20.0, "gyro": 5.0}

AGGREGATES = ("mean", "min", "max", "sum", "count", "list")
NUMERIC_AGGREGATES = ("mean", "min", "max", "sum")

_FN_REF = re.compile(r"^([A-Za-z_][A-Za-z0-9_.]*|.+\.py):[A-Za-z_][A-Za-z0-9_]*$")


def json_bytes(value):
    """Bytes `value` takes inside a JSON data array (its text plus the separating comma)."""
    return _json_len(value) + 1


def _json_len(value):
    """Length of `value`'s compact JSON text; a Repeated inside it is counted, not written out."""
    repeated = []

    def stand_in(o):
        if isinstance(o, Repeated):
            repeated.append(o)
            return 0            # written as "0": one character, replaced below by the real length
        raise TypeError("Object of type %s is not JSON serializable" % type(o).__name__)

    n = len(json.dumps(value, separators=(",", ":"), default=stand_in))
    return n - len(repeated) + sum(r.json_len() for r in repeated)


class Repeated:
    """A sample value that is a list of `n` times `item` (a list window's output), kept without
    building the list: a window of a million values (or a window of windows) is estimated with
    a few multiplications, not by writing out its JSON."""

    __slots__ = ("item", "n", "_len")

    def __init__(self, item, n):
        self.item = item
        self.n = n
        self._len = None

    def json_len(self):
        """Length of the list's JSON text: [item,item,...]."""
        if self._len is None:
            self._len = 2 + self.n * _json_len(self.item) + max(0, self.n - 1)
        return self._len

    def __getitem__(self, i):
        if not -self.n <= i < self.n:
            raise IndexError("list index out of range")
        return self.item

    def __repr__(self):
        return "Repeated(%r, %d)" % (self.item, self.n)


def ram_bytes(value_bytes):
    """Rough heap cost of holding one value whose JSON form is `value_bytes` long."""
    return 16 + 2 * value_bytes


def dig(value, key):
    """Apply a `field` key (int index, dict key or dotted path "accel.0") to a value.

    Returns (found, result). Used on sample values, so it never raises."""
    if isinstance(key, list):
        parts = key
    else:
        parts = [key] if isinstance(key, int) else str(key).split(".")
    for part in parts:
        if isinstance(value, dict):
            if part not in value and str(part) not in value:
                return False, None
            value = value[part] if part in value else value[str(part)]
        elif isinstance(value, (list, tuple, Repeated)):
            try:
                i = int(part)
                value = value[i]
            except (ValueError, IndexError):
                return False, None
        else:
            return False, None
    return True, value


def _is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def describe_value(v):
    if isinstance(v, dict):
        return "dicts (keys: %s)" % ", ".join(sorted(map(str, v)))
    if isinstance(v, (list, tuple, Repeated)):
        return "lists of %d" % (v.n if isinstance(v, Repeated) else len(v))
    if isinstance(v, bool):
        return "booleans"
    if _is_number(v):
        return "numbers"
    return type(v).__name__


class Param:
    """One step parameter: its device-side name, kind, default and limits."""

    def __init__(self, name, kind, required=False, default=NOTHING, choices=(), minimum=None,
                 above=None, maximum=None, doc="", hint=False):
        self.name = name            # the device-side name, e.g. "time-frame"
        self.kind = kind            # number | int | str | bool | choice | key | fn | columns
        self.required = required
        self.default = default      # NOTHING: omitted from the assignment when not given
        self.choices = choices
        self.minimum = minimum      # value >= minimum
        self.above = above          # value > above
        self.maximum = maximum      # value <= maximum
        self.doc = doc
        self.hint = hint            # a placement hint: used by the controller, never sent

    def check(self, value):
        """None if `value` is acceptable, else a message saying what is wrong."""
        k = self.kind
        if k in ("number", "int"):
            if k == "int" and not (isinstance(value, int) and not isinstance(value, bool)) and not (
                    isinstance(value, float) and value.is_integer()):     # 1000.0, 1e3: whole numbers
                return "must be an integer, not %s" % _show(value)
            if not _is_number(value) or (isinstance(value, float) and not math.isfinite(value)):
                return "must be a number, not %s" % _show(value)
            if self.minimum is not None and value < self.minimum:
                return "must be >= %s, not %s" % (self.minimum, value)
            if self.above is not None and value <= self.above:
                return "must be > %s, not %s" % (self.above, value)
            if self.maximum is not None and value > self.maximum:
                return "must be <= %s, not %s" % (self.maximum, value)
        elif k == "str":
            if not isinstance(value, str) or not value:
                return "must be a non-empty string, not %s" % _show(value)
        elif k == "bool":
            if not isinstance(value, bool):
                return "must be true or false, not %s" % _show(value)
        elif k == "choice":
            # by type too: true is not the choice 1, nor 1.0 the choice 1 (qos: 0|1|2)
            if not any(value == c and type(value) is type(c) for c in self.choices):
                return "must be one of %s, not %s" % ("|".join(str(c) for c in self.choices), _show(value))
        elif k == "key":
            parts = value if isinstance(value, list) else [value]
            if not parts or any(isinstance(v, bool) or not isinstance(v, (str, int)) or v == "" for v in parts):
                return ("must be a dict key, a list index, a dotted path like \"accel.0\" or a list of "
                        "keys, not %s" % _show(value))
        elif k == "fn":
            if not isinstance(value, str) or not _FN_REF.match(value):
                return "must name code as \"module:name\" or \"path/to/file.py:name\", not %s" % _show(value)
        elif k == "points":
            return _points_problem(value)
        elif k == "json":
            try:
                json.dumps(value, allow_nan=False)
            except (TypeError, ValueError):
                return "must be a JSON value (number, string, list, object, null), not %s" % _show(value)
        elif k == "units":
            if not isinstance(value, dict) or not all(
                    isinstance(c, str) and c and isinstance(u, str) for c, u in value.items()):
                return "must map column names to unit symbols, not %s" % _show(value)
        elif k in ("topic", "topic-filter"):
            from sensormesh.device.steps.mqtt import topic_problem
            why = topic_problem(value, k == "topic-filter") or _placeholder_problem(value)
            if why:
                return "%r %s" % (value, why)
        elif k == "tls":
            return _tls_problem(value)
        elif k == "measures":
            if not isinstance(value, dict) or not all(
                    k2 in ("quantity", "unit") and isinstance(v, str) and v for k2, v in value.items()):
                return ("must be an object with a quantity and a unit as text, such as "
                        "{quantity: temperature, unit: \"°C\"}, not %s" % _show(value))
        elif k == "discovery":
            if isinstance(value, bool):
                return None
            from sensormesh.device.steps.mqtt import topic_problem
            if not isinstance(value, str) or not value:
                return ("must be true, false or a topic prefix such as \"homeassistant\", not %s"
                        % _show(value))
            why = topic_problem(value, False)
            if not why and (value.startswith("/") or value.endswith("/") or "//" in value):
                why = "has an empty level; write the prefix without leading or trailing '/'"
            if not why and ("{" in value or "}" in value):
                why = "cannot hold placeholders: the discovery prefix is used as written"
            if why:
                return "prefix %r %s" % (value, why)
        elif k == "broker":
            host, sep, port = value.rpartition(":") if isinstance(value, str) else ("", "", "")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                return "must be \"HOST:PORT\", not %s" % _show(value)
        elif k == "columns":
            if not isinstance(value, list) or not value or not all(isinstance(c, str) and c for c in value):
                return "must be a non-empty list of column names, not %s" % (
                    "an empty list" if value == [] else _show(value))
            seen = set()
            for c in value:
                if c in seen:
                    return "column %r is given twice; each column once" % c
                seen.add(c)
        return None


# The placeholders an MQTT topic may hold: the device a step runs on and the step's id.
TOPIC_PLACEHOLDERS = ("device", "step")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")

# The keys of an MQTT step's `tls` object (docs/integrations.md).
TLS_KEYS = ("ca", "cert", "key", "insecure")


def _placeholder_problem(topic):
    """None if every {...} in `topic` is a known placeholder, else what is wrong."""
    unknown = [n for n in _PLACEHOLDER.findall(topic) if n not in TOPIC_PLACEHOLDERS]
    if unknown:
        return ("holds the unknown placeholder {%s}; a topic can use {device} (the device the step "
                "runs on) and {step} (the step's id)" % unknown[0])
    rest = _PLACEHOLDER.sub("", topic)
    if "{" in rest or "}" in rest:
        return "holds an unmatched '{' or '}'; placeholders are written {device} and {step}"
    return None


def _tls_problem(value):
    """None if `value` is a valid `tls` object ({} for TLS with the system's CAs)."""
    if not isinstance(value, dict):
        return ("must be an object with any of %s ({} for TLS with the system's CAs), not %s"
                % (", ".join(TLS_KEYS), _show(value)))
    for k in value:
        if k not in TLS_KEYS:
            import difflib
            close = difflib.get_close_matches(str(k), TLS_KEYS, n=1)
            return "unknown key %r%s; tls takes %s" % (
                k, " (did you mean %r?)" % close[0] if close else "", ", ".join(TLS_KEYS))
    for k in ("ca", "cert", "key"):
        if k in value and (not isinstance(value[k], str) or not value[k]):
            return "%s must be a file path on the device, not %s" % (k, _show(value[k]))
    if "insecure" in value and not isinstance(value["insecure"], bool):
        return "insecure must be true or false, not %s" % _show(value["insecure"])
    if "key" in value and "cert" not in value:
        return "key needs cert: a client key is used with its certificate"
    return None


def _points_problem(value):
    """None if `value` is a list of [raw, true] pairs a finite line can be fitted through."""
    if not isinstance(value, list) or len(value) < 2:
        return "must be two or more [raw, true] number pairs, not %s" % (
            "a list of %d" % len(value) if isinstance(value, list) else _show(value))
    for i, pt in enumerate(value):
        if not (isinstance(pt, list) and len(pt) == 2 and all(
                _is_number(v) and math.isfinite(v) for v in pt)):
            return "point %d of %d must be a [raw, true] pair of finite numbers, not %s" % (
                i + 1, len(value), json.dumps(pt) if _jsonable(pt) else _show(pt))
    if len({pt[0] for pt in value}) < 2:
        return "needs at least two different raw values to fit a line (all points have raw %s)" % value[0][0]
    from sensormesh.device.steps.filters import fit_line
    try:
        k, b = fit_line(value)
    except (ValueError, OverflowError, ZeroDivisionError):
        k = b = math.nan        # the raw values differ by too little for floating point
    if not (math.isfinite(k) and math.isfinite(b)):
        return ("the line through these points is not finite (slope %r, offset %r): raw values this "
                "close together, or numbers this large, give no usable calibration" % (k, b))
    return None


def _jsonable(v):
    try:
        json.dumps(v, allow_nan=False)
        return True
    except (TypeError, ValueError):
        return False


def _show(v):
    if isinstance(v, str):
        return repr(v)
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    return "a %s" % type(v).__name__


class Flow:
    """What leaves a step: values per second, JSON bytes per value, a representative value."""

    __slots__ = ("rate", "bytes", "sample")

    def __init__(self, rate, nbytes, sample=None):
        self.rate = float(rate)
        self.bytes = float(nbytes)
        self.sample = sample

    @property
    def traffic(self):
        """Bytes per second this flow puts on a pipe."""
        return self.rate * self.bytes

    def __repr__(self):
        return "Flow(rate=%.3g/s, bytes=%.3g)" % (self.rate, self.bytes)


def flow_of_sample(rate, sample):
    return Flow(rate, json_bytes(sample) if sample is not None else DEFAULT_VALUE_BYTES, sample)


class Cost:
    """What a step costs where it runs: CPU units per second and bytes of heap."""

    __slots__ = ("cpu", "memory")

    def __init__(self, cpu, memory):
        self.cpu = float(cpu)
        self.memory = float(memory)

    def __repr__(self):
        return "Cost(cpu=%.3g/s, memory=%d)" % (self.cpu, self.memory)


# Hints every user step accepts: they refine the controller's estimates, nothing is sent.
COMMON_HINTS = (
    Param("bytes", "number", above=0, hint=True, doc="JSON bytes per output value (overrides the estimate)"),
    Param("cpu", "number", minimum=0, hint=True, doc="CPU units per input value (overrides the estimate)"),
    Param("memory", "number", minimum=0, hint=True, doc="heap bytes the step keeps (overrides the estimate)"),
    Param("batch", "int", minimum=0, hint=True,
          doc="time-frame (ms) of pipes carrying this step's output to other devices"),
    Param("buffer", "int", minimum=1, hint=True,
          doc="replay buffer (values kept until acknowledged) of pipes carrying this step's output; "
              "default 100000 on CPython, 1000 on MicroPython"),
    Param("spool", "int", minimum=0, hint=True,
          doc="bytes of disk (flash on a board) a pipe carrying this step's output may fill while its "
              "receiver cannot take values and the replay buffer is full; 0 = off (default)"),
)

SELECTIVITY = Param("selectivity", "number", above=0, maximum=1, hint=True,
                    doc="fraction of input values that produce an output (estimate)")


class StepType:
    """A step type: arity, parameters, and its rate/cost estimates. Subclasses refine."""

    name = None
    min_inputs = 1
    max_inputs = 1          # None = any number
    outputs = 1             # 0 for sinks
    user = True             # False: runtime-only, inserted by the controller
    cpu_per_value = 1.0     # CPU units per input value
    interpreters = None     # the interpreters a step of this type can run on (None: all)
    interpreter_reason = ""
    default_selectivity = None
    doc = ""
    params = ()

    def __init__(self):
        own = list(self.params)
        if self.default_selectivity is not None:
            own.append(SELECTIVITY)
        if self.user:
            own.extend(COMMON_HINTS)
        self.param_map = {p.name: p for p in own}

    # -- validation --------------------------------------------------------------------

    def arity_text(self):
        lo, hi = self.min_inputs, self.max_inputs
        if hi is None:
            return "at least %d input%s" % (lo, "" if lo == 1 else "s")
        if lo == hi:
            return "%d input%s" % (lo, "" if lo == 1 else "s")
        return "%d to %d inputs" % (lo, hi)

    def check_arity(self, n):
        return n >= self.min_inputs and (self.max_inputs is None or n <= self.max_inputs)

    def check_params(self, params, n_inputs):
        """[(key, message)] for every problem in `params` (already canonical names)."""
        problems = []
        for key, value in params.items():
            p = self.param_map.get(key)
            if p is None:
                problems.append((key, unknown_param_message(key, self)))
                continue
            msg = p.check(value)
            if msg:
                problems.append((key, msg))
            elif p.kind == "int" and isinstance(value, float):
                params[key] = int(value)        # devices get the whole number as an integer
        for p in self.param_map.values():
            if p.required and p.name not in params:
                problems.append((p.name, "is required (%s)" % p.doc if p.doc else "is required"))
        if not problems:
            problems.extend(self.check_rules(params, n_inputs))
        return problems

    def check_rules(self, params, n_inputs):
        """Rules that involve several parameters or the number of inputs."""
        return []

    def split(self, params, n_inputs=None):
        """(device params with defaults filled in, placement hints)."""
        device, hints = {}, {}
        for p in self.param_map.values():
            if p.name in params:
                (hints if p.hint else device)[p.name] = params[p.name]
            elif not p.hint and p.default is not NOTHING:
                device[p.name] = p.default
        if self.default_selectivity is not None:
            hints.setdefault("selectivity", self.default_selectivity)
        return device, hints

    # -- estimates ---------------------------------------------------------------------

    def flow(self, params, hints, ins, ctx=None):
        """The output Flow given the input flows (list, port order)."""
        f = ins[0]
        sel = hints.get("selectivity", 1.0)
        return Flow(f.rate * sel, f.bytes, f.sample)

    def check_values(self, params, ins):
        """[(key, message)] about what the inputs carry, when a representative value is known."""
        return []

    def buffer_memory(self, params, ins, out):
        return 0.0

    def cost(self, params, hints, ins, out):
        cpu_per = hints.get("cpu", self.cpu_per_value)
        rate_in = sum(f.rate for f in ins) if ins else out.rate
        mem = hints.get("memory")
        if mem is None:
            mem = STEP_MEMORY + self.buffer_memory(params, ins, out)
        return Cost(cpu_per * rate_in, mem)


# What every step takes besides its parameters (a pipeline file's keys; in Python, on= and
# requires=): a misspelling of one of them is suggested too.
STEP_KEYS = ("type", "input", "inputs", "on", "requires")


def unknown_param_message(key, stype):
    import difflib
    names = sorted(stype.param_map)
    keys = [k for k in STEP_KEYS if stype.max_inputs != 0 or not k.startswith("input")]
    close = difflib.get_close_matches(key, names + keys, n=1)
    tail = " (did you mean %r?)" % close[0] if close else ""
    if not names:
        return "unknown parameter: %s takes no parameters" % stype.name
    return "unknown parameter for %s%s; known: %s" % (stype.name, tail, ", ".join(names))


def _apply_bytes_hint(flow, hints):
    if "bytes" in hints:
        flow.bytes = float(hints["bytes"])
    return flow


# -- sources -------------------------------------------------------------------------------

class Source(StepType):
    name = "source"
    min_inputs = max_inputs = 0
    doc = "reads a sensor of the device it runs on"
    params = (
        Param("sensor", "str", required=True, doc="a sensor kind or a configured sensor name"),
        Param("rate", "number", minimum=0, doc="samples per second (default: the sensor's; 0 = as fast as read)"),
        Param("count", "int", minimum=0, doc="stop after this many values (tests, demos; 0 = never)"),
    )

    def flow(self, params, hints, ins, ctx=None):
        spec = (ctx or {}).get("sensor") or {}
        kind = spec.get("kind", params.get("sensor"))
        rate = params.get("rate", spec.get("rate"))
        if rate is None:
            rate = SENSOR_RATES.get(kind, 10)
        if not rate:
            rate = FAST_RATE_HZ
        return _apply_bytes_hint(flow_of_sample(rate, SENSOR_SAMPLES.get(kind)), hints)

    def cost(self, params, hints, ins, out, ctx=None):
        kind = params.get("sensor")
        per = hints.get("cpu", SENSOR_READ_COST.get(kind, 1.0))
        return Cost(per * out.rate, hints.get("memory", STEP_MEMORY))


# -- one-input transforms ------------------------------------------------------------------

class MapStep(StepType):
    name = "map"
    cpu_per_value = 2.0
    doc = "applies a shipped user function to every value"
    params = (Param("fn", "fn", required=True, doc="shipped code, \"module:name\""),)

    def flow(self, params, hints, ins, ctx=None):
        # The function's result is unknown: assume it is about the size of its input.
        f = ins[0]
        return _apply_bytes_hint(Flow(f.rate, f.bytes, None), hints)


class FilterStep(StepType):
    name = "filter"
    cpu_per_value = 2.0
    default_selectivity = 0.5
    doc = "keeps the values for which a shipped user function returns true"
    params = (Param("fn", "fn", required=True, doc="shipped code, \"module:name\""),)

    def flow(self, params, hints, ins, ctx=None):
        f = ins[0]
        return _apply_bytes_hint(Flow(f.rate * hints.get("selectivity", 0.5), f.bytes, f.sample), hints)


class FieldStep(StepType):
    name = "field"
    cpu_per_value = 0.5
    doc = "picks one part of a dict or list value"
    params = (Param("key", "key", required=True, doc="dict key, list index or dotted path \"accel.0\""),)

    def check_values(self, params, ins):
        s = ins[0].sample
        if s is None or "key" not in params:
            return []
        found, _ = dig(s, params["key"])
        if not found:
            return [("key", "%r is not in the input's values, which are %s"
                     % (params["key"], describe_value(s)))]
        return []

    def flow(self, params, hints, ins, ctx=None):
        f = ins[0]
        if f.sample is not None:
            found, v = dig(f.sample, params["key"])
            if found:
                return _apply_bytes_hint(flow_of_sample(f.rate, v), hints)
        return _apply_bytes_hint(Flow(f.rate, min(f.bytes, DEFAULT_VALUE_BYTES), None), hints)


# A list window's sample value is a real list up to this many values, else a Repeated.
SAMPLE_LIST_MAX = 100


def _aggregate_sample(agg, sample, n):
    if agg == "count":
        return int(max(1, n))
    if agg == "list":
        n = max(1, int(round(n)))
        return [sample] * n if n <= SAMPLE_LIST_MAX else Repeated(sample, n)
    if agg == "mean":
        return 23.4567 if sample is None or _is_number(sample) else None
    return sample if _is_number(sample) else None


def _check_agg(agg, ins):
    s = ins[0].sample
    if agg in NUMERIC_AGGREGATES and s is not None and not _is_number(s):
        return [("agg", "%s needs numbers but the input values are %s; pick one with a field step first"
                 % (agg, describe_value(s)))]
    return []


class WindowStep(StepType):
    name = "window"
    doc = ("tumbling window: emits the aggregate when `values` values are gathered or `time-frame` ms "
           "have passed since the window's first value")
    params = (
        Param("time-frame", "int", minimum=0, default=0, doc="ms from the window's first value, 0 = none"),
        Param("values", "int", minimum=0, maximum=MAX_VALUES, default=0,
              doc="values per window, 0 = none"),
        Param("agg", "choice", choices=AGGREGATES, default="mean", doc="aggregate"),
    )

    def check_rules(self, params, n_inputs):
        if not params.get("time-frame", 0) and not params.get("values", 0):
            return [("time-frame", "window needs time-frame > 0 or values > 0 (both are 0)")]
        return []

    def check_values(self, params, ins):
        return _check_agg(params.get("agg", "mean"), ins)

    def per_window(self, params, rate):
        """(windows per second, values per window)."""
        n, t = params.get("values", 0), params.get("time-frame", 0)
        if rate <= 0:
            return 0.0, 1.0
        periods = []
        if n:
            periods.append(n / rate)
        if t:
            periods.append(t / 1000.0)
        period = max(min(periods), 1.0 / rate)   # a window holds at least one value
        return 1.0 / period, rate * period

    def flow(self, params, hints, ins, ctx=None):
        f = ins[0]
        wr, n = self.per_window(params, f.rate)
        agg = params.get("agg", "mean")
        sample = _aggregate_sample(agg, f.sample, n)
        if sample is not None:
            out = flow_of_sample(wr, sample)
        elif agg == "list":
            out = Flow(wr, 2 + n * f.bytes)
        else:
            out = Flow(wr, DEFAULT_VALUE_BYTES)
        return _apply_bytes_hint(out, hints)

    def buffer_memory(self, params, ins, out):
        if params.get("agg", "mean") != "list":
            return 64.0
        _, n = self.per_window(params, ins[0].rate)
        return n * ram_bytes(ins[0].bytes)


class SlidingStep(StepType):
    name = "sliding"
    doc = "sliding window over the last `size` values, emitted every `slide` values once full"
    params = (
        Param("size", "int", required=True, minimum=1, maximum=MAX_VALUES, doc="values in the window"),
        Param("slide", "int", minimum=1, default=1, doc="emit every this many values"),
        Param("agg", "choice", choices=AGGREGATES, default="mean", doc="aggregate"),
    )

    def check_rules(self, params, n_inputs):
        if params.get("slide", 1) > params["size"]:
            return [("slide", "must be <= size (%s), or values would be skipped; use window for that"
                     % params["size"])]
        return []

    def check_values(self, params, ins):
        return _check_agg(params.get("agg", "mean"), ins)

    def flow(self, params, hints, ins, ctx=None):
        f = ins[0]
        size, slide = params["size"], params.get("slide", 1)
        agg = params.get("agg", "mean")
        sample = _aggregate_sample(agg, f.sample, size)
        rate = f.rate / slide
        if sample is not None:
            out = flow_of_sample(rate, sample)
        elif agg == "list":
            out = Flow(rate, 2 + size * f.bytes)
        else:
            out = Flow(rate, DEFAULT_VALUE_BYTES)
        return _apply_bytes_hint(out, hints)

    def cost(self, params, hints, ins, out):
        c = StepType.cost(self, params, hints, ins, out)
        if "cpu" not in hints:
            # every emission aggregates over the whole buffer
            c.cpu += out.rate * 0.05 * params["size"]
        return c

    def buffer_memory(self, params, ins, out):
        return params["size"] * ram_bytes(ins[0].bytes)


class ThrottleStep(StepType):
    name = "throttle"
    cpu_per_value = 0.3
    doc = "at most one value per `interval` ms: the first of each interval or the latest"
    params = (
        Param("interval", "int", required=True, above=0, doc="ms"),
        Param("mode", "choice", choices=("first", "latest"), default="latest", doc="which value of an interval"),
    )

    def flow(self, params, hints, ins, ctx=None):
        f = ins[0]
        return _apply_bytes_hint(Flow(min(f.rate, 1000.0 / params["interval"]), f.bytes, f.sample), hints)


class ChangesStep(StepType):
    name = "changes"
    cpu_per_value = 0.5
    default_selectivity = 0.5
    doc = "emits a value only when it differs from the last one emitted"
    params = (Param("tolerance", "number", minimum=0, default=0,
                    doc="numbers closer than this to the last emitted count as unchanged"),)


class AlarmStep(StepType):
    name = "alarm"
    max_inputs = 2
    default_selectivity = 0.01
    doc = ("threshold with hysteresis; emits {\"alarm\": bool, \"value\": v, \"threshold\": t} when the "
           "state changes")
    params = (
        Param("high", "number", doc="alarm on above this (one input)"),
        Param("low", "number", doc="alarm off below this (one input; default: high)"),
        Param("hysteresis", "number", minimum=0, doc="band below a dynamic threshold (two inputs; default 0)"),
        Param("key", "key", doc="compare this part of the value (dict key / index / dotted path)"),
    )

    def check_rules(self, params, n_inputs):
        out = []
        if n_inputs == 2:
            for k in ("high", "low"):
                if k in params:
                    out.append((k, "is for a fixed threshold; with a threshold input (port 1) use hysteresis"))
        else:
            if "high" not in params:
                out.append(("high", "is required (with one input the threshold is fixed: high, low)"))
            if "hysteresis" in params:
                out.append(("hysteresis", "needs a threshold input on port 1; with one input use high and low"))
            if "high" in params and "low" in params and params["low"] > params["high"]:
                out.append(("low", "must be <= high (%s), not %s" % (params["high"], params["low"])))
        return out

    def split(self, params, n_inputs=None):
        device, hints = StepType.split(self, params, n_inputs)
        if n_inputs == 2:
            device.setdefault("hysteresis", 0)
        elif "high" in device:
            device.setdefault("low", device["high"])
        return device, hints

    def check_values(self, params, ins):
        s = ins[0].sample
        if s is None:
            return []
        if "key" in params:
            found, v = dig(s, params["key"])
            if not found:
                return [("key", "%r is not in the input's values, which are %s" % (params["key"], describe_value(s)))]
            s = v
        if not _is_number(s):
            return [("key" if "key" in params else "inputs",
                     "alarm compares numbers but the input values are %s%s"
                     % (describe_value(s), "" if "key" in params else "; set key to pick one"))]
        return []

    def flow(self, params, hints, ins, ctx=None):
        f = ins[0]
        v = f.sample
        if v is not None and "key" in params:
            v = dig(v, params["key"])[1]
        sample = {"alarm": True, "value": v if v is not None else 23.4567, "threshold": 30.0}
        rate = f.rate * hints.get("selectivity", self.default_selectivity)
        return _apply_bytes_hint(flow_of_sample(rate, sample), hints)

    def buffer_memory(self, params, ins, out):
        return 64.0


# -- joins ---------------------------------------------------------------------------------

# -- filters (sensormesh/device/steps/filters.py) ------------------------------------------

class EmaStep(StepType):
    name = "ema"
    cpu_per_value = 0.4
    doc = "exponential moving average: s = alpha * x + (1 - alpha) * s"
    params = (Param("alpha", "number", required=True, above=0, maximum=1,
                    doc="weight of the newest value, in (0, 1]"),)


class DeltaStep(StepType):
    name = "delta"
    cpu_per_value = 0.4
    default_selectivity = 0.5
    doc = "passes a number only when it moved by at least `delta` (or `percent` %) from the last one passed"
    params = (
        Param("delta", "number", minimum=0, doc="absolute change needed"),
        Param("percent", "number", minimum=0, doc="relative change needed, in % of the last value passed"),
    )

    def check_rules(self, params, n_inputs):
        if ("delta" in params) == ("percent" in params):
            return [("delta", "give exactly one of delta (absolute) or percent (relative)")]
        return []


class CalibrateStep(StepType):
    name = "calibrate"
    cpu_per_value = 0.3
    doc = "linear calibration: the least-squares line through [raw, true] points"
    params = (Param("points", "points", required=True, doc="[[raw, true], ...], two or more"),)


class ClampStep(StepType):
    name = "clamp"
    cpu_per_value = 0.3
    doc = "limits numbers to [min, max]: moves them to the bound, or drops them (mode: drop)"
    params = (
        Param("min", "number", doc="lower bound"),
        Param("max", "number", doc="upper bound"),
        Param("mode", "choice", choices=("clamp", "drop"), default="clamp",
              doc="clamp: move to the bound; drop: leave out"),
    )

    def check_rules(self, params, n_inputs):
        if "min" not in params and "max" not in params:
            return [("min", "clamp needs min, max or both")]
        if "min" in params and "max" in params and params["min"] > params["max"]:
            return [("min", "must be <= max (%s), not %s" % (params["max"], params["min"]))]
        return []


class QuantileStep(StepType):
    name = "quantile"
    doc = "the q-quantile of the last `size` numbers, every `slide` numbers"
    params = (
        Param("size", "int", required=True, above=0, maximum=MAX_VALUES, doc="values in the window"),
        Param("slide", "int", above=0, default=1, doc="values between emissions"),
        Param("q", "number", required=True, minimum=0, maximum=1, doc="0.5 is the median"),
    )

    def flow(self, params, hints, ins, ctx=None):
        f = ins[0]
        return _apply_bytes_hint(Flow(f.rate / params.get("slide", 1), DEFAULT_VALUE_BYTES), hints)

    def cost(self, params, hints, ins, out):
        c = StepType.cost(self, params, hints, ins, out)
        if "cpu" not in hints:
            c.cpu += out.rate * 0.1 * params["size"]   # a sort of the window per emission
        return c

    def buffer_memory(self, params, ins, out):
        return 2 * params["size"] * ram_bytes(DEFAULT_VALUE_BYTES)


class MedianStep(QuantileStep):
    name = "median"
    doc = "the median of the last `size` numbers, every `slide` numbers"
    params = (
        Param("size", "int", required=True, above=0, maximum=MAX_VALUES, doc="values in the window"),
        Param("slide", "int", above=0, default=1, doc="values between emissions"),
    )


class HeartbeatStep(StepType):
    name = "heartbeat"
    cpu_per_value = 0.3
    doc = "passes every value and re-emits the last one every `interval` ms while nothing new came"
    params = (Param("interval", "int", required=True, above=0, doc="ms"),)

    def flow(self, params, hints, ins, ctx=None):
        f = ins[0]
        return _apply_bytes_hint(Flow(max(f.rate, 1000.0 / params["interval"]), f.bytes, f.sample), hints)


class DebounceStep(StepType):
    name = "debounce"
    cpu_per_value = 0.3
    default_selectivity = 0.1
    doc = "emits a value once it has held for `time` ms and differs from the last one emitted"
    params = (Param("time", "int", required=True, above=0, doc="ms a value must hold"),)


class TimeoutStep(StepType):
    name = "timeout"
    cpu_per_value = 0.3
    doc = "passes every value; emits `marker` once when no value came for `time` ms"
    params = (
        Param("time", "int", required=True, above=0, doc="ms of silence"),
        Param("marker", "json", doc="what to emit (default {\"timeout\": time})"),
    )


class ZipStep(StepType):
    name = "zip"
    min_inputs = max_inputs = 2
    doc = "pairs values in arrival order: [a, b]"
    params = (Param("max-pending", "int", minimum=1, default=1000,
                    doc="values kept waiting for a partner per input"),)

    def flow(self, params, hints, ins, ctx=None):
        a, b = ins
        sample = [a.sample, b.sample] if a.sample is not None and b.sample is not None else None
        out = flow_of_sample(min(a.rate, b.rate), sample) if sample is not None else \
            Flow(min(a.rate, b.rate), a.bytes + b.bytes + 2)
        return _apply_bytes_hint(out, hints)

    def buffer_memory(self, params, ins, out):
        a, b = ins
        # Equal rates keep the queues short; unequal rates fill the faster side's queue
        # up to max-pending and keep it there.
        hi, lo = max(a.rate, b.rate), min(a.rate, b.rate)
        pending = 4 if hi <= lo * 1.01 else params.get("max-pending", 1000)
        return pending * ram_bytes(max(a.bytes, b.bytes))


class CombineLatestStep(StepType):
    name = "combine_latest"
    min_inputs = max_inputs = 2
    doc = "[latest a, latest b] on every update once both inputs have had a value"

    def flow(self, params, hints, ins, ctx=None):
        a, b = ins
        sample = [a.sample, b.sample] if a.sample is not None and b.sample is not None else None
        out = flow_of_sample(a.rate + b.rate, sample) if sample is not None else \
            Flow(a.rate + b.rate, a.bytes + b.bytes + 2)
        return _apply_bytes_hint(out, hints)

    def buffer_memory(self, params, ins, out):
        return sum(ram_bytes(f.bytes) for f in ins)


class MergeStep(StepType):
    name = "merge"
    max_inputs = None
    cpu_per_value = 0.3
    doc = "passes on the values of all its inputs as they come"

    def flow(self, params, hints, ins, ctx=None):
        rate = sum(f.rate for f in ins)
        nbytes = sum(f.rate * f.bytes for f in ins) / rate if rate else max(f.bytes for f in ins)
        samples = [f.sample for f in ins]
        kinds = [list if isinstance(s, Repeated) else type(s) for s in samples]
        same = samples[0] if all(s is not None and k is kinds[0] for s, k in zip(samples, kinds)) else None
        return _apply_bytes_hint(Flow(rate, nbytes, same), hints)


# -- sinks -------------------------------------------------------------------------------

class SinkStep(StepType):
    outputs = 0
    cpu_per_value = 3.0

    def flow(self, params, hints, ins, ctx=None):
        return Flow(0, 0)


class PrintSink(SinkStep):
    name = "print"
    doc = "prints every value on the device's standard output as a JSON line"
    params = (Param("label", "str", doc="print {\"label\": label, \"value\": value} instead of the value"),)


class CsvSink(SinkStep):
    name = "csv"
    doc = "appends every value as a CSV row to a file on the device"
    params = (
        Param("path", "str", required=True, doc="file path on the device"),
        Param("columns", "columns", doc="dict keys to write, in order (default: all, sorted)"),
        Param("units", "units", doc="{column: unit symbol} for the header (default: from the sensors)"),
    )

    def buffer_memory(self, params, ins, out):
        return 512.0

    def check_values(self, params, ins):
        """Columns the input's values do not have (their cells would always be empty), and units
        for columns the file does not have, when a representative value is known."""
        import difflib
        s = ins[0].sample if ins else None
        problems = []
        cols = params.get("columns")
        if isinstance(s, dict):
            keys = sorted(map(str, s))
            for c in cols or ():
                if c not in keys:
                    close = difflib.get_close_matches(c, keys, n=1)
                    problems.append(("columns", "unknown column %r%s: the input's values have the keys %s"
                                     % (c, " (did you mean %r?)" % close[0] if close else "", ", ".join(keys))))
                    break
            written = cols or keys
        elif s is not None and not isinstance(s, (list, tuple, Repeated)):
            written = cols or ["value"]
        else:
            written = cols
        units = params.get("units")
        if isinstance(units, dict) and written is not None:
            for c in units:
                if c not in written:
                    problems.append(("units", "%r is not a column of this file (its columns: %s)"
                                     % (c, ", ".join(written))))
                    break
        return problems


class _MqttStep(StepType):
    interpreters = frozenset({"cpython"})
    interpreter_reason = "MQTT steps run on CPython devices (paho-mqtt)"
    CONNECTION = (
        Param("broker", "broker", required=True, doc="HOST:PORT of the MQTT broker"),
        Param("qos", "choice", choices=(0, 1, 2), default=0, doc="MQTT quality of service"),
        Param("client-id", "str", doc="default sensormesh-<device>-<step>"),
        Param("username", "str", doc="user name for the broker"),
        Param("password-env", "str", doc="name of an environment variable on the device holding the password"),
        Param("tls", "tls", doc="{ca, cert, key, insecure}: TLS to the broker ({} for the system CAs)"),
    )

    def check_rules(self, params, n_inputs):
        if "password-env" in params and "username" not in params:
            return [("password-env", "needs username: the broker takes a password only with a user name")]
        return []


class MqttOutSink(_MqttStep):
    name = "mqtt_out"
    outputs = 0
    cpu_per_value = 3.0
    doc = "publishes every value (or every time frame as one JSON array) to an MQTT topic"
    params = _MqttStep.CONNECTION + (
        Param("topic", "topic", required=True, doc="topic to publish to; {step} and {device} are filled in"),
        Param("retain", "bool", doc="the broker keeps the last message for new subscribers"),
        Param("time-frame", "int", minimum=0, doc="ms per message (0: one message per value)"),
        Param("offline-buffer", "int", minimum=0, doc="values kept while the broker is away (default 10000)"),
        Param("discovery", "discovery", doc="publish Home Assistant discovery config (true: under "
              "homeassistant/sensor/..., or a topic prefix of your own)"),
        Param("measures", "measures", doc="{quantity, unit} for discovery (default: from the sensors)"),
    )

    def flow(self, params, hints, ins, ctx=None):
        return Flow(0, 0)

    def buffer_memory(self, params, ins, out):
        return 4096.0


class MqttInSource(_MqttStep):
    name = "mqtt_in"
    min_inputs = max_inputs = 0
    doc = "values published to an MQTT topic filter (JSON payloads, or text)"
    params = _MqttStep.CONNECTION + (
        Param("topic", "topic-filter", required=True,
              doc="topic filter to subscribe to (+ and # allowed; {step} and {device} are filled in)"),
        Param("rate", "number", minimum=0, hint=True, doc="expected messages per second (planning)"),
    )

    def flow(self, params, hints, ins, ctx=None):
        return _apply_bytes_hint(Flow(params.get("rate", hints.get("rate", 1.0)), DEFAULT_VALUE_BYTES), hints)

    def cost(self, params, hints, ins, out):
        return Cost(hints.get("cpu", 3.0) * out.rate, hints.get("memory", STEP_MEMORY + 4096))


class CallbackSink(SinkStep):
    name = "callback"
    cpu_per_value = 2.0
    doc = "delivers every value to a function of the user's program on the controller"
    params = (Param("name", "str", doc="the callback's name in the user's program (default: the step id)"),)


# -- runtime-only steps (the controller inserts these) --------------------------------------

# A relay on a gateway is not a type of its own: it is the pipe_in of one hop feeding the
# pipe_out of the next (the device runtime's pipes.py; routing.py and placement.py emit it).

class PipeOut(StepType):
    name = "pipe_out"
    outputs = 0
    user = False
    doc = "sends its input to another device, batched per time frame"
    params = (
        Param("edge", "str", required=True, doc="pipe (hop) id, the same on both ends"),
        Param("to", "str", doc="receiver to dial: host:port or unix:PATH (absent: the receiver dials)"),
        Param("time-frame", "int", minimum=0, default=0, doc="ms of values per frame, 0 = every value"),
        Param("buffer", "int", minimum=1, doc="values kept until acknowledged (default: fitted to the device)"),
        Param("acks", "bool", default=True, doc="false: no acknowledgements and no replay (at most once)"),
        Param("spool", "int", minimum=0, default=0, doc="bytes of disk/flash for values beyond the buffer"),
    )


class PipeIn(StepType):
    name = "pipe_in"
    min_inputs = max_inputs = 0
    user = False
    doc = "the values of a pipe from another device"
    params = (
        Param("edge", "str", required=True, doc="pipe (hop) id"),
        Param("from", "str", doc="sender to dial: host:port or unix:PATH (absent: the sender dials)"),
    )


CATALOG = {}
for _cls in (Source, MapStep, FilterStep, FieldStep, WindowStep, SlidingStep, ZipStep,
             CombineLatestStep, MergeStep, ThrottleStep, ChangesStep, AlarmStep,
             EmaStep, DeltaStep, CalibrateStep, ClampStep, MedianStep, QuantileStep,
             HeartbeatStep, DebounceStep, TimeoutStep, MqttOutSink, MqttInSource,
             PrintSink, CsvSink, CallbackSink, PipeOut, PipeIn):
    CATALOG[_cls.name] = _cls()
del _cls

USER_TYPES = tuple(n for n, t in CATALOG.items() if t.user)
SINK_TYPES = tuple(n for n, t in CATALOG.items() if t.user and t.outputs == 0)
RUNTIME_TYPES = tuple(n for n, t in CATALOG.items() if not t.user)


def get(name):
    """The StepType called `name`, or None."""
    return CATALOG.get(name) if isinstance(name, str) else None


def canonical_param(name):
    """Python keyword spelling -> device spelling: time_frame -> time-frame."""
    return name.replace("_", "-")
