# The pipeline file: a good file gives the same model as the API; every bad file gets a
# PipelineFileError naming the file, the line, the key path and what is wrong.
import os
import textwrap
import time
import types

import pytest
from click.testing import CliRunner

from sensormesh.api import Pipeline, PipelineFileError
from sensormesh.controller import pipeline_file
from sensormesh.controller.pipeline_file import load_inventory, load_model
from sensormesh.controller.plan_cli import plan as plan_command

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLE = os.path.join(ROOT, "examples", "pipelines", "alarm.yaml")

DEVICES = """\
pipeline: t
devices:
  esp-1:
    interpreter: micropython
    sensors: [dht11, temperature]
    address: "10.0.0.1:7000"
  laptop: {interpreter: cpython, address: "127.0.0.1:7001", local: true}
"""


@pytest.fixture
def write(tmp_path):
    def write(body, name="p.yaml", devices=True):
        path = tmp_path / name
        path.write_text((DEVICES if devices else "") + textwrap.dedent(body))
        return str(path)
    return write


def error(path):
    with pytest.raises(PipelineFileError) as e:
        load_model(path)
    return e.value


def test_example_file_loads():
    m = load_model(EXAMPLE)
    assert m.name == "greenhouse"
    assert len(m.steps) == 15 and set(m.devices) == {"esp-1", "esp-2", "pi", "laptop"}
    assert m.steps["both"].inputs == ["inside", "outside"]
    assert m.steps["inside_f"].params["fn"] == "user_alarm_steps:fahrenheit"
    assert m.devices["pi"].memory == 500_000_000
    assert m.steps["alarms"].on == "laptop"          # `on:` is a key, not YAML 1.1's true


def test_file_and_api_give_the_same_graph(write, tmp_path):
    path = write("""\
        steps:
          t: {type: source, sensor: dht11}
          c: {type: field, key: temperature, input: t}
          w: {type: window, time_frame: 1000, agg: max, input: c}
        sinks:
          out: {type: print, input: w, on: laptop}
        """)
    fm = load_model(path)
    p = Pipeline("t")
    p.device("esp-1", interpreter="micropython", sensors=["dht11", "temperature"], address="10.0.0.1:7000")
    p.device("laptop", interpreter="cpython", address="127.0.0.1:7001", local=True)
    p.source("dht11", id="t").field("temperature", id="c").window(time_frame=1000, agg="max", id="w") \
        .print(id="out", on="laptop")
    am = p.model()
    assert fm.to_dict() == am.to_dict()
    assert fm.place("optimal").device_of == am.place("optimal").device_of


def test_yaml_syntax_error_has_line(write):
    e = error(write("""\
        steps:
          t: {type: source, sensor: dht11
        """))
    # the unclosed brace is on line 9; PyYAML notices it at the end of the file (line 10)
    assert "YAML syntax error" in str(e) and (e.line, e.column) == (9, 6) and e.filename.endswith("p.yaml")
    assert "the '{' here is not closed" in str(e) and "(noticed at line 10, column 1)" in str(e)


