# Sensor units: every driver declares what it measures, the simulated and the board driver of
# a kind alike; a device's info reports it; the controller follows units through the steps
# that keep them and writes them into CSV headers.
import ast
import os
import textwrap

from sensormesh.controller import units
from sensormesh.controller.pipeline_file import load_model
from sensormesh.device import control, core
from sensormesh.device.sensors import registry

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DRIVERS = os.path.join(ROOT, "sensormesh", "device", "sensors")


def declared(path):
    """The MEASURES literal of the driver class in a module, read without importing it (board
    drivers import `machine`)."""
    tree = ast.parse(open(path, encoding="utf-8").read())
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "MEASURES" for t in node.targets):
            return ast.literal_eval(node.value)
    return None


def test_every_driver_declares_what_it_measures_and_board_matches_simulation():
    for kind in registry.SIM_KINDS:
        sim = declared(os.path.join(DRIVERS, "sim", kind + ".py"))
        assert sim is not None, "simulated %s declares no MEASURES" % kind
        board = os.path.join(DRIVERS, "esp32", kind + ".py")
        if os.path.exists(board):
            assert declared(board) == sim, kind


def test_info_reports_quantity_and_unit():
    dev = core.Device(name="u", sensor_specs=["temperature", "dht11", "counter"])
    try:
        info = control.info(dev)["sensors"]
    finally:
        dev.close()
    assert info["temperature"]["quantity"] == "temperature" and info["temperature"]["unit"] == "\u00b0C"
    assert info["dht11"]["fields"]["humidity"] == {"quantity": "humidity", "unit": "%"}
    assert info["counter"] == dict(info["counter"], quantity="count", unit=None)


def test_units_follow_the_graph_into_csv_headers(tmp_path):
    path = tmp_path / "u.yaml"
    path.write_text(textwrap.dedent("""\
        pipeline: units
        devices:
          pc: {interpreter: cpython, sensors: [temperature, dht11, ultrasonic], local: true}
        steps:
          t:    {type: source, sensor: temperature}
          avg:  {type: window, values: 10, agg: mean, input: t}
          n:    {type: window, values: 10, agg: count, input: t}
          d:    {type: source, sensor: dht11}
          hum:  {type: field, key: humidity, input: d}
          u:    {type: source, sensor: ultrasonic}
          cm:   {type: median, input: u, size: 5}
          f:    {type: map, fn: "builtins:abs", input: cm}
        sinks:
          a: {type: csv, path: a.csv, input: avg}
          b: {type: csv, path: b.csv, input: d}
          c: {type: csv, path: c.csv, input: hum}
          e: {type: csv, path: e.csv, input: f}
          g: {type: csv, path: g.csv, input: cm, units: {value: mm}}
        """))
    m = load_model(str(path))
    assert units.label(m.units["avg"]) == "temperature [\u00b0C]"
    assert m.units["n"] == units.COUNT
    assert units.label(m.units["hum"]) == "humidity [%]"
    assert m.units["f"] is None, "a user function makes something the controller cannot know"
    p = m.device_params
    assert p["a"]["units"] == {"value": "\u00b0C"}
    assert p["b"]["units"] == {"temperature": "\u00b0C", "humidity": "%"}
    assert p["c"]["units"] == {"value": "%"}
    assert "units" not in p["e"]
    assert p["g"]["units"] == {"value": "mm"}, "a unit given in the file wins"
