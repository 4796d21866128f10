"""What a stream's values measure: the quantity and unit of each step's output.

A sensor driver declares what it measures (MEASURES in sensormesh/device/sensors/; the
simulated and the board driver of a kind declare the same, a test checks it). From the
sources, units follow the graph through the steps that keep them (windows, filters, rate
limits) and are lost where a step makes something new (map, zip, alarm, calibrate: the
controller cannot know what a user's function or calibration produces). CSV sinks write the
units into their header, and the dashboard and MQTT discovery show them.

A unit is {"quantity": q, "unit": symbol-or-None} for plain values, {"fields": {name: unit}}
for objects, or None when unknown."""
import importlib

from sensormesh.device.sensors.registry import SIM_KINDS, measures

# Steps whose output measures what their (first) input measures.
KEEPS = {"filter", "throttle", "changes", "ema", "delta", "clamp", "median", "quantile",
         "heartbeat", "debounce", "timeout", "sliding", "window",
         "print", "csv", "callback", "mqtt_out"}   # a sink's unit: what it receives
# Aggregates of a window that keep the unit (a sum of temperatures is not a temperature).
KEEPING_AGGS = {"mean", "min", "max", "list"}
COUNT = {"quantity": "count", "unit": None}

_cache = {}


def of_sensor(kind):
    """The unit a sensor kind declares (read from its simulated driver), or None."""
    if kind in _cache:
        return _cache[kind]
    unit = None
    if kind in SIM_KINDS:
        mod = importlib.import_module("sensormesh.device.sensors.sim." + kind)
        cls = getattr(mod, kind[0].upper() + kind[1:])
        unit = measures(cls) or None
    _cache[kind] = unit
    return unit


def of_step(stype, params, inputs):
    """The unit of a step's output from its type, device parameters and its inputs' units."""
    first = inputs[0] if inputs else None
    if stype == "field":
        return _field(first, params.get("key"))
    if stype in ("window", "sliding"):
        agg = params.get("agg", "mean")
        if agg == "count":
            return COUNT
        return first if agg in KEEPING_AGGS else None
    if stype == "merge":
        return first if all(u == first for u in inputs) else None
    if stype in KEEPS:
        return first
    return None


def _field(unit, key):
    if not unit or "fields" not in unit or key is None:
        return None
    part = key[0] if isinstance(key, list) else str(key).split(".")[0]
    return unit["fields"].get(part)


def label(unit):
    """"temperature [°C]" or "count" for a plain unit; None for objects and unknowns."""
    if not unit or "quantity" not in unit:
        return None
    sym = unit.get("unit")
    return "%s [%s]" % (unit["quantity"], sym) if sym else unit["quantity"]


def csv_units(unit):
    """The csv sink's `units` parameter for values of `unit`: {column: symbol}."""
    if not unit:
        return None
    if "fields" in unit:
        out = {k: u["unit"] for k, u in unit["fields"].items() if u.get("unit")}
        return out or None
    return {"value": unit["unit"]} if unit.get("unit") else None
