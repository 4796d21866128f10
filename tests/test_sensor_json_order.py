"""Simulated sensors' values serialize with the same key order on CPython and on the
MicroPython unix port (a client comparing the two streams sees the same JSON shape).

MicroPython's dict iterates in hash order, not insertion order: a sensor gets the same JSON
only when its source writes the keys in the order MicroPython iterates them (poti writes its
two keys in the other order on MicroPython, where that dict iterates reversed)."""
import json
import os
import subprocess

import pytest

from procs import ROOT, need_micropython
from sensormesh.device.sensors.registry import SIM_KINDS, make

SCRIPT = """
import json
from sensormesh.device.sensors.registry import SIM_KINDS, make
for k in SIM_KINDS:
    s = make({"kind": k})
    print(k, json.dumps([s.get() for _ in range(3)]))
"""


def shape(v):
    """The value with every dict replaced by its keys in serialized order (numbers dropped:
    float formatting differs between the interpreters, key order must not)."""
    if isinstance(v, list):
        if v and isinstance(v[0], tuple):
            return [(k, shape(x)) for k, x in v]
        return [shape(x) for x in v]
    return None


def keys_in_order(text):
    return shape(json.loads(text, object_pairs_hook=list))


@pytest.mark.micropython
def test_every_simulated_sensor_has_the_same_key_order_on_both_interpreters():
    env = dict(os.environ, MICROPYPATH=ROOT + os.pathsep + ".frozen")
    r = subprocess.run([need_micropython(), "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    mp = dict(line.split(" ", 1) for line in r.stdout.strip().splitlines())
    assert sorted(mp) == sorted(SIM_KINDS)
    for k in SIM_KINDS:
        s = make({"kind": k})
        cp = json.dumps([s.get() for _ in range(3)])
        assert keys_in_order(cp) == keys_in_order(mp[k]), (k, cp, mp[k])
    assert json.loads(mp["dht11"], object_pairs_hook=list)[0][0][0] == "humidity"
    assert [k for k, _ in json.loads(mp["poti"], object_pairs_hook=list)[0]] == ["raw", "fraction"]