@pytest.mark.parametrize("body, line, path, text", [
    # unknown step type, with a suggestion
    ("""\
     steps:
       t: {type: source, sensor: dht11}
       w: {type: windw, values: 3, input: t}
     """, 10, "steps.w.type", "unknown step type 'windw' (did you mean 'window'?)"),
    # dangling input: the line of the input
    ("""\
     steps:
       t: {type: source, sensor: dht11}
       j:
         type: zip
         inputs:
           - t
           - tt
     """, 14, "steps.j.inputs.1", "input 'tt' does not exist"),
    # cycle
    ("""\
     steps:
       t: {type: source, sensor: temperature}
       a: {type: merge, inputs: [t, b]}
       b: {type: throttle, interval: 10, input: a}
     """, 10, "steps.a.inputs", "cycle: a -> b -> a"),
    # type mistake in a parameter: the line of the value
    ("""\
     steps:
       t: {type: source, sensor: temperature}
       w:
         type: window
         input: t
         values: ten
     """, 13, "steps.w.values", "must be an integer, not 'ten'"),
    # alias spelling is reported as the user wrote it
    ("""\
     steps:
       t: {type: source, sensor: temperature}
       w: {type: window, time_frame: -5, input: t}
     """, 10, "steps.w.time_frame", "must be >= 0"),
    # unknown device in on:
    ("""\
     steps:
       t: {type: source, sensor: temperature}
     sinks:
       out: {type: print, input: t, on: laptp}
     """, 11, "sinks.out.on", "unknown device 'laptp' (did you mean 'laptop'?)"),
    # sensor not on the pinned device
    ("""\
     steps:
       t: {type: source, sensor: gyro, on: esp-1}
     """, 9, "steps.t.sensor", "device 'esp-1' has no sensor 'gyro' (its sensors: dht11, temperature)"),
    # sensor on no device
    ("""\
     steps:
       t: {type: source, sensor: co2}
     """, 9, "steps.t.sensor", "no device has sensor 'co2'"),
    # missing type
    ("""\
     steps:
       t: {sensor: co2}
     """, 9, "steps.t", "needs a type"),
    # a sink under steps:
    ("""\
     steps:
       t: {type: source, sensor: dht11}
       o: {type: print, input: t}
     """, 10, "steps.o.type", "print is a sink; put it under sinks:"),
    # input and inputs
    ("""\
     steps:
       t: {type: source, sensor: dht11}
       o: {type: merge, input: t, inputs: [t]}
     """, 10, "steps.o.inputs", "not both"),
    # duplicate key
    ("""\
     steps:
       t: {type: source, sensor: dht11}
       t: {type: source, sensor: temperature}
     """, 10, "steps.t", "duplicate key 't' (first on line 9)"),
    # unknown top-level key
    ("""\
     step:
       t: {type: source, sensor: dht11}
     """, 8, "step", "unknown top-level key 'step' (did you mean 'steps'?)"),
    # runtime-only type
    ("""\
     steps:
       t: {type: source, sensor: dht11}
       o: {type: pipe_out, edge: x, to: "a:1", input: t}
     """, 10, "steps.o.type", "inserted by the controller"),
    # bad user code reference
    ("""\
     steps:
       t: {type: source, sensor: temperature}
       f: {type: map, fn: "nothere.py:f", input: t}
     """, 10, "steps.f.fn", "nothere.py not found"),
    # a number outside a choice of numbers (MQTT's qos), and true for the choice 1
    ("""\
     steps:
       t: {type: source, sensor: temperature}
     sinks:
       m: {type: mqtt_out, broker: "127.0.0.1:1883", topic: t,
           qos: 3, input: t}
     """, 12, "sinks.m.qos", "must be one of 0|1|2, not 3"),
    ("""\
     steps:
       t: {type: source, sensor: temperature}
     sinks:
       m: {type: mqtt_out, broker: "127.0.0.1:1883", topic: t,
           qos: true, input: t}
     """, 12, "sinks.m.qos", "must be one of 0|1|2, not true"),
    # MQTT: unknown keys in tls, a tls that is not an object, a bad discovery prefix, unknown
    # placeholders in topics, a password without a user, one client id for two steps
    ("""\
     steps:
       t: {type: source, sensor: temperature}
     sinks:
       m: {type: mqtt_out, broker: "127.0.0.1:1883", topic: t,
           tls: {ca: /etc/ca.pem, insecur: true}, input: t}
     """, 12, "sinks.m.tls", "unknown key 'insecur' (did you mean 'insecure'?); tls takes ca, cert, key, insecure"),
    ("""\
     steps:
       t: {type: source, sensor: temperature}
     sinks:
       m: {type: mqtt_out, broker: "127.0.0.1:1883", topic: t,
           tls: true, input: t}
     """, 12, "sinks.m.tls", "must be an object with any of ca, cert, key, insecure"),
    ("""\
     steps:
       t: {type: source, sensor: temperature}
     sinks:
       m: {type: mqtt_out, broker: "127.0.0.1:1883", topic: t,
           discovery: "ha/#", input: t}
     """, 12, "sinks.m.discovery", "prefix 'ha/#' contains the wildcard '#'"),
    ("""\
     steps:
       t: {type: source, sensor: temperature}
     sinks:
       m: {type: mqtt_out, broker: "127.0.0.1:1883", topic: t,
           discovery: 1, input: t}
     """, 12, "sinks.m.discovery", "must be true, false or a topic prefix"),
    ("""\
     steps:
       t: {type: source, sensor: temperature}
     sinks:
       m: {type: mqtt_out, broker: "127.0.0.1:1883", input: t,
           topic: "lab/{device}/{stepid}"}
     """, 12, "sinks.m.topic", "unknown placeholder {stepid}"),
    ("""\
     steps:
       i: {type: mqtt_in, broker: "127.0.0.1:1883",
           topic: "lab/{dev}/+"}
     """, 10, "steps.i.topic", "unknown placeholder {dev}"),
    ("""\
     steps:
       t: {type: source, sensor: temperature}
     sinks:
       m: {type: mqtt_out, broker: "127.0.0.1:1883", topic: t,
           password-env: MQTT_PW, input: t}
     """, 12, "sinks.m.password-env", "needs username"),
    ("""\
     steps:
       i: {type: mqtt_in, broker: "127.0.0.1:1883", topic: a, client-id: lab}
     sinks:
       m: {type: mqtt_out, broker: "127.0.0.1:1883", topic: t,
           input: i, client-id: lab}
     """, 12, "sinks.m.client-id", "client id 'lab' is also the one of step 'i'"),
    ("""\
     steps:
       t: {type: source, sensor: temperature}
     sinks:
       m: {type: mqtt_out, broker: "127.0.0.1:1883", topic: t,
           discovery: true, measures: 5, input: t}
     """, 12, "sinks.m.measures", "must be an object with a quantity and a unit as text"),
    ("""\
     steps:
       i: {type: mqtt_in, broker: "127.0.0.1:1883", topic: a}
     sinks:
       m: {type: mqtt_out, broker: "127.0.0.1:1883", topic: t,
           input: i, client-id: sensormesh-laptop-i}
     """, 12, "sinks.m.client-id", "client id 'sensormesh-laptop-i' is the one step 'i' gets by default"),
    # csv columns: none, one twice, one the values do not have; a unit for no column
    ("""\
     steps:
       t: {type: source, sensor: dht11}
     sinks:
       f: {type: csv, path: f.csv, input: t, columns: []}
     """, 11, "sinks.f.columns", "must be a non-empty list of column names, not an empty list"),
    ("""\
     steps:
       t: {type: source, sensor: dht11}
     sinks:
       f: {type: csv, path: f.csv, input: t, columns: [humidity, temperature, humidity]}
     """, 11, "sinks.f.columns", "column 'humidity' is given twice"),
    ("""\
     steps:
       t: {type: source, sensor: dht11}
     sinks:
       f: {type: csv, path: f.csv, input: t, columns: [humidity, temprature]}
     """, 11, "sinks.f.columns", "unknown column 'temprature' (did you mean 'temperature'?): the input's "
                                 "values have the keys humidity, temperature"),
    ("""\
     steps:
       t: {type: source, sensor: dht11}
     sinks:
       f: {type: csv, path: f.csv, input: t, columns: [humidity], units: {temperature: C}}
     """, 11, "sinks.f.units", "'temperature' is not a column of this file (its columns: humidity)"),
    ("""\
     steps:
       t: {type: source, sensor: dht11}
     sinks:
       f: {type: csv, path: out.csv, input: t}
       g: {type: csv, path: out.csv, input: t}
     """, 12, "sinks.g.path", "path 'out.csv' is also the file of step 'f'"),
    # one parameter in both spellings: neither silently wins
    ("""\
     steps:
       t: {type: source, sensor: temperature}
       w: {type: window, time_frame: 1000, agg: mean,
           time-frame: 500, input: t}
     """, 11, "steps.w.time-frame", "given twice, as time_frame and as time-frame (one parameter); keep one"),
])
def test_bad_files_name_line_and_key(write, body, line, path, text):
    e = error(write(body))
    p = e.problems[0]
    assert text in p.message, str(e)
    assert ".".join(map(str, p.path)) == path, str(e)
    assert p.line == line, str(e)
    assert str(e).startswith(e.filename + ":%d:" % line)


