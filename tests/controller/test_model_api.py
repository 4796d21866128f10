# The Python API and the graph model: sentences build the right graph; misuse gets a named error.
import os

import pytest

import shipping_samples as S
from sensormesh.api import ModelError, Pipeline, PipelineError, merge
from sensormesh.controller.model import Device, Model, Step

HERE = os.path.basename(__file__)


def esp(p, name="esp-1", sensors=("temperature",), **kw):
    return p.device(name, interpreter="micropython", cpu=1, memory=96_000, sensors=list(sensors),
                    address="10.0.0.%d:7000" % (len(p.devices) + 1), **kw)


def inventory(p):
    esp(p, "esp-1", ["temperature", "hall"])
    esp(p, "esp-2", ["dht11", "gyro"])
    p.device("laptop", cpu=20, address="127.0.0.1:7002", local=True)


def test_sentence_from_the_brief():
    p = Pipeline("alarm")
    inventory(p)
    t = p.source("temperature", on="esp-1", rate=10)
    t.map(S.fahrenheit).window(time_frame=1000, agg="mean").alarm(high=30, low=28).sink.print()
    m = p.model()
    assert m.order == ["temperature", "fahrenheit", "window", "alarm", "print"]
    assert m.steps["window"].params == {"time-frame": 1000, "values": 0, "agg": "mean"}
    assert m.steps["fahrenheit"].params["fn"] == "user_shipping_samples:fahrenheit"
    assert m.steps["alarm"].inputs == ["window"]
    assert m.source_device["temperature"] == "esp-1"
    assert m.flows["window"].rate == pytest.approx(1.0)


def test_joins_keep_port_order_and_sinks():
    p = Pipeline("j")
    inventory(p)
    a = p.source("temperature")
    b = p.source("dht11").field("temperature", id="dt")
    h = p.source("hall")
    z = a.zip(b, id="z")
    c = a.combine_latest(b, id="c")
    mg = merge(z, c, h.map(S.fahrenheit), id="mg")
    mg.csv("out.csv", columns=["a"])
    got = []
    c.callback(got.append, name="got")
    thr = p.source("gyro").field("temp", id="thr")
    a.alarm(threshold=thr, hysteresis=0.5, id="al").print()
    m = p.model()
    assert m.steps["z"].inputs == ["temperature", "dt"]
    assert m.steps["c"].inputs == ["temperature", "dt"]
    assert m.steps["mg"].inputs == ["z", "c", "fahrenheit"]
    assert m.steps["al"].inputs == ["temperature", "thr"]
    assert m.device_params["al"] == {"hysteresis": 0.5}
    assert m.steps["got"].type == "callback" and p.callbacks["got"] == got.append
    assert m.device_params["csv"] == {"path": "out.csv", "columns": ["a"]}


def test_auto_ids_are_unique_and_readable():
    p = Pipeline("ids")
    inventory(p)
    a = p.source("temperature")
    a.window(values=2).print()
    a.window(values=3).print()
    assert [s.id for s in p._steps] == ["temperature", "window", "print", "window_2", "print_2"]


def test_bad_parameter_fails_at_the_call_naming_the_line():
    p = Pipeline("x")
    t = p.source("temperature")
    with pytest.raises(ModelError) as e:
        t.window(values=10, agg="median")
    assert e.value.key == "agg" and "median" in str(e.value) and HERE in str(e.value)


def test_lambda_fails_at_the_call():
    p = Pipeline("x")
    with pytest.raises(ModelError, match="lambda.*module-level function"):
        p.source("temperature").map(lambda x: x)


def test_unknown_keyword_is_an_unknown_parameter():
    p = Pipeline("x")
    with pytest.raises(ModelError, match="unknown parameter.*did you mean 'selectivity'"):
        p.source("temperature").filter(S.fahrenheit, selectivty=0.3)


def test_joining_two_pipelines_is_refused():
    a = Pipeline("a").source("temperature")
    b = Pipeline("b").source("temperature")
    with pytest.raises(ModelError, match="two pipelines"):
        a.zip(b)


def test_sink_has_no_output():
    p = Pipeline("x")
    s = p.source("temperature").print()
    with pytest.raises(ModelError, match="sink has no output"):
        s.map(S.fahrenheit)
    # every stream method, not only some: `.callback(f).callback(g)` was a bare AttributeError
    for name in ("callback", "alarm", "throttle", "merge", "sliding", "then", "changes", "ema", "mqtt_out"):
        with pytest.raises(ModelError, match="sink has no output to %s" % name):
            getattr(s, name)
    with pytest.raises(AttributeError):
        s.no_such_thing


