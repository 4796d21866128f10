"""A device short of memory for its assignment says so ("out-of-memory"); the supervisor asks it
again, alone, and names it if it stays short (all or nothing: the others are stopped again).
Two CPython devices in this process, on their own loop in a thread; the shortage is made by
the build of the assignment failing with MemoryError on device "a" (tests/device/test_assignment.py
checks the device's answer on both interpreters)."""
import threading

import pytest

from sensormesh.controller.pipeline_file import load_model
from sensormesh.controller.supervisor import SupervisorError, Supervisor
from sensormesh.device import transport
from sensormesh.device.core import Device
from sensormesh.device.runtime import deploy as device_deploy

FILE = """
pipeline: mem
devices:
  a: {sensors: ["counter@0"], address: "%(a)s"}
  b: {address: "%(b)s"}
steps:
  s: {type: source, sensor: counter, rate: 50, on: a}
sinks:
  k: {type: callback, input: s, on: b, name: out}
"""


@pytest.fixture
def two(tmp_path):
    loop = transport.Loop()
    devs = {"a": Device("a", ["counter@0"], loop=loop), "b": Device("b", [], loop=loop)}
    addrs = {}
    for n, d in devs.items():
        from sensormesh.device import boot
        lst = boot.listen_tcp(d, "127.0.0.1", 0)
        addrs[n] = "127.0.0.1:%d" % lst.sock.getsockname()[1]
    t = threading.Thread(target=loop.run, daemon=True)
    t.start()
    f = tmp_path / "mem.yaml"
    f.write_text(FILE % addrs)
    yield load_model(str(f)), devs
    loop.stop()
    t.join(10)
    for d in devs.values():
        d.close()


def short_on_a(monkeypatch, times):
    """device a's next `times` builds fail for want of memory; returns the list of a's tries
    (and in built, every device whose assignment was built)."""
    build = device_deploy.build
    tries = []
    del built[:]

    def maybe_short(rt, asg):
        built.append(rt.device.name)
        if rt.device.name == "a":
            tries.append(len(tries))
            if len(tries) <= times:
                raise MemoryError("memory allocation failed, allocating 76 bytes")
        return build(rt, asg)
    monkeypatch.setattr(device_deploy, "build", maybe_short)
    return tries


built = []


def test_a_device_short_of_memory_is_asked_again_and_runs(two, monkeypatch):
    model, devs = two
    tries = short_on_a(monkeypatch, 1)
    events = []
    sup = Supervisor(model, "optimal", timeout=10.0)
    sup._on_event = events.append
    try:
        sup.deploy()
        assert sup.deployed == {"a", "b"} and len(tries) == 2
        assert any("a had no memory free for its assignment; asking again, one at a time (1 of 2)" in e
                   for e in events), events
        got = []
        sup.watch(lambda dev, step, vals: got.extend(vals), lambda: len(got) >= 3, timeout=30)
        assert len(got) >= 3
    finally:
        sup.stop()
        sup.close()


def test_a_device_that_stays_short_is_named_and_nothing_stays_deployed(two, monkeypatch):
    model, devs = two
    tries = short_on_a(monkeypatch, 99)
    sup = Supervisor(model, "optimal", timeout=10.0)
    with pytest.raises(SupervisorError) as e:
        sup.deploy()
    assert "device a " in str(e.value) and "no memory free for its assignment" in str(e.value), str(e.value)
    assert len(tries) == 3            # the first time and MEMORY_RETRIES more
    # all or nothing: b, deployed (at the same time as a), was stopped again
    assert "b" in built
    st = devs["b"].runtime.status() if devs["b"].runtime is not None else {}
    assert (st.get("assignment") or st).get("state", "empty") in ("empty", "stopped"), st