def test_a_misspelt_input_key_is_named_with_the_input_it_leaves_missing(write):
    e = error(write("""\
     steps:
       t: {type: source, sensor: temperature}
       w: {type: window, values: 5,
           inptu: t}
     sinks:
       o: {type: print, input: w, onn: laptop}
     """))
    got = {(p.line, ".".join(map(str, p.path))): p.message for p in e.problems}
    assert got[(10, "steps.w.inputs")] == "window takes 1 input, got 0"
    assert got[(11, "steps.w.inptu")].startswith("unknown parameter for window (did you mean 'input'?)")
    assert got[(13, "sinks.o.onn")].startswith("unknown parameter for print (did you mean 'on'?)")


def test_numbers_with_an_exponent_are_numbers_and_whole_floats_are_integers(write):
    """1e3 and 5E-1 are numbers, as in JSON and YAML 1.2 (YAML 1.1 reads them as text), and an
    integer parameter takes a whole number written as a float; devices get an integer."""
    model = load_model(write("""\
     devices:
       pc: {sensors: [temperature], memory: 5e8, local: true}
     steps:
       t: {type: source, sensor: temperature, rate: 2e1}
       w: {type: window, time-frame: 1e3, values: 50.0, input: t}
       a: {type: alarm, high: 2.5e1, low: 5E-1, input: w}
     sinks:
       o: {type: print, input: a}
     """, devices=False))
    assert model.devices["pc"].memory == 5e8
    assert model.steps["t"].params["rate"] == 20.0
    w = model.steps["w"].params
    assert (w["time-frame"], w["values"]) == (1000, 50) and type(w["time-frame"]) is type(w["values"]) is int
    assert (model.steps["a"].params["high"], model.steps["a"].params["low"]) == (25.0, 0.5)
    e = error(write("""\
     steps:
       t: {type: source, sensor: temperature}
       w: {type: window, time-frame: 1.5e2, values: 2.5, input: t}
     """))
    assert [p.message for p in e.problems] == ["must be an integer, not 2.5"], str(e)


