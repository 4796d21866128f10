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
    if type(spec) is not dict:
        raise SensorError("a sensor spec is a \"KIND@HZ\" string or an object with a \"kind\", not %r" % (spec,))
    kind = spec.get("kind")
    if not kind:
        raise SensorError("sensor spec %r has no kind" % (spec,))
    name = spec.get("name") or kind
    if type(kind) is not str:
        raise SensorError("sensor %r: kind must be a string, not %r" % (name, kind))
    if type(name) is not str:
        raise SensorError("sensor %r: name must be a string" % (name,))
    driver = spec.get("driver", "sim")
    params = {}
    for k in spec:
        if k not in ("name", "kind", "driver", "rate"):
            params[k] = spec[k]
    if driver == "csv" or kind == "csv":
        if "path" not in params:
            raise SensorError("sensor %r: a CSV replay needs \"path\", the file to replay" % name)
        from sensormesh.device.sensors import csvreplay
        try:
            return csvreplay.CsvReplay(**params)
        except (OSError, ValueError, TypeError) as e:   # a missing or unreadable file names itself
            raise SensorError("sensor %r: %s" % (name, e))
    pkg = _DRIVER_PACKAGES.get(driver) if type(driver) is str else None
    if pkg is None:
        raise SensorError("sensor %r: unknown sensor driver %r (known: %s)"
                          % (name, driver, ", ".join(sorted(_DRIVER_PACKAGES) + ["csv"])))
    if driver == "sim":
        if kind not in SIM_KINDS:
            raise SensorError("unknown simulated sensor %r (known: %s)" % (kind, ", ".join(SIM_KINDS)))
        for k in ("seed", "start"):     # (a text seed made a string billions of characters long)
            v = params.get(k)
            if v is not None and type(v) is not int:
                raise SensorError("sensor %r: %s must be a whole number, not %r" % (name, k, v))
    modname = pkg + "." + kind
    try:
        mod = _import(modname)
    except (ImportError, AttributeError) as e:   # (the unix port's machine module has no Pin)
        raise SensorError("sensor %r: no %s driver for kind %r (%s: %s)%s"
                          % (name, driver, kind, type(e).__name__, e,
                             " (the esp32 drivers need a board's machine module: on a computer use \"sim\")"
                             if driver == "esp32" and ("machine" in str(e) or "Pin" in str(e)) else ""))
    cls = getattr(mod, kind[0].upper() + kind[1:], None)
    if cls is None:
        raise SensorError("driver module %s has no class %s" % (modname, kind[0].upper() + kind[1:]))
    try:
        return cls(**params)
    except TypeError as e:
        raise SensorError("sensor %r: bad parameters for the %s %s driver: %s" % (name, driver, kind, e))
    except (SensorError, ValueError) as e:      # a driver's refusal (no part on the bus, a bad range)
        raise type(e)("sensor %r: %s" % (name, e))
    except OSError as e:                        # the hardware's: not a listening address of the device
        raise SensorError("sensor %r: the %s %s driver failed to start: %s: %s"
                          % (name, driver, kind, type(e).__name__, e))


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
            raise SensorError("sensor name %r is configured twice (name each one: NAME=KIND or NAME=csv:PATH)" % name)
        dev.sensors[name] = (obj, rate)
        dev.sensor_kinds[name] = spec.get("kind", name)
