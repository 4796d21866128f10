# The step catalogue: the device-side contract (names, arity, parameters) and the estimates.
import time

import pytest
from click.testing import CliRunner

from sensormesh.controller import catalog
from sensormesh.controller.catalog import Flow
from sensormesh.controller.plan_cli import plan

PLAN_DEVICES = """\
devices:
  esp: {interpreter: micropython, sensors: [temperature, gyro], address: "10.0.0.5:7001"}
  pc: {interpreter: cpython, address: "10.0.0.6:7001"}
steps:
  t: {type: source, sensor: temperature}
  g: {type: source, sensor: gyro}
"""

# The contract with the device (steps.py, assignment.py, pipes.py; docs/steps.md):
# type -> (min inputs, max inputs, device parameters).
CONTRACT = {
    "source": (0, 0, {"sensor", "rate", "count"}),
    "map": (1, 1, {"fn"}),
    "filter": (1, 1, {"fn"}),
    "field": (1, 1, {"key"}),
    "window": (1, 1, {"time-frame", "values", "agg"}),
    "sliding": (1, 1, {"size", "slide", "agg"}),
    "zip": (2, 2, {"max-pending"}),
    "combine_latest": (2, 2, set()),
    "merge": (1, None, set()),
    "throttle": (1, 1, {"interval", "mode"}),
    "changes": (1, 1, {"tolerance"}),
    "alarm": (1, 2, {"high", "low", "hysteresis", "key"}),
    "print": (1, 1, {"label"}),
    "csv": (1, 1, {"path", "columns", "units"}),
    "callback": (1, 1, {"name"}),
    "ema": (1, 1, {"alpha"}),
    "delta": (1, 1, {"delta", "percent"}),
    "calibrate": (1, 1, {"points"}),
    "clamp": (1, 1, {"min", "max", "mode"}),
    "median": (1, 1, {"size", "slide"}),
    "quantile": (1, 1, {"size", "slide", "q"}),
    "heartbeat": (1, 1, {"interval"}),
    "debounce": (1, 1, {"time"}),
    "timeout": (1, 1, {"time", "marker"}),
    "mqtt_out": (1, 1, {"broker", "topic", "qos", "retain", "client-id", "username", "password-env", "tls",
                        "time-frame", "offline-buffer", "discovery", "measures"}),
    "mqtt_in": (0, 0, {"broker", "topic", "qos", "client-id", "username", "password-env", "tls"}),
    "pipe_out": (1, 1, {"edge", "to", "time-frame", "buffer", "acks", "spool"}),
    "pipe_in": (0, 0, {"edge", "from"}),
}


def test_catalog_matches_the_device_contract():
    assert set(catalog.CATALOG) == set(CONTRACT)
    for name, (lo, hi, params) in CONTRACT.items():
        t = catalog.get(name)
        assert (t.min_inputs, t.max_inputs) == (lo, hi), name
        assert {p.name for p in t.param_map.values() if not p.hint} == params, name
    assert set(catalog.RUNTIME_TYPES) == {"pipe_out", "pipe_in"}
    assert set(catalog.SINK_TYPES) == {"print", "csv", "callback", "mqtt_out"}


def test_catalog_parameters_are_the_device_steps_parameters():
    from sensormesh.device.steps import kinds
    for kind in kinds.types():
        cls = kinds.step_class(kind)
        assert set(cls.ARGS) == CONTRACT[kind][2], kind


def test_defaults_are_filled_for_the_device():
    params, hints = catalog.get("window").split({"values": 10})
    assert params == {"time-frame": 0, "values": 10, "agg": "mean"}
    assert catalog.get("sliding").split({"size": 5})[0] == {"size": 5, "slide": 1, "agg": "mean"}
    assert catalog.get("zip").split({})[0] == {"max-pending": 1000}
    assert catalog.get("changes").split({})[0] == {"tolerance": 0}
    assert catalog.get("filter").split({"fn": "m:f"})[1] == {"selectivity": 0.5}
    assert catalog.get("alarm").split({"high": 30}, 1)[0] == {"high": 30, "low": 30}
    assert catalog.get("alarm").split({}, 2)[0] == {"hysteresis": 0}
    p, h = catalog.get("map").split({"fn": "m:f", "bytes": 40, "batch": 50})
    assert p == {"fn": "m:f"} and h == {"bytes": 40, "batch": 50}       # hints are never sent


