"""`up` with devices the controller cannot dial: the controller sits in the cloud, the devices in
an office that may dial into the cloud (a one-way link), never the reverse. Their control route
is `register` (the device dials the controller and keeps the connection open), so `up` tells
each such local device where to register and listens for them; before, `up` and `experiment`
failed on such a file ("a has not registered with the controller").

On one machine (plain `up`) and in the emulated network on loopback (no root); the same in
network namespaces is in tests/netns/test_emulated_network.py."""
import json

import pytest

from sensormesh.controller import runner
from sensormesh.controller.pipeline_file import load_model

STEPS = "def same(v):\n    return v\n"


def office_to_cloud(tmp_path):
    (tmp_path / "reg_steps.py").write_text(STEPS)
    doc = {"pipeline": "reg",
           "devices": {"a": {"interpreter": "cpython", "sensors": ["counter@50"], "local": True},
                       "b": {"interpreter": "cpython", "local": True},
                       "c": {"interpreter": "cpython", "local": True}},
           "network": {"controller": ["cloud"], "domains": {"office": ["a", "b"], "cloud": ["c"]},
                       "links": [{"from": "office", "to": "cloud"}]},
           "steps": {"n": {"type": "source", "sensor": "counter", "on": "a"},
                     "m": {"type": "map", "fn": "reg_steps.py:same", "input": "n", "on": "b"}},
           "sinks": {"got": {"type": "callback", "input": "m", "on": "c"}}}
    path = tmp_path / "reg.yaml"
    path.write_text(json.dumps(doc))
    return str(path)


@pytest.mark.parametrize("mode", ["plain", "loopback"])
def test_up_tells_devices_behind_a_one_way_link_to_register(tmp_path, mode, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = load_model(office_to_cloud(tmp_path))
    routes = model.topology.control_routes()
    assert routes["a"].mode == routes["b"].mode == "register" and routes["c"].mode == "direct"
    got, events = [], []
    final = runner.up(model, count=60, insecure=True, on_event=events.append,
                      on_deliver=lambda device, step, values: got.extend(values), timeout=5.0,
                      network_mode="auto" if mode == "plain" else "loopback")
    text = "\n".join(events)
    assert "the controller cannot dial a, b: they dial out and register" in text, text
    assert "a with controller at 127.0.0.1:" in text and "b with controller at 127.0.0.1:" in text, text
    assert len(got) >= 60 and got == list(range(len(got))), got[:20]
    assert final["c"]["steps"]["got"]["in"] == len(got)