def test_a_tab_in_the_file_is_named_as_such(write):
    e = error(write("steps:\n\tt: {type: source, sensor: dht11}\n"))
    assert e.problems[0].message == "YAML syntax error: a tab here: use spaces (YAML does not take tabs for indentation)"
    assert (e.line, e.column) == (9, 1)


def test_lists_where_names_belong_are_problems_named_at_their_line_not_crashes(write):
    """A list written where a name belongs: interpreter, type, an input, requires."""
    head = "devices:\n  pc: {sensors: [temperature], local: true}\nsteps:\n  t: {type: source, sensor: temperature}\n"
    cases = [
        (head.replace("{sensors", "{interpreter: [cpython], sensors"), "devices.pc.interpreter", 2,
         "must be cpython or micropython, not ['cpython']"),
        (head + "  m: {type: [map], fn: \"math:sqrt\", input: t}\n", "steps.m.type", 5,
         "a step type is a name (one of source,"),
        (head + "sinks:\n  o: {type: print, inputs: [t, [t]]}\n", "sinks.o.inputs", 6,
         "inputs must be a list of step ids, not ['t', ['t']]"),
        (head + "sinks:\n  o: {type: print, input: t, requires: [cpython]}\n", "sinks.o.requires", 6,
         "must be cpython or micropython, not ['cpython']"),
    ]
    for text, path, line, words in cases:
        e = error(write(text, devices=False))
        p = e.problems[0]
        assert (".".join(map(str, p.path)), p.line) == (path, line) and p.message.startswith(words), str(e)


def test_api_steps_pinned_with_a_list_are_refused_by_name():
    from sensormesh.api import ModelError
    p = Pipeline("pins")
    p.device("pc", sensors=["temperature"], local=True)
    p.source("temperature", on=["pc"]).print(requires=["cpython"])
    with pytest.raises(ModelError) as e:
        p.model()
    text = str(e.value)
    assert "step 'temperature', on: unknown device ['pc']; devices: pc" in text
    assert "step 'print', requires: must be cpython or micropython, not ['cpython']" in text


def test_device_errors_point_into_devices(write):
    e = error(write("""\
        devices:
          esp:
            interpreter: micropython
            memory: lots
            sensors: [dht11, thermo]
          pc: {interpreter: cpython, adress: "1.2.3.4:5"}
        steps:
          t: {type: source, sensor: dht11}
        """, devices=False))
    msgs = {".".join(map(str, p.path)): (p.line, p.message) for p in e.problems}
    assert msgs["devices.pc.adress"][0] == 6 and "did you mean 'address'" in msgs["devices.pc.adress"][1]
    assert len(e.problems) == 1            # the unknown key stops before model checks
    e = error(write("""\
        devices:
          esp:
            interpreter: micropython
            memory: lots
            sensors: [dht11, thermo]
        steps:
          t: {type: source, sensor: dht11}
        """, devices=False))
    msgs = {".".join(map(str, p.path)): (p.line, p.message) for p in e.problems}
    assert msgs["devices.esp.memory"] == (4, "must be a positive number, not 'lots'")
    assert msgs["devices.esp.sensors.1"][0] == 5 and "unknown sensor kind 'thermo'" in msgs["devices.esp.sensors.1"][1]
    assert msgs["devices.esp.address"][0] == 2 and "required" in msgs["devices.esp.address"][1]


def test_a_device_capacity_or_sensor_rate_that_is_not_a_finite_number_is_refused(write):
    # YAML's .nan and .inf are floats: they used to pass the "positive number" checks and give
    # a plan of "nan%" CPU and "nan B/s" of traffic
    e = error(write("""\
        devices:
          esp:
            interpreter: micropython
            cpu: .nan
            memory: .inf
            address: "10.0.0.1:7000"
            sensors: ["a=temperature@inf", {name: b, kind: hall, rate: .nan}]
        steps:
          t: {type: source, sensor: dht11}
        """, devices=False))
    msgs = {".".join(map(str, p.path)): (p.line, p.message) for p in e.problems}
    assert msgs["devices.esp.cpu"] == (4, "must be a positive number, not nan")
    assert msgs["devices.esp.memory"] == (5, "must be a finite positive number, not inf")
    assert msgs["devices.esp.sensors.0"] == (7, "rate must be a finite number >= 0, not inf")
    assert msgs["devices.esp.sensors.1"] == (7, "rate must be a finite number >= 0, not nan")


