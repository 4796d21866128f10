"""A link down longer than the memory bound, with real processes on loopback: the link between
the source device and the middle device goes through a forwarder that the test cuts (every
connection closed, new ones closed at once) until the sender's replay buffer (300 values) has
overflowed. With a spool on the sender nothing is lost; without one the loss the receiver
reports equals exactly the values missing at the sink (counted, never silent)."""

import pytest

from linkcut import Link
from procs import free_port, wait_step
from sensormesh.controller.deploy import deploy, status

N = 5000          # counter values at 1000 per second
BUFFER = 300


@pytest.mark.parametrize("spool", [262144, 0], ids=["spool", "no-spool"])
def test_link_down_longer_than_the_memory_bound(devices, tmp_path, spool):
    ports = {n: free_port() for n in "amc"}
    devices("cpython", ["--port", str(ports["a"]), "--name", "a", "--sensors", "counter@1000"], cwd=str(tmp_path))
    devices("cpython", ["--port", str(ports["m"]), "--name", "m", "--sensors", ""])
    devices("cpython", ["--port", str(ports["c"]), "--name", "c", "--sensors", ""])
    addr = {n: "127.0.0.1:%d" % p for n, p in ports.items()}
    link = Link(ports["m"])
    o1 = {"edge": "e1", "to": link.address(), "time-frame": 10, "buffer": BUFFER}
    if spool:
        o1["spool"] = spool
    asg = {
        "a": {"pipeline": "bound", "epoch": 1, "steps": [
            {"id": "s", "type": "source", "params": {"sensor": "counter", "count": N}},
            {"id": "o1", "type": "pipe_out", "params": o1, "inputs": ["s"]}]},
        "m": {"pipeline": "bound", "epoch": 1, "steps": [
            {"id": "i1", "type": "pipe_in", "params": {"edge": "e1"}},
            {"id": "o2", "type": "pipe_out", "params": {"edge": "e2", "to": addr["c"], "time-frame": 10},
             "inputs": ["i1"]}]},
        "c": {"pipeline": "bound", "epoch": 1, "steps": [
            {"id": "i2", "type": "pipe_in", "params": {"edge": "e2"}},
            {"id": "k", "type": "callback", "params": {}, "inputs": ["i2"]}]},
    }
    dep = deploy(asg, addr)
    got = []

    def deliver(device, step, values):
        if step == "k":
            got.extend(values)
    try:
        assert dep.watch(deliver, lambda: len(got) >= 500, timeout=30) is None
        link.cut()
        # the link stays down until the sender is well past its memory bound
        if spool:
            wait_step(addr, "a", "o1", lambda s: s.get("spooled", 0) >= 4 * BUFFER)
        else:
            wait_step(addr, "a", "o1", lambda s: s["evicted"] >= 4 * BUFFER)
        link.heal()
        # the controller reads (and confirms) until the last value is in
        dep.watch(deliver, lambda: got and got[-1] == N - 1, timeout=60)
        dep.watch(deliver, lambda: False, timeout=0.3)        # anything still on its way
        a_st = wait_step(addr, "a", "o1", lambda s: s["in"] == N and s["unacked"] == 0, timeout=30)
        assert got == sorted(set(got)), "repeated or out of order"
        m_in = status({"m": addr["m"]})["m"]["assignment"]["steps"]["i1"]
        missing = N - len(got)
        if spool:
            assert got == list(range(N)), (len(got), missing)
            assert a_st["evicted"] == 0 and a_st["spooled"] >= 4 * BUFFER and m_in["lost"] == 0, (a_st, m_in)
        else:
            assert missing >= 4 * BUFFER - BUFFER, missing      # the outage outlasted the buffer
            assert m_in["lost"] == missing, (m_in, missing)      # reported exactly
            assert a_st["evicted"] >= missing, a_st               # the sender counted them too
    finally:
        link.stop()
        dep.close()
