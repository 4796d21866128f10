# Building sensors from their specs: kinds, drivers, the command line's spec format, what each
# sensor measures. Needed at start (boot.py, core.Device) and for an info reply, not while
# sensors are read: a board running precompiled .mpy files forgets this module after use
# (compat.forget). The controller uses it too (units, pipeline file checks).
from sensormesh.device.sensors import SensorError

# kind -> default sample rate is the class's RATE_HZ; "rate" in a spec overrides it.
SIM_KINDS = ("temperature", "hall", "poti", "gyro", "dht11", "ultrasonic", "co2",
             "touch", "touchpad", "rotary", "counter", "clock")

# The original design calls the capacitive touch sensor both "touch" and "touchpad". "touchpad" is the
# ESP32's internal TouchPad (a raw reading that drops when touched); "touch" is an external
# module wired as a digital input (touched or not).

_DRIVER_PACKAGES = {
    "sim": "sensormesh.device.sensors.sim",
    "esp32": "sensormesh.device.sensors.esp32",
}


def _import(modname):
    mod = __import__(modname)
    for part in modname.split(".")[1:]:
        mod = getattr(mod, part)
    return mod


def parse_spec(text):
    """'kind', 'kind@RATE', 'name=kind@RATE' or 'csv:PATH' from the command line -> spec dict."""
    spec = {}
    name, sep, rest = text.partition("=")
    if not sep:
        name, rest = None, text
    if rest.startswith("csv:"):
        spec["kind"] = "csv"
        spec["driver"] = "csv"
        path, sep, rate = rest[4:].rpartition("@")
        if sep:
            try:
                spec["rate"] = float(rate)
            except ValueError:
                path = rest[4:]
        else:
            path = rest[4:]
        spec["path"] = path
        spec["name"] = name or "csv"
        return spec
    kind, sep, rate = rest.partition("@")
    spec["kind"] = kind
    spec["name"] = name or kind
    if sep:
        try:
            spec["rate"] = float(rate)
        except ValueError:
            raise SensorError("bad rate %r in sensor spec %r" % (rate, text))
    return spec


def make(spec):
    """Build a sensor object from a spec dict: {"name", "kind", "driver"?, ...params}."""
    if type(spec) is str:
        spec = parse_spec(spec)
    kind = spec.get("kind")
    if not kind:
        raise SensorError("sensor spec %r has no kind" % (spec,))
    driver = spec.get("driver", "sim")
    params = {}
    for k in spec:
        if k not in ("name", "kind", "driver", "rate"):
            params[k] = spec[k]
    if driver == "csv" or kind == "csv":
        from sensormesh.device.sensors import csvreplay
        try:
            return csvreplay.CsvReplay(**params)
        except (OSError, ValueError, TypeError) as e:   # a missing or unreadable file names itself
            raise SensorError("sensor %r: %s" % (spec.get("name") or kind, e))
    pkg = _DRIVER_PACKAGES.get(driver)
    if pkg is None:
        raise SensorError("unknown sensor driver %r (known: %s)" % (driver, ", ".join(sorted(_DRIVER_PACKAGES) + ["csv"])))
    if driver == "sim" and kind not in SIM_KINDS:
        raise SensorError("unknown simulated sensor %r (known: %s)" % (kind, ", ".join(SIM_KINDS)))
    modname = pkg + "." + kind
    try:
        mod = _import(modname)
    except ImportError as e:
        raise SensorError("no %s driver for sensor %r (%s)" % (driver, kind, e))
    cls = getattr(mod, kind[0].upper() + kind[1:], None)
    if cls is None:
        raise SensorError("driver module %s has no class %s" % (modname, kind[0].upper() + kind[1:]))
    try:
        return cls(**params)
    except TypeError as e:
        raise SensorError("bad parameters for %s sensor %r: %s" % (driver, kind, e))


def measures(sensor):
    """{"quantity", "unit"} of a sensor's values, or {"fields": {name: {...}}} for dicts."""
    m = getattr(sensor, "MEASURES", None)
    if type(m) is tuple:
        return {"quantity": m[0], "unit": m[1]}
    if type(m) is dict:
        out = {}
        for k in m:
            out[k] = {"quantity": m[k][0], "unit": m[k][1]}
        return {"fields": out}
    return {}


def rate_of(sensor, spec):
    """Samples per second to read this sensor at: the spec's "rate" or the class's RATE_HZ; a
    SensorError when the spec's is not a number of 0 or more (a negative one read once and
    stopped, NaN ended the stream that read it)."""
    r = spec.get("rate") if type(spec) is dict else None
    if r is None:
        return getattr(sensor, "RATE_HZ", 10)
    if type(r) not in (int, float) or r != r or r - r != 0 or r < 0:   # (r - r: not 0 for infinity)
        raise SensorError("sensor %r: rate must be a number of samples per second, 0 or more (0: as fast as "
                          "it is read), not %r" % (spec.get("name") or spec.get("kind"), r))
    return r


def add(dev, specs):
    """Build the sensors of `specs` (spec dicts or command-line strings; None: every simulated
    kind but counter and clock) into dev.sensors (name -> (sensor, rate Hz)) and dev.sensor_kinds."""
    if specs is None:
        specs = [k for k in SIM_KINDS if k not in ("counter", "clock")]
    for spec in specs:
        if type(spec) is str:
            spec = parse_spec(spec)
        obj = make(spec)
        try:
            rate = rate_of(obj, spec)
        except SensorError:
            if hasattr(obj, "close"):
                obj.close()
            raise
        name = spec.get("name") or spec["kind"]
        if name in dev.sensors:
            raise SensorError("sensor name %r is configured twice" % name)
        dev.sensors[name] = (obj, rate)
        dev.sensor_kinds[name] = spec.get("kind", name)