def test_a_device_called_controller_is_refused_at_its_name_also_without_a_network(write):
    # without a network: section it used to load, and `up` ended in an AttributeError traceback
    e = error(write("""\
        devices:
          controller: {sensors: ["counter@5"], local: true}
          pc: {local: true}
        steps:
          t: {type: source, sensor: counter}
        sinks:
          o: {type: callback, input: t, on: pc}
        """, devices=False))
    assert [(p.line, p.column, p.message) for p in e.problems] == [
        (2, 3, "a device may not be called 'controller': the name is reserved for the controller in routes; "
               "give the device another name")]


def test_a_character_yaml_does_not_take_is_named_at_its_place_not_a_traceback(tmp_path):
    # PyYAML's ReaderError came out of the loader's constructor, outside the error handling
    for text, where, what in (('pipeline: x\nsteps:\n  t: {type: source}\n\x00', (4, 1), "code 0x0: a NUL byte"),
                              ('pipeline: x\nsteps:\n  t: {type: sou\x07rce}\n', (3, 16), "code 0x7: a control character"),
                              ('pipeline: x\ufffe\n', (1, 12), "code 0xfffe: not a printable character")):
        path = tmp_path / "p.yaml"
        path.write_text(text, encoding="utf-8")
        with pytest.raises(PipelineFileError) as e:
            load_model(str(path))
        assert str(e.value) == "%s:%d:%d: a character YAML does not take here (%s); is this a text file?" % (
            (path,) + where + (what,))


def test_all_problems_reported_at_once(write):
    e = error(write("""\
        steps:
          t: {type: source, sensor: dht11}
          a: {type: window, values: 3, agg: median, input: t}
          b: {type: zip, input: t}
        """))
    assert len(e.problems) == 2 and "2 problems in" in str(e)


def test_missing_file_and_not_a_mapping(tmp_path):
    with pytest.raises(PipelineFileError, match="cannot read"):
        load_model(str(tmp_path / "nope.yaml"))
    p = tmp_path / "list.yaml"
    p.write_text("- a\n- b\n")
    with pytest.raises(PipelineFileError, match="a pipeline file is a mapping"):
        load_model(str(p))


def test_fn_path_is_relative_to_the_pipeline_file(tmp_path):
    sub = tmp_path / "conf"
    (sub / "steps").mkdir(parents=True)
    (sub / "steps" / "mine.py").write_text("def half(x):\n    return x / 2\n")
    (sub / "p.yaml").write_text(DEVICES + textwrap.dedent("""\
        steps:
          t: {type: source, sensor: temperature}
          h: {type: map, fn: steps/mine.py:half, input: t}
        sinks:
          o: {type: print, input: h}
        """))
    cwd = os.getcwd()
    os.chdir(tmp_path)          # not the file's directory
    try:
        m = load_model(str(sub / "p.yaml"))
    finally:
        os.chdir(cwd)
    assert m.steps["h"].params["fn"] == "user_mine:half"
    assert "def half(x):" in m.code_for(["h"])["user_mine"]


def test_a_fn_file_that_exits_at_import_or_names_no_function_is_a_named_error(tmp_path):
    # a script that runs its main() (argparse, sys.exit) at import used to end `sensormesh plan`
    # with the script's exit status and no word; a constant was "a function without source"
    (tmp_path / "script.py").write_text("import sys\ndef f(x):\n    return x\nsys.exit(3)\n")
    (tmp_path / "consts.py").write_text("LIMIT = 5\n")
    for fn, said in (("script.py:f", "steps.h.fn: importing script.py ran code that ended the program (sys.exit(3)); "
                                     "keep a script's own code under `if __name__ == \"__main__\":`"),
                     ("consts.py:LIMIT", "steps.h.fn: LIMIT in consts.py is 5 (of type int), not a function or class")):
        (tmp_path / "p.yaml").write_text(DEVICES + textwrap.dedent("""\
            steps:
              t: {type: source, sensor: temperature}
              h: {type: map, fn: "%s", input: t}
            sinks:
              o: {type: print, input: h}
            """ % fn))
        e = error(str(tmp_path / "p.yaml"))
        assert str(e) == "%s:10:22: %s" % (tmp_path / "p.yaml", said), str(e)


