"""Placement errors name the real cause, for every strategy: a pipeline no network route can
carry (the unreachable pair and why), a step pinned to a device that is down, a sensor no live
device has; and each names the step and where it is defined (file:line:col, or module:line for
the Python API). YAML syntax errors point at the unclosed bracket or quote."""
import textwrap

import pytest

from sensormesh.api import Pipeline, PipelineFileError, PlacementError
from sensormesh.controller.pipeline_file import load_model
from sensormesh.controller.placement import STRATEGIES, place
from sensormesh.controller.supervisor.replace import degraded_link

# esp-1 and pc share the field network; srv is in the cloud. The controller sits in both, but it
# does not relay data, so nothing in the field can send to srv.
SPLIT = """\
pipeline: split
devices:
  esp-1: {interpreter: micropython, cpu: 1, memory: 96000, sensors: ["t=temperature@10"], address: "127.0.0.1:7001"}
  pc: {interpreter: cpython, cpu: 8, address: "127.0.0.1:7002"}
  srv: {interpreter: cpython, cpu: 8, address: "127.0.0.1:7003"}
network:
  controller: [field, cloud]
  domains:
    field: [esp-1, pc]
    cloud: [srv]
steps:
  t: {type: source, sensor: t}
  w:
    type: window
    time-frame: 1000
    agg: mean
    input: t
sinks:
  out: {type: print, input: w, on: %s}
"""

# a gateway joins the field and the office
GATEWAY = """\
pipeline: gw
devices:
  esp-1: {interpreter: micropython, cpu: 1, memory: 96000, sensors: ["t=temperature@10"], address: "127.0.0.1:7001"}
  gw: {interpreter: cpython, cpu: 4, address: "127.0.0.1:7002"}
  pc: {interpreter: cpython, cpu: 8, address: "127.0.0.1:7003"}
network:
  controller: [office]
  domains:
    field: [esp-1, gw]
    office: [gw, pc]
steps:
  t: {type: source, sensor: t}
  w: {type: window, time-frame: 1000, agg: mean, input: t}
sinks:
  out: {type: print, input: w, on: pc}
"""


