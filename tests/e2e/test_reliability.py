"""Acknowledged pipes with real processes on real sockets: the device in the middle of a chain is
killed with SIGKILL and started again (CPython and MicroPython), the receiver is frozen with
SIGSTOP for 5 s. The values are numbered by a counter source; the sink must get each exactly once
and in order, through a count window on the middle device."""
import os
import signal
import time

import pytest

from procs import free_port, restart_on_port
from sensormesh.controller.deploy import deploy, status

N = 4000          # values from the counter source, 1000 per second
W = 5             # the middle device's count window


def assignments(addr, epoch=1):
    return {
        "a": {"pipeline": "rel", "epoch": epoch, "steps": [
            {"id": "s", "type": "source", "params": {"sensor": "counter", "count": N}},
            {"id": "o1", "type": "pipe_out", "params": {"edge": "e1", "to": addr["m"], "time-frame": 10},
             "inputs": ["s"]}]},
        "m": {"pipeline": "rel", "epoch": epoch, "steps": [
            {"id": "i1", "type": "pipe_in", "params": {"edge": "e1"}},
            {"id": "w", "type": "window", "params": {"values": W, "agg": "list"}, "inputs": ["i1"]},
            {"id": "o2", "type": "pipe_out", "params": {"edge": "e2", "to": addr["c"], "time-frame": 10},
             "inputs": ["w"]}]},
        "c": {"pipeline": "rel", "epoch": epoch, "steps": [
            {"id": "i2", "type": "pipe_in", "params": {"edge": "e2"}},
            {"id": "k", "type": "callback", "params": {}, "inputs": ["i2"]}]},
    }


def start_chain(devices, middle):
    ports = {n: free_port() for n in "amc"}
    procs = {
        "a": devices("cpython", ["--port", str(ports["a"]), "--name", "a", "--sensors", "counter@1000"]),
        "m": devices(middle, ["--port", str(ports["m"]), "--name", "m", "--sensors", ""]),
        "c": devices("cpython", ["--port", str(ports["c"]), "--name", "c", "--sensors", ""]),
    }
    addr = {n: "127.0.0.1:%d" % p for n, p in ports.items()}
    return ports, procs, addr


class Sink:
    def __init__(self):
        self.windows = []

    def deliver(self, device, step, values):
        if step == "k":
            self.windows.extend(values)

    def values(self):
        return [v for w in self.windows for v in w]


def check_exactly_once(sink, st=None):
    vals = sink.values()
    missing = sorted(set(range(N)) - set(vals))
    assert len(vals) == N, "%d of %d values, missing %s..%s; %s" % (len(vals), N, missing[:1], missing[-1:], st)
    wrong = [i for i in range(N) if vals[i] != i][:5]
    assert not wrong, "first wrong positions %s: %s" % (wrong, [vals[i] for i in wrong])
    assert all(len(w) == W for w in sink.windows), "a window was regrouped"


def wait_unacked(address, at_least, timeout=20.0):
    """Poll a's status until its pipe out holds at least `at_least` unacknowledged values."""
    end = time.monotonic() + timeout
    held = 0
    while time.monotonic() < end:
        st = status({"a": address}, timeout=2.0)["a"]
        held = st["assignment"]["steps"]["o1"]["unacked"]
        if held >= at_least:
            return held
        time.sleep(0.02)                                      # polling interval, bounded by timeout
    return held


@pytest.mark.parametrize("middle", ["cpython", "micropython"])
def test_middle_device_killed_and_restarted_loses_and_repeats_nothing(devices, middle):
    ports, procs, addr = start_chain(devices, middle)
    asg = assignments(addr)
    dep = deploy(asg, addr)
    sink = Sink()
    try:
        assert dep.watch(sink.deliver, lambda: len(sink.windows) >= 120, timeout=30) is None
        assert len(sink.windows) >= 120
        # freeze the receiver first so acknowledgements stop: a then surely holds values m took in
        # and that had not left the pipeline when m dies
        os.kill(procs["c"].p.pid, signal.SIGSTOP)
        try:
            held = wait_unacked(addr["a"], at_least=50)
            os.kill(procs["m"].p.pid, signal.SIGKILL)       # values inside m are gone with it
            procs["m"].p.wait(10)
        finally:
            os.kill(procs["c"].p.pid, signal.SIGCONT)
        assert held >= 50
        seen = len(sink.windows)
        restart_on_port(devices, middle, ["--port", str(ports["m"]), "--name", "m", "--sensors", ""], ports["m"])
        dm = deploy({"m": asg["m"]}, {"m": addr["m"]})      # the same assignment on the new process
        try:
            dep.watch(sink.deliver, lambda: len(sink.values()) >= N, timeout=60)
        finally:
            dm.close()
        assert len(sink.windows) > seen
        st = status(addr)
        check_exactly_once(sink, st)
        assert st["c"]["assignment"]["steps"]["i2"]["lost"] == 0
        # the restarted device got its input again from a (replay) and continued e2's numbering
        a_out = st["a"]["assignment"]["steps"]["o1"]
        assert a_out["resent"] > 0 and a_out["evicted"] == 0, a_out
        assert st["m"]["assignment"]["steps"]["i1"]["in"] < N     # it did not start from the beginning
    finally:
        dep.close()