def test_a_placement_file_given_as_a_pipeline_is_named_as_one():
    # `sensormesh plan examples/experiments/mixed.yaml` gave seven problems about step mappings
    path = os.path.join(ROOT, "examples", "experiments", "mixed.yaml")
    e = error(path)
    assert len(e.problems) == 1 and (e.line, e.column) == (3, 1)
    assert "this is a placement file (strategy: and steps: step -> device), which `sensormesh experiment FILE " \
           "--placement NAME=THIS_FILE` takes beside a pipeline file" in str(e), str(e)


def test_inventory_from_file_for_the_api(write):
    path = write("")
    p = Pipeline("api")
    p.devices_from(path)
    p.source("dht11").print(on="laptop")
    assert p.plan("edge").device_of["dht11"] == "esp-1"
    devices, network, topo = load_inventory(path)
    assert [d.name for d in devices] == ["esp-1", "laptop"] and network is None


def test_network_without_topology_module_is_kept(write, monkeypatch):
    monkeypatch.setattr(pipeline_file, "_topology_module", lambda: None)
    m = load_model(write("""\
        network: {domains: {lab: [esp-1, laptop]}}
        steps:
          t: {type: source, sensor: dht11}
        sinks:
          o: {type: print, input: t}
        """))
    assert m.network == {"domains": {"lab": ["esp-1", "laptop"]}} and m.topology is None


def test_network_goes_to_topology_and_its_errors_get_lines(write, monkeypatch):
    seen = {}

    class TopologyError(ValueError):
        def __init__(self, msg, path):
            ValueError.__init__(self, msg)
            self.path = path

    class Topology:
        @classmethod
        def from_dict(cls, data, device_names):
            seen["args"] = (data, list(device_names))
            if "bad" in data:
                raise TopologyError("unknown device 'x' in domain lab", ("domains", "lab"))
            t = cls()
            t.link = lambda a, b: (0, [a]) if a == b else (2, [a, b])
            return t

    fake = types.SimpleNamespace(Topology=Topology)
    monkeypatch.setattr(pipeline_file, "_topology_module", lambda: fake)
    body = """\
        network:
          domains:
            lab: [esp-1, laptop]
        steps:
          t: {type: source, sensor: dht11}
        sinks:
          o: {type: print, input: t, on: laptop}
        """
    m = load_model(write(body))
    assert seen["args"] == ({"domains": {"lab": ["esp-1", "laptop"]}}, ["esp-1", "laptop"])
    assert m.place("central").objective == 2 * m.flows["t"].traffic   # the topology's link is used
    e = error(write(body.replace("network:", "network:\n          bad: 1")))
    assert e.line == 11 and e.path == ("network", "domains", "lab") and "unknown device 'x'" in str(e)


def _laughs(levels):
    """Nested aliases, each repeating the one before ten times: ~370 bytes for 10**7 values."""
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    lines += ["a%d: &a%d [%s]" % (i, i, ", ".join(["*a%d" % (i - 1)] * 10)) for i in range(1, levels + 1)]
    return "\n".join(lines) + "\nsteps: {}\n"


@pytest.mark.parametrize("levels", [5, 7, 40])
def test_alias_bomb_is_refused_fast_naming_the_alias(tmp_path, levels):
    path = tmp_path / "laughs.yaml"
    path.write_text(_laughs(levels))
    start = time.monotonic()
    e = error(str(path))
    assert time.monotonic() - start < 5
    # a4 (line 5) holds ten *a3, 11111 values each: with the values before it the eighth takes the count past the limit
    assert str(e) == ("%s:5:45: aliases expand to more than 100000 values (alias *a3 here stands for 11111); "
                      "write the values out or use fewer nested aliases" % path)
    r = CliRunner().invoke(plan_command, [str(path)])
    assert r.exit_code == 1 and "laughs.yaml:5:45: aliases expand to more than 100000 values" in r.output
    assert r.exception is None or isinstance(r.exception, SystemExit)


def test_alias_inside_its_own_value_is_an_error(write):
    e = error(write("""\
        steps:
          t: &t {type: source, sensor: dht11, extra: [1, *t]}
        """))
    assert (e.line, e.column) == (9, 50) and "alias *t is used inside the value it names" in str(e)


def test_anchors_and_aliases_are_copied_where_used(write):
    m = load_model(write("""\
        steps:
          t: {type: source, sensor: dht11}
          c: &celsius {type: field, key: temperature, input: t}
          w1: &win {type: window, values: 5, agg: max, input: c}
          w2: *win
          lim: {type: alarm, high: &hot 30, input: w1}
          lim2: {type: alarm, high: *hot, input: w2}
        sinks:
          o: {type: print, input: lim}
          o2: {type: print, input: lim2}
        """))
    assert m.steps["w2"].params == m.steps["w1"].params == {"values": 5, "agg": "max"}
    assert m.steps["lim2"].params["high"] == 30