def test_duplicate_ids_and_devices():
    p = Pipeline("x")
    esp(p)
    with pytest.raises(ModelError, match="two devices"):
        esp(p)
    p.source("temperature", id="t")
    with pytest.raises(ModelError, match="two steps"):
        p.source("temperature", id="t")


def test_bad_device_entries():
    p = Pipeline("x")
    with pytest.raises(ModelError) as e:
        p.device("d", interpreter="jython", cpu=-1, address="nohost", sensors=["thermometer"])
    text = str(e.value)
    for want in ("interpreter", "cpu: must be a positive number", "address: must be host:port",
                 "unknown sensor kind 'thermometer'"):
        assert want in text
    with pytest.raises(ModelError, match="address: is required"):
        p.device("e")
    p.device("f", local=True)     # a local device needs no address


@pytest.mark.parametrize("spec", ["temperature@nan", "temperature@inf", "temperature@-1",
                                  {"kind": "temperature", "rate": float("inf")}, {"kind": "temperature", "rate": "5"}])
def test_a_sensor_rate_that_is_not_a_finite_number_of_0_or_more_is_refused(spec):
    # (a device refuses to start with it: the controller says so before starting one)
    with pytest.raises(ModelError, match="rate must be a finite number >= 0"):
        Pipeline("x").device("d", local=True, sensors=[spec])


def test_unknown_device_and_sensors_are_model_errors():
    p = Pipeline("x")
    inventory(p)
    p.source("temperature", on="esp-9").print()
    p.source("co2").print()
    p.source("dht11", on="esp-1").print()
    with pytest.raises(ModelError) as e:
        p.model()
    text = str(e.value)
    assert "unknown device 'esp-9' (did you mean" in text
    assert "no device has sensor 'co2'" in text
    assert "device 'esp-1' has no sensor 'dht11'" in text
    assert HERE in text                   # problems point at the user's lines


def test_ambiguous_sensor_needs_on():
    p = Pipeline("x")
    esp(p, "a")
    esp(p, "b")
    p.source("temperature").print()
    with pytest.raises(ModelError, match="on 2 devices.*say which with on"):
        p.model()


def test_sensor_by_configured_name():
    p = Pipeline("x")
    esp(p, "a", ["inside=temperature@5", {"name": "outside", "kind": "temperature", "rate": 2}])
    p.source("outside").print()
    m = p.model()
    assert m.sensor_spec["outside"]["kind"] == "temperature"
    assert m.flows["outside"].rate == 2


def test_value_shape_checks():
    p = Pipeline("x")
    esp(p, "a", ["dht11"])
    d = p.source("dht11")
    d.field("temprature").print()
    d.window(values=5, agg="mean", id="w").print()
    d.alarm(high=3, id="al").print()
    with pytest.raises(ModelError) as e:
        p.model()
    text = str(e.value)
    assert "'temprature' is not in the input's values" in text and "humidity, temperature" in text
    assert "step 'w', agg: mean needs numbers" in text
    assert "step 'al'" in text and "set key" in text


def test_model_without_inventory_validates_the_graph():
    p = Pipeline("x")
    p.source("temperature").window(values=3).print()
    assert p.validate() == []
    with pytest.raises(ModelError, match="inventory is empty"):
        p.model()


def test_warnings_for_unused_outputs():
    p = Pipeline("x")
    esp(p)
    p.source("temperature").window(values=3)
    assert any("no sink" in w for w in p.model().warnings)


# -- the model directly (what the file loader also produces) --------------------------------------

def devices():
    return [Device("d", sensors=["temperature"], address="127.0.0.1:7000")]


def model(*steps):
    return Model("m", list(steps), devices())


def test_a_pipeline_without_steps_is_a_model_error_not_a_solver_crash():
    # p.plan() of an empty pipeline used to end in scipy's "`c` must be a one-dimensional array"
    for strategy in ("central", "edge", "optimal"):
        p = Pipeline("empty")
        inventory(p)
        with pytest.raises(ModelError, match="the pipeline has no steps"):
            p.plan(strategy)
    with pytest.raises(ModelError, match="the pipeline has no steps"):
        Pipeline("empty").validate()


def test_dangling_input_names_the_step():
    with pytest.raises(ModelError) as e:
        model(Step("s", "source", {"sensor": "temperature"}), Step("w", "window", {"values": 2}, ["sx"]))
    assert e.value.step == "w" and e.value.key == "inputs" and "'sx' does not exist (did you mean 's'?)" in str(e.value)


