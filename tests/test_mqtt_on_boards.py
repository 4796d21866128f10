# MQTT and boards: the planning rule that keeps MQTT steps on CPython devices (a board reaches
# a broker through a pipe to one), and the measurement behind it: micropython-lib's
# umqtt.simple, precompiled as `mip` installs it on a board, imported on the MicroPython unix
# port and publishing to a real Mosquitto (started here on a free loopback port, stopped by PID),
# costs what docs/integrations.md and docs/performance.md say (benchmarks/bench_umqtt_heap.py
# prints the full table). The umqtt module is not part of this repository: `bash scripts/dev
# setup` fetches it into .venv/lib/micropython-lib/, and without it that test skips saying so.
import os
import sys

import pytest

from sensormesh.api import Pipeline, PlacementError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

from bench_umqtt_heap import CLIENT_PROBE, compile_umqtt, run_mp, umqtt_dir  # noqa: E402
from sensormesh.board import _find_tool  # noqa: E402
from test_mqtt import MOSQUITTO, Subscriber, broker  # noqa: E402, F401  (Mosquitto on a free port, by PID)


def lab():
    p = Pipeline("mqtt-lab")
    p.device("board", interpreter="micropython", sensors=["temperature"], address="10.0.0.1:7000")
    p.device("pi", cpu=4, address="10.0.0.2:7000")
    return p


def test_mqtt_steps_are_placed_on_the_cpython_device():
    p = lab()
    p.source("temperature").window(values=10, agg="mean", id="avg").mqtt_out("127.0.0.1:1883", "lab/{step}",
                                                                                id="pub")
    p.mqtt_in("127.0.0.1:1883", "lab/+/setpoint", id="sub").print(id="show")
    pl = p.plan()
    assert pl.device_of["pub"] == "pi" and pl.device_of["sub"] == "pi"
    assert pl.device_of["temperature"] == "board"


@pytest.mark.parametrize("kind", ["mqtt_out", "mqtt_in"])
def test_an_mqtt_step_pinned_to_a_board_is_refused_with_the_reason(kind):
    p = lab()
    if kind == "mqtt_out":
        p.source("temperature").mqtt_out("127.0.0.1:1883", "lab/t", id="m", on="board")
    else:
        p.mqtt_in("127.0.0.1:1883", "lab/#", id="m", on="board").print(on="pi")
    with pytest.raises(PlacementError) as e:
        p.plan()
    text = str(e.value)
    assert "step 'm'" in text and "must run on board (micropython) but needs cpython" in text
    assert "MQTT steps run on CPython devices" in text


UMQTT = umqtt_dir()


def _tools():
    """None when micropython and mpy-cross are there, else what is missing."""
    try:
        _find_tool("micropython")
        _find_tool("mpy-cross")
    except Exception as e:
        return str(e)
    return None


@pytest.mark.skipif(UMQTT is None, reason="micropython-lib's umqtt.simple is not installed: `bash scripts/dev "
                    "setup` fetches micropython-umqtt.simple 1.3.4 into .venv/lib/micropython-lib/")
@pytest.mark.skipif(MOSQUITTO is None, reason="mosquitto is not installed (bash scripts/dev setup installs it)")
@pytest.mark.skipif(_tools() is not None, reason="the MicroPython unix port or mpy-cross is missing")
def test_umqtt_simple_on_the_unix_port_costs_what_the_docs_say(broker, tmp_path):
    sub = Subscriber(broker, "bench/umqtt/#")
    try:
        out = tmp_path / "mpy"
        compile_umqtt(UMQTT, str(out))          # as `mip` installs it on a board
        values = 200
        r = run_mp(CLIENT_PROBE % {"port": broker, "values": values, "topic": "bench/umqtt/avg"}, "256K", str(out))
        assert r.returncode == 0, r.stderr
        vals = dict((ln.split("|")[0], [int(x) for x in ln.split("|")[1:]])
                    for ln in r.stdout.splitlines() if "|" in ln)
        got = sub.wait(2 * values)
        # every value arrived, in order, at QoS 0 and then at QoS 1
        assert [v for _, v in got] == [i * 0.5 for i in range(values)] * 2
        # the docs: 4.4 KB for the import (.mpy) and 0.4 KB for a connected client on the unix
        # port; publishing keeps nothing (0.2 KB after 1000 values at either QoS)
        assert 2048 < vals["import"][0] <= 6 * 1024, vals
        assert vals["connect"][0] <= 1024, vals
        for q in ("qos0", "qos1"):
            assert vals[q][0] <= 1024 and vals[q][1] <= 1024, vals
    finally:
        sub.close()