def test_merge_keys_let_written_keys_override(write):
    m = load_model(write("""\
        devices:
          b1: &board {interpreter: micropython, sensors: [temperature], address: "10.0.0.1:7000", cpu: 2}
          b2: {<<: *board, sensors: [dht11], address: "10.0.0.2:7000"}
          pc: {<<: [{cpu: 8, address: "10.0.0.3:7000"}, *board], interpreter: cpython}
        steps:
          t: {type: source, sensor: dht11}
        sinks:
          o: {type: print, input: t, on: pc}
        """, devices=False))
    b1, b2, pc = (m.devices[n] for n in ("b1", "b2", "pc"))
    assert (b1.raw_sensors, b1.address) == (["temperature"], "10.0.0.1:7000")
    assert (b2.raw_sensors, b2.address, b2.interpreter, b2.cpu) == (["dht11"], "10.0.0.2:7000", "micropython", 2)
    # of several merged mappings the first wins; written keys win over all of them
    assert (pc.cpu, pc.address, pc.interpreter, pc.raw_sensors) == (8, "10.0.0.3:7000", "cpython", ["temperature"])


def test_merge_keys_keep_real_duplicates_and_point_into_the_anchor(write):
    e = error(write("""\
        devices:
          b1: &board {interpreter: micropython, sensors: [temperature], address: "10.0.0.1:7000"}
          b2: {<<: *board, address: "10.0.0.2:7000", sensors: [dht11], sensors: [gyro]}
        steps:
          t: {type: source, sensor: dht11}
        """, devices=False))
    assert str(e) == "%s:3:64: devices.b2.sensors: duplicate key 'sensors' (first on line 3)" % e.filename
    # a merged value that is wrong is reported where it is written
    e = error(write("""\
        devices:
          b1: &board {interpreter: micropython, cpu: lots, address: "10.0.0.1:7000"}
          b2: {<<: *board, address: "10.0.0.2:7000"}
        steps:
          t: {type: source, sensor: dht11}
        """, devices=False))
    cpu = {(p.path, p.line) for p in e.problems if p.path[-1:] == ("cpu",)}
    assert cpu == {(("devices", "b1", "cpu"), 2), (("devices", "b2", "cpu"), 2)}
    e = error(write("""\
        steps:
          t: {type: source, sensor: dht11, <<: 3}
        """))
    assert (e.line, e.path) == (9, ("steps", "t", "<<")) and "<< merges a mapping" in str(e)


def test_two_devices_at_one_address_are_an_error(write, tmp_path):
    sock = str(tmp_path / "w.sock")
    e = error(write("""\
        devices:
          w1: {interpreter: cpython, address: "10.0.0.5:7001"}
          w2: {interpreter: cpython, address: "10.0.0.5:7001"}
          l1: {interpreter: cpython, address: "127.0.0.1:7301", local: true}
          l2: {interpreter: cpython, address: "localhost:7301", local: true}
          u1: {interpreter: cpython, local: true, unix: %s}
          u2: {interpreter: cpython, local: true, unix: %s}
          m1: {interpreter: cpython, addresses: {lab: "10.0.0.9:7001", cloud: "10.1.0.9:7001"}}
          m2: {interpreter: cpython, address: "10.1.0.9:7001"}
          g1: {interpreter: cpython, addresses: {lab: "10.2.0.1:7001"}}
          g2: {interpreter: cpython, addresses: {lab: "10.2.0.1:7001"}}
        steps:
          t: {type: source, sensor: temperature}
        """ % (sock, sock), devices=False))
    assert [line.strip() for line in str(e).splitlines()[1:6]] == [
        "%s:3:39: devices.w2.address: 10.0.0.5:7001 is also the address of device 'w1'; "
        "each device needs an address of its own" % e.filename,
        "%s:5:39: devices.l2.address: localhost:7301 is also the address of device 'l1' (written 127.0.0.1:7301 "
        "there: the same host and port); each device needs an address of its own" % e.filename,
        "%s:7:49: devices.u2.unix: socket path %s is also the one of device 'u1'; each device needs a socket "
        "of its own" % (e.filename, sock),
        "%s:9:39: devices.m2.address: 10.1.0.9:7001 is also the address of device 'm1'; "
        "each device needs an address of its own" % e.filename,
        "%s:11:41: devices.g2.addresses: 10.2.0.1:7001 is also the address of device 'g1'; "
        "each device needs an address of its own" % e.filename,
    ]
    r = CliRunner().invoke(plan_command, [e.filename])
    assert r.exit_code == 1 and "devices.w2.address: 10.0.0.5:7001 is also the address of device 'w1'" in r.output