def test_cycle_is_named():
    with pytest.raises(ModelError, match=r"cycle: a -> b -> a"):
        model(Step("s", "source", {"sensor": "temperature"}),
              Step("a", "merge", {}, ["s", "b"]), Step("b", "map", {"fn": "math:sqrt"}, ["a"]))


def test_unknown_type_wrong_arity_runtime_type_sink_input():
    with pytest.raises(ModelError) as e:
        model(Step("s", "source", {"sensor": "temperature"}),
              Step("a", "windw", {}, ["s"]),
              Step("z", "zip", {}, ["s"]),
              Step("p", "pipe_out", {"edge": "e", "to": "x:1"}, ["s"]),
              Step("out", "print", {}, ["s"]),
              Step("after", "map", {"fn": "math:sqrt"}, ["out"]))
    text = str(e.value)
    assert "unknown step type 'windw' (did you mean 'window'?)" in text
    assert "zip takes 2 inputs, got 1" in text
    assert "inserted by the controller" in text
    assert "input 'out' is a sink" in text
    assert len(e.value.problems) == 4


def test_bad_requires_and_ids():
    with pytest.raises(ModelError) as e:
        model(Step("s", "source", {"sensor": "temperature"}, requires="jython"),
              Step("a b", "print", {}, ["s"]))
    text = str(e.value)
    assert "requires: must be cpython or micropython" in text and "step ids" in text


def test_to_dict_roundtrip_shape():
    p = Pipeline("x")
    inventory(p)
    p.source("temperature").window(values=3, id="w").print(on="laptop", id="out")
    d = p.model().to_dict()
    assert d["steps"]["w"] == {"type": "window", "values": 3, "time-frame": 0, "agg": "mean", "input": "temperature"}
    assert d["sinks"]["out"] == {"type": "print", "input": "w", "on": "laptop"}


def test_two_devices_at_one_address():
    p = Pipeline("x")
    esp(p)
    p.device("pc", address="10.0.0.1:7000")          # esp-1's
    p.device("l1", local=True, address="127.0.0.1:7009")
    p.device("l2", local=True, address="localhost:7009")
    p.device("l3", local=True)
    p.device("l4", local=True)                        # no port: each binds a free one
    p.source("temperature").print()
    with pytest.raises(ModelError) as e:
        p.model()
    assert [str(x) for x in e.value.problems] == [
        "device 'pc', address: 10.0.0.1:7000 is also the address of device 'esp-1'; "
        "each device needs an address of its own",
        "device 'l2', address: localhost:7009 is also the address of device 'l1' (written 127.0.0.1:7009 there: "
        "the same host and port); each device needs an address of its own"]