@pytest.mark.parametrize("type_, params, n, key, text", [
    ("window", {}, 1, "time-frame", "time-frame > 0 or values > 0"),
    ("window", {"values": 5, "agg": "median"}, 1, "agg", "mean|min|max|sum|count|list"),
    ("window", {"values": -1}, 1, "values", ">= 0"),
    ("window", {"values": 2.5}, 1, "values", "integer"),
    ("window", {"vals": 3}, 1, "vals", "did you mean 'values'"),
    ("sliding", {"size": 3, "slide": 4}, 1, "slide", "<= size"),
    ("throttle", {"interval": 0}, 1, "interval", "> 0"),
    ("throttle", {"interval": 10, "mode": "last"}, 1, "mode", "first|latest"),
    ("alarm", {"low": 3}, 1, "high", "required"),
    ("alarm", {"high": 3, "low": 5}, 1, "low", "<= high"),
    ("alarm", {"high": 3}, 2, "high", "threshold input"),
    ("alarm", {"high": 3, "hysteresis": 1}, 1, "hysteresis", "threshold input on port 1"),
    ("map", {}, 1, "fn", "required"),
    ("map", {"fn": "no colon"}, 1, "fn", "module:name"),
    ("field", {"key": True}, 1, "key", "dict key"),
    ("csv", {"path": "x.csv", "columns": "a,b"}, 1, "columns", "list"),
    ("filter", {"fn": "m:f", "selectivity": 2}, 1, "selectivity", "<= 1"),
    ("print", {"colour": 1}, 1, "colour", "unknown parameter for print"),
])
def test_parameter_problems_name_the_key(type_, params, n, key, text):
    probs = catalog.get(type_).check_params(params, n)
    assert any(k == key and text in m for k, m in probs), probs


def test_window_rates():
    w = catalog.get("window")
    f = Flow(100, 8, 1.5)
    assert w.flow({"values": 10, "time-frame": 0, "agg": "mean"}, {}, [f]).rate == pytest.approx(10)
    assert w.flow({"values": 0, "time-frame": 500, "agg": "mean"}, {}, [f]).rate == pytest.approx(2)
    # both: whichever closes the window first
    assert w.flow({"values": 1000, "time-frame": 250, "agg": "mean"}, {}, [f]).rate == pytest.approx(4)
    assert w.flow({"values": 5, "time-frame": 250, "agg": "mean"}, {}, [f]).rate == pytest.approx(20)
    # slower input than the time frame: one value per window
    assert w.flow({"values": 0, "time-frame": 1000, "agg": "mean"}, {}, [Flow(0.5, 8)]).rate == pytest.approx(0.5)
    lst = w.flow({"values": 10, "time-frame": 0, "agg": "list"}, {}, [Flow(100, 8, 1.25)])
    assert lst.bytes == pytest.approx(catalog.json_bytes([1.25] * 10))


def test_other_rates():
    f = Flow(100, 10, 2.0)
    assert catalog.get("filter").flow({}, {"selectivity": 0.1}, [f]).rate == pytest.approx(10)
    assert catalog.get("sliding").flow({"size": 10, "slide": 5}, {}, [f]).rate == pytest.approx(20)
    assert catalog.get("throttle").flow({"interval": 100}, {}, [f]).rate == pytest.approx(10)
    assert catalog.get("zip").flow({}, {}, [f, Flow(30, 4, 1)]).rate == pytest.approx(30)
    assert catalog.get("combine_latest").flow({}, {}, [f, Flow(30, 4, 1)]).rate == pytest.approx(130)
    m = catalog.get("merge").flow({}, {}, [Flow(10, 10), Flow(30, 20)])
    assert m.rate == 40 and m.bytes == pytest.approx(17.5)
    assert catalog.get("map").flow({}, {"bytes": 99}, [f]).bytes == 99


def test_field_on_sensor_samples():
    gyro = Flow(100, 100, catalog.SENSOR_SAMPLES["gyro"])
    out = catalog.get("field").flow({"key": "accel.0"}, {}, [gyro])
    assert out.sample == 0.0123 and out.bytes < gyro.bytes
    probs = catalog.get("field").check_values({"key": "acel"}, [gyro])
    assert probs and "accel" in probs[0][1]


def test_costs_scale_with_rate():
    m = catalog.get("map")
    c = m.cost({}, {}, [Flow(100, 8)], Flow(100, 8))
    assert c.cpu == pytest.approx(200) and c.memory >= catalog.STEP_MEMORY
    c = m.cost({}, {"cpu": 40}, [Flow(100, 8)], Flow(100, 8))
    assert c.cpu == pytest.approx(4000)
    s = catalog.get("sliding").cost({"size": 500, "slide": 1}, {}, [Flow(100, 100)], Flow(100, 8))
    assert s.memory > 96000          # a 500-value window of gyro dicts does not fit an ESP32