def test_devices_at_different_addresses_and_local_ones_without_a_port_are_fine(write):
    m = load_model(write("""\
        devices:
          w1: {interpreter: cpython, address: "10.0.0.5:7001"}
          w2: {interpreter: cpython, address: "10.0.0.5:7002"}
          w3: {interpreter: cpython, address: "10.0.0.6:7001"}
          a1: {interpreter: cpython, local: true}
          a2: {interpreter: micropython, local: true}
          both: {interpreter: cpython, address: "10.0.0.7:7001", addresses: {lab: "10.0.0.7:7001"}}
          gw1: {interpreter: cpython, addresses: {field1: "192.168.4.1:7000", lan: "10.0.0.8:7000"}}
          gw2: {interpreter: cpython, addresses: {field2: "192.168.4.1:7000", lan: "10.0.0.9:7000"}}
        steps:
          t: {type: source, sensor: temperature, on: a2}
        sinks:
          o: {type: print, input: t}
        """.replace("interpreter: micropython, local", "interpreter: micropython, sensors: [temperature], local"),
        devices=False))
    # gw1 and gw2 each run an access point at 192.168.4.1: two networks (domains)
    assert set(m.devices) == {"w1", "w2", "w3", "a1", "a2", "both", "gw1", "gw2"}


def test_mqtt_connection_options_that_are_right_load(write):
    """tls: {} (TLS with the system's CAs), a discovery prefix of one's own and {device}/{step}
    in both steps' topics are accepted and reach the device as written."""
    m = load_model(write("""\
     steps:
       i: {type: mqtt_in, broker: "127.0.0.1:1883", topic: "lab/{device}/{step}/#", tls: {}}
     sinks:
       m: {type: mqtt_out, broker: "127.0.0.1:1883", topic: "lab/{device}/{step}", input: i,
           tls: {ca: /etc/ca.pem, cert: c.pem, key: k.pem, insecure: false}, discovery: "ha/lab",
           username: lab, password-env: MQTT_PW}
     """))
    assert m.device_params["i"]["tls"] == {} and m.device_params["i"]["topic"] == "lab/{device}/{step}/#"
    assert m.device_params["m"]["discovery"] == "ha/lab"


def test_two_csv_sinks_may_share_a_path_on_different_devices_they_are_pinned_to(write):
    m = load_model(write("""\
     steps:
       t: {type: source, sensor: dht11}
     sinks:
       f: {type: csv, path: out.csv, input: t, on: esp-1}
       g: {type: csv, path: out.csv, input: t, on: laptop}
     """))
    assert m.device_params["f"]["path"] == m.device_params["g"]["path"] == "out.csv"


def test_every_problem_of_the_network_section_is_reported_at_once(write):
    """Like the steps' problems, all of a broken network: section's are named, each at its line
    (before: only the first, so a user fixed them one run at a time)."""
    e = error(write("""\
        network:
          controller: [office]
          domains:
            office: [esp-1, laptop, ghost]
            field: {devices: [laptop], cost: -1}
          links:
            - {from: office, to: office}
        steps:
          t: {type: source, sensor: dht11}
        sinks:
          o: {type: print, input: t}
        """))
    text = str(e)
    assert "3 problems in" in text, text
    for words in ("unknown device 'ghost'", "cost must be a positive number, got -1",
                  "link from domain 'office' to itself"):
        assert words in text, (words, text)
    assert [p.path[:3] for p in e.problems] == [("network", "domains", "office"), ("network", "domains", "field"),
                                                 ("network", "links", 0)], e.problems


def test_a_step_pinned_to_a_device_named_true_finds_it(tmp_path):
    """Device names are read as written; `on: true` names the device `true` too (before: 'True')."""
    path = tmp_path / "t.yaml"
    path.write_text(textwrap.dedent("""\
        devices:
          true: {interpreter: cpython, address: "127.0.0.1:7001", sensors: [temperature]}
        steps:
          t: {type: source, sensor: temperature, on: true}
        sinks:
          o: {type: print, input: t}
        """))
    m = load_model(str(path))
    assert m.steps["t"].on == "true" and list(m.devices) == ["true"]
    path.write_text(path.read_text().replace("  true: {", "  pc: {"))
    e = error(str(path))
    assert "unknown device 'true'" in str(e), str(e)