def test_receiver_frozen_for_five_seconds_loses_nothing(devices):
    ports, procs, addr = start_chain(devices, "cpython")
    dep = deploy(assignments(addr), addr)
    sink = Sink()
    pid = procs["c"].p.pid
    frozen = False
    try:
        dep.watch(sink.deliver, lambda: len(sink.windows) >= 100, timeout=30)
        os.kill(pid, signal.SIGSTOP)
        frozen = True
        held = 0
        end = time.monotonic() + 5.0                          # the fault lasts 5 s
        while time.monotonic() < end:
            st = status({"a": addr["a"]}, timeout=2.0)["a"]
            held = max(held, st["assignment"]["steps"]["o1"]["unacked"])
            time.sleep(0.5)                                   # sampling the sender while the fault lasts
        os.kill(pid, signal.SIGCONT)
        frozen = False
        # acknowledgements stopped with the receiver, through the middle device: a kept its values
        assert held > 1000, held
        dep.watch(sink.deliver, lambda: len(sink.values()) >= N, timeout=60)
        st = status(addr)
        check_exactly_once(sink, st)
        assert st["a"]["assignment"]["steps"]["o1"]["evicted"] == 0
    finally:
        if frozen:
            os.kill(pid, signal.SIGCONT)
        dep.close()


@pytest.mark.parametrize("sender", ["cpython", "micropython"])
def test_receiver_frozen_past_the_memory_bound_spools_to_disk_and_loses_nothing(devices, tmp_path, sender):
    # a keeps 300 values in memory and may spool 256 KB; m is frozen for about 3000 values
    ports = {n: free_port() for n in "amc"}
    procs = {
        "a": devices(sender, ["--port", str(ports["a"]), "--name", "a", "--sensors", "counter@1000"],
                     cwd=str(tmp_path)),
        "m": devices("cpython", ["--port", str(ports["m"]), "--name", "m", "--sensors", ""]),
        "c": devices("cpython", ["--port", str(ports["c"]), "--name", "c", "--sensors", ""]),
    }
    addr = {n: "127.0.0.1:%d" % p for n, p in ports.items()}
    asg = assignments(addr)
    asg["a"]["steps"][1]["params"].update({"buffer": 300, "spool": 262144})
    dep = deploy(asg, addr)
    sink = Sink()
    pid = procs["m"].p.pid
    frozen = False
    try:
        dep.watch(sink.deliver, lambda: len(sink.windows) >= 60, timeout=30)
        os.kill(pid, signal.SIGSTOP)
        frozen = True
        spooled = 0
        end = time.monotonic() + 30.0
        while spooled < 2000 and time.monotonic() < end:      # until a has spooled 2000 values
            st = status({"a": addr["a"]}, timeout=2.0)["a"]["assignment"]["steps"]["o1"]
            spooled = st.get("spooled", 0)
            time.sleep(0.2)                                    # sampling the sender's status
        files = os.listdir(os.path.join(str(tmp_path), ".sensormesh", "spool", "a", "e1"))
        os.kill(pid, signal.SIGCONT)
        frozen = False
        assert spooled >= 2000 and files, (spooled, files)
        dep.watch(sink.deliver, lambda: len(sink.values()) >= N, timeout=60)
        st = status(addr)
        check_exactly_once(sink, st)
        o1 = st["a"]["assignment"]["steps"]["o1"]
        assert o1["evicted"] == 0 and o1["spool"]["values"] == 0, o1
        assert st["m"]["assignment"]["steps"]["i1"]["lost"] == 0
    finally:
        if frozen:
            os.kill(pid, signal.SIGCONT)
        dep.close()