def test_list_window_sizes_are_counted_not_built():
    w, s = catalog.get("window"), catalog.get("sliding")
    gyro = catalog.SENSOR_SAMPLES["gyro"]
    # the same figures as the JSON of the real list, small or large
    for n in (1, 2, 100, 101, 1000):
        out = w.flow({"values": n, "time-frame": 0, "agg": "list"}, {}, [Flow(100, 8, 1.25)])
        assert out.bytes == catalog.json_bytes([1.25] * n)
        out = s.flow({"size": n, "slide": 1, "agg": "list"}, {}, [Flow(100, 8, gyro)])
        assert out.bytes == catalog.json_bytes([gyro] * n)
    inner = w.flow({"values": 150, "time-frame": 0, "agg": "list"}, {}, [Flow(100, 100, gyro)])
    outer = w.flow({"values": 120, "time-frame": 0, "agg": "list"}, {}, [inner])
    assert outer.bytes == catalog.json_bytes([[gyro] * 150] * 120)
    # a field of a large list window picks from it as from the real list
    field = catalog.get("field")
    assert field.flow({"key": "149.accel.0"}, {}, [inner]).sample == gyro["accel"][0]
    assert "lists of 150" in field.check_values({"key": "150"}, [inner])[0][1]
    # huge windows: arithmetic ("1.25," per value and the brackets), not a list of 10**14 values
    n = 99999999999999
    assert w.flow({"values": n, "time-frame": 0, "agg": "list"}, {}, [Flow(1e9, 8, 1.25)]).bytes == 5 * n + 2
    assert s.flow({"size": n, "agg": "list"}, {}, [Flow(10, 8, 1.25)]).bytes == 5 * n + 2


@pytest.mark.parametrize("step", [
    "w: {type: sliding, size: 1000000, agg: list, input: g}",
    "w: {type: sliding, size: 1000000, agg: list, input: t}",
])
def test_plan_of_a_huge_list_window_is_fast_and_says_it_fits_no_device(tmp_path, step):
    path = tmp_path / "big.yaml"
    path.write_text(PLAN_DEVICES + "  %s\nsinks:\n  p: {type: print, input: w}\n" % step)
    start = time.monotonic()
    r = CliRunner().invoke(plan, [str(path)])
    assert time.monotonic() - start < 5
    assert r.exit_code == 1 and not isinstance(r.exception, MemoryError), r.output
    assert "big.yaml:7:3: step 'w': needs" in r.output and "bytes, more than any device it can run on has" in r.output


@pytest.mark.parametrize("step, key", [
    ("w: {type: window, values: 99999999999999, agg: list, input: t}", "values"),
    ("w: {type: window, values: 1000001, agg: mean, input: t}", "values"),
    ("w: {type: sliding, size: 1000000000, input: t}", "size"),
    ("w: {type: median, size: 1000000000, input: t}", "size"),
    ("w: {type: quantile, size: 30000000, q: 0.9, input: t}", "size"),
])
def test_window_sizes_beyond_the_bound_are_refused_naming_step_and_parameter(tmp_path, step, key):
    # a size a device would allocate gigabytes for is refused when the pipeline is loaded,
    # naming the step and the parameter, before placement looks at any device
    path = tmp_path / "big.yaml"
    path.write_text(PLAN_DEVICES + "  %s\nsinks:\n  p: {type: print, input: w}\n" % step)
    r = CliRunner().invoke(plan, [str(path)])
    assert r.exit_code == 1, r.output
    assert "steps.w.%s: must be <= 1000000" % key in r.output, r.output
    assert catalog.MAX_VALUES == 1000000


def test_plan_of_nested_list_windows_is_fast(tmp_path):
    path = tmp_path / "nested.yaml"
    path.write_text(PLAN_DEVICES + "  w: {type: window, values: 1000, agg: list, input: g}\n"
                    "  w2: {type: window, values: 1000, agg: list, input: w}\nsinks:\n  p: {type: print, input: w2}\n")
    start = time.monotonic()
    r = CliRunner().invoke(plan, [str(path)])
    assert time.monotonic() - start < 5
    assert r.exit_code == 0, r.output
    assert "w2    window  pc" in r.output