def write(tmp_path, text, name="p.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def error_of(fn):
    with pytest.raises(PlacementError) as e:
        fn()
    return str(e.value)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_unroutable_pipeline_names_the_pair_and_why(tmp_path, strategy):
    path = write(tmp_path, SPLIT % "srv")
    m = load_model(path)
    text = error_of(lambda: place(m, strategy))
    assert text.startswith("%s:13:3: step 'w': no route from t on esp-1 to out on srv, which the pipeline "
                           "joins through w: no route from esp-1 (domain field) to srv (domain cloud)" % path), text
    assert "CPU" not in text


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_two_fixed_steps_without_a_route(tmp_path, strategy):
    body = SPLIT.replace("    input: t\n", "    input: t\n    on: esp-1\n")
    path = write(tmp_path, body % "srv")
    text = error_of(lambda: place(load_model(path), strategy))
    assert text.startswith("%s:13:3: step 'w': w on esp-1 cannot send to out on srv: no route: no route from "
                           "esp-1 (domain field) to srv (domain cloud)" % path), text


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_step_pinned_to_a_device_that_is_down(tmp_path, strategy):
    path = write(tmp_path, GATEWAY)
    m = load_model(path)
    text = error_of(lambda: place(m, strategy, down={"pc": "no answer within 3s"}))
    assert text == "%s:15:3: step 'out': pinned to pc (on: pc), which is down (no answer within 3s)" % path


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_sensor_that_no_live_device_has(tmp_path, strategy):
    path = write(tmp_path, GATEWAY)
    m = load_model(path)
    text = error_of(lambda: place(m, strategy, down=["esp-1"]))
    assert text == "%s:12:3: step 't': no live device has sensor t (temperature): esp-1 has it but is down" % path


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_failed_gateway_is_named_as_the_reason_there_is_no_route(tmp_path, strategy):
    path = write(tmp_path, GATEWAY)
    m = load_model(path)
    link = degraded_link(m.topology, {"gw"})
    text = error_of(lambda: place(m, strategy, link=link, down={"gw": "failed"}))
    assert text.startswith("%s:13:3: step 'w': no route from t on esp-1 to out on pc, which the pipeline joins "
                           "through w: no route from esp-1 (domain field) to pc (domain office)" % path), text
    assert text.endswith("(with gw failed)"), text


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_down_devices_get_nothing(tmp_path, strategy):
    path = write(tmp_path, GATEWAY.replace("  pc: {interpreter: cpython, cpu: 8,",
                                           "  pc2: {interpreter: cpython, cpu: 8, address: \"127.0.0.1:7004\"}\n"
                                           "  pc: {interpreter: cpython, cpu: 8,")
                 .replace("office: [gw, pc]", "office: [gw, pc, pc2]"))
    m = load_model(path)
    pl = place(m, strategy, down={"gw": "failed"}, link=degraded_link(m.topology, set()))
    assert "gw" not in pl.device_of.values()


def test_every_device_a_step_can_run_on_is_down():
    p = Pipeline("x")
    p.device("esp", interpreter="micropython", sensors=["gyro"], address="127.0.0.1:7000")
    p.device("pi", address="127.0.0.1:7001")
    p.source("gyro", id="g").map("builtins:abs", id="m", requires="cpython").print(id="o", on="esp")
    text = error_of(lambda: p.model().place("edge", down={"pi": "failed"}))
    assert "step 'm': needs cpython" in text and "every such device is down: pi down (failed)" in text
    assert text.startswith("test_placement_errors.py:"), text      # where the API call is


def test_api_placement_errors_give_the_line_of_the_call():
    p = Pipeline("x")
    p.device("esp", interpreter="micropython", sensors=["gyro"], address="127.0.0.1:7000")
    p.device("pi", address="127.0.0.1:7001")
    p.source("gyro", id="g").print(id="o", on="pi")
    text = error_of(lambda: p.model().place("optimal", down={"pi": "failed"}))
    assert text.startswith("test_placement_errors.py:"), text
    assert "step 'o': pinned to pi (on: pi), which is down (failed)" in text


def test_yaml_unclosed_bracket_points_at_the_bracket(tmp_path):
    path = write(tmp_path, "pipeline: x\nsteps:\n  a: {type: map, input: [b, c\n  d: {type: print}\n")
    with pytest.raises(PipelineFileError) as e:
        load_model(path)
    assert (e.value.line, e.value.column) == (3, 25)
    assert str(e.value) == ("%s:3:25: YAML syntax error: the '[' here is not closed: expected ',' or ']', "
                            "but got ':' (noticed at line 4, column 4)" % path)


def test_yaml_other_syntax_errors_point_where_pyyaml_found_them(tmp_path):
    path = write(tmp_path, "pipeline: x\n steps: 1\n")
    with pytest.raises(PipelineFileError) as e:
        load_model(path)
    assert str(e.value) == "%s:2:7: YAML syntax error: mapping values are not allowed here" % path


def test_a_fleet_that_is_down_is_named_in_short_by_reason():
    p = Pipeline("x")
    p.device("esp", interpreter="micropython", sensors=["gyro"], address="127.0.0.1:7000")
    down = {}
    for i in range(1, 41):
        p.device("pi-%d" % i, address="127.0.0.1:%d" % (7100 + i))
        down["pi-%d" % i] = "failed"
    p.device("pc", address="127.0.0.1:7001")
    down["pc"] = "no answer"
    p.source("gyro", id="g").map("builtins:abs", id="m", requires="cpython").print(id="o", on="esp")
    text = error_of(lambda: p.model().place("edge", down=down))
    assert "every such device is down: pi-1..pi-40 down (failed); pc down (no answer)" in text, text


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_device_its_fixed_steps_overload_is_named_at_its_entry_in_short_numbers(tmp_path, strategy):
    # the error about a device alone used to have no file:line:col, and a source's huge rate
    # gave a number of three hundred digits
    path = write(tmp_path, """\
        pipeline: over
        devices:
          pc: {address: "127.0.0.1:7001"}
          esp: {interpreter: micropython, sensors: ["t=temperature@1e300"], address: "127.0.0.1:7002"}
        steps:
          t: {type: source, sensor: t}
        sinks:
          out: {type: print, input: t, on: pc}
        """)
    text = error_of(lambda: load_model(path).place(strategy))
    assert text.splitlines()[1:] == [
        "  %s:3:3: device 'pc': its sources and pinned steps (out) alone need CPU 3e+300 of 160000 units/s" % path,
        "  %s:4:3: device 'esp': its sources and pinned steps (t) alone need CPU 1e+300 of 8000 units/s" % path,
    ], text


def test_the_fixed_steps_of_an_overloaded_device_are_named_in_short(tmp_path):
    lines = ["pipeline: fleet", "devices:", '  pc: {address: "127.0.0.1:7000", cpu: 0.01}']
    lines += ['  s%d: {sensors: [temperature], address: "127.0.0.1:%d"}' % (i, 7001 + i) for i in range(100)]
    lines += ["steps:"] + ["  t%d: {type: source, sensor: temperature, on: s%d}" % (i, i) for i in range(100)]
    lines += ["sinks:"] + ["  out%d: {type: print, input: t%d, on: pc}" % (i, i) for i in range(100)]
    path = write(tmp_path, "\n".join(lines) + "\n")
    text = error_of(lambda: load_model(path).place("edge"))
    assert text.startswith("%s:3:3: device 'pc': its sources and pinned steps (out0..out99) alone need CPU "
                           % path), text