def _file(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("pipeline: f\n"
                    "devices:\n  pc: {sensors: [temperature], local: true}\n"
                    "steps:\n  t: {type: source, sensor: temperature}\n"
                    "sinks:\n  out: {type: callback, input: t}\n  named: {type: callback, input: t, name: hot}\n")
    return str(path)


def test_load_refuses_callbacks_that_name_no_callback_sink_or_are_not_functions(tmp_path):
    from sensormesh.api import load
    path = _file(tmp_path)
    with pytest.raises(ModelError) as e:
        load(path, callbacks={"outt": print})
    assert "callbacks: 'outt' is not a callback sink of %s (did you mean 'out'?) (its callback sinks: hot, out)" \
        % path in str(e.value) and HERE in str(e.value)
    with pytest.raises(ModelError, match="callbacks: 'named' is a callback sink whose name is 'hot': give that name"):
        load(path, callbacks={"named": print})      # a sink with a name: is known by that name
    with pytest.raises(ModelError, match="callbacks: 'out' needs a function, not 5"):
        load(path, callbacks={"out": 5})
    with pytest.raises(ModelError, match=r"callbacks: must be a dict \{callback sink name: function\}"):
        load(path, callbacks=[print])


def test_a_loaded_file_plans_like_a_pipeline_and_is_changed_in_its_file(tmp_path):
    from sensormesh.api import load
    p = load(_file(tmp_path), callbacks={"hot": print})
    assert p.plan("edge").device_of == {"t": "pc", "out": "pc", "named": "pc"}
    assert set(p.assignments()) == {"pc"} and p.validate() == []
    assert p.order == ["t", "out", "named"] and p.callbacks == {"hot": print}
    with pytest.raises(ModelError, match="a pipeline loaded from .*p.yaml gets its steps from that file"):
        p.source("temperature")
    with pytest.raises(ModelError, match="gets its devices from that file"):
        p.device("pc2", local=True)


@pytest.mark.parametrize("kw, message", [
    ({"duration": -1}, "duration: give a number of seconds of 0 or more"),
    ({"duration": "10"}, "duration: give a number of seconds"),
    ({"duration": float("nan")}, "duration: give a number of seconds"),
    ({"count": -2}, "count: give a whole number of callback values of 0 or more"),
    ({"count": 2.5}, "count: give a whole number"),
    ({"until": 5}, "until: give a function"),
    ({"timeout": 0}, "timeout: give a number of seconds more than 0"),
    ({"strategy": "fastest"}, "strategy: unknown strategy 'fastest'"),
    ({"cpu_headroom": 1.5}, "cpu_headroom: must be a fraction between 0.05 and 1, not 1.5"),
])
def test_up_refuses_bad_arguments_before_starting_anything(kw, message, monkeypatch):
    from sensormesh.controller import local
    monkeypatch.setattr(local.LocalCluster, "start", lambda *a, **k: pytest.fail("a device was started"))
    p = Pipeline("u")
    p.device("pc", sensors=["temperature"], local=True)
    p.source("temperature").callback(print)
    with pytest.raises(PipelineError, match=message):
        p.up(insecure=True, **kw)
    with pytest.raises(TypeError, match="unknown argument 'time_limt' .*did you mean 'time_limit'"):
        p.up(insecure=True, time_limt=5)


def test_every_misuse_of_the_api_names_the_line_that_made_it():
    p = Pipeline("lines")
    p.device("pc", sensors=["temperature"], local=True)
    t = p.source("temperature")
    sink = t.print()
    attempts = [
        (lambda: p.device("pc", local=True), "device 'pc': two devices with this name"),
        (lambda: t.then("windw"), "unknown step type 'windw' (did you mean 'window'?)"),
        (lambda: t.callback("notfn"), "callback needs a function, not 'notfn'"),
        (lambda: t.alarm(threshold=5), "threshold must be a stream"),
        (lambda: sink.map, "a sink has no output to map"),
        (lambda: merge(), "merge needs at least one stream"),
        (lambda: merge(5), "merge takes streams, not 5"),
    ]
    t.callback(print, name="shown")
    attempts.append((lambda: t.callback(len, name="shown"), "two different callbacks named 'shown'"))
    for call, message in attempts:
        with pytest.raises(ModelError) as e:
            call()
        assert message in str(e.value) and "(%s:" % HERE in str(e.value), str(e.value)


@pytest.mark.parametrize("kw, message", [
    ({"time_limit": -1}, "time_limit: must be a positive number of seconds, not -1"),
    ({"time_limit": "10"}, "time_limit: must be a positive number of seconds, not '10'"),
    ({"cpu_headroom": 0}, "cpu_headroom: must be a fraction between 0.05 and 1, not 0"),
    ({"cpu_headroom": 2}, "cpu_headroom: must be a fraction between 0.05 and 1, not 2"),
    ({"mip_rel_gap": -0.1}, "mip_rel_gap: must be a fraction from 0 up to 1, not -0.1"),
])
def test_plan_refuses_placement_options_out_of_range_as_the_command_does(kw, message):
    from sensormesh.api import PlacementError
    p = Pipeline("opts")
    p.device("pc", sensors=["temperature"], local=True)
    p.source("temperature").print()
    with pytest.raises(PlacementError) as e:
        p.plan("optimal", **kw)
    assert str(e.value) == message
    assert p.plan("optimal", time_limit=5, cpu_headroom=0.05, mip_rel_gap=0).device_of["print"] == "pc"


def test_a_fleets_devices_are_named_in_short_in_model_errors():
    p = Pipeline("fleet")
    for i in range(300):
        p.device("d%d" % i, sensors=["temperature"], local=True)
    p.source("temperature", id="t").callback(print, id="o", on="dx")
    with pytest.raises(ModelError) as e:
        p.model()
    text = str(e.value)
    assert "sensor 'temperature' is on 300 devices (d0..d299); say which with on:" in text, text
    assert "unknown device 'dx'; devices: d0..d299" in text, text
    assert len(text) < 400, text


def test_a_device_called_controller_is_refused_at_the_call():
    with pytest.raises(ModelError, match="a device may not be called 'controller': the name is reserved"):
        Pipeline("x").device("controller", local=True)
