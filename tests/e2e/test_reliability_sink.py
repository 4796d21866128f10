"""The sink device (the one whose steps hand values to the controller and write a csv file) is
killed with SIGKILL and started again, with real processes on real sockets (CPython and
MicroPython sinks). Before the kill the controller stops reading for a while, so the sink holds
values it has sent but that are not confirmed, and its upstream holds their inputs: the restarted
sink gets them replayed and numbers its callback and its file position as before. The controller
must hand on each counter value exactly once, in order, and the file must hold each once.

The restarted sink gets its input replayed as soon as its pipe exists, before the controller
starts it, so its first callback values may reach the controller before the reply to `start`
(the more likely the busier the machine). The test forces that order: the controller sends
`start` only once a delivery waits on the session. Those values must be handed on like any other
(taking the first message after `start` as its reply lost them: about 400 values, while the sink
counted them as delivered)."""
import os
import select
import signal

import pytest

from procs import free_port, restart_on_port, wait_step
from sensormesh.controller import deploy as deploying
from sensormesh.controller.deploy import deploy, status

N = 4000          # values from the counter source, 1000 per second


def assignments(addr, csv_path):
    return {
        "a": {"pipeline": "sink", "epoch": 1, "steps": [
            {"id": "s", "type": "source", "params": {"sensor": "counter", "count": N}},
            {"id": "o1", "type": "pipe_out", "params": {"edge": "e1", "to": addr["m"], "time-frame": 10},
             "inputs": ["s"]}]},
        "m": {"pipeline": "sink", "epoch": 1, "steps": [
            {"id": "i1", "type": "pipe_in", "params": {"edge": "e1"}},
            {"id": "o2", "type": "pipe_out", "params": {"edge": "e2", "to": addr["c"], "time-frame": 10},
             "inputs": ["i1"]}]},
        "c": {"pipeline": "sink", "epoch": 1, "steps": [
            {"id": "i2", "type": "pipe_in", "params": {"edge": "e2"}},
            {"id": "k", "type": "callback", "params": {}, "inputs": ["i2"]},
            {"id": "f", "type": "csv", "params": {"path": csv_path}, "inputs": ["i2"]}]},
    }


@pytest.mark.parametrize("sink", ["cpython", "micropython"])
def test_sink_device_killed_and_restarted_hands_on_and_writes_each_value_once(devices, tmp_path, sink, monkeypatch):
    ports = {n: free_port() for n in "amc"}
    devices("cpython", ["--port", str(ports["a"]), "--name", "a", "--sensors", "counter@1000"])
    devices("cpython", ["--port", str(ports["m"]), "--name", "m", "--sensors", ""])
    c = devices(sink, ["--port", str(ports["c"]), "--name", "c", "--sensors", ""])
    addr = {n: "127.0.0.1:%d" % p for n, p in ports.items()}
    csv_path = str(tmp_path / "sink.csv")
    asg = assignments(addr, csv_path)
    dep = deploy(asg, addr)
    got = []

    def deliver(device, step, values):
        if step == "k":
            got.extend(values)
    dc = None
    try:
        assert dep.watch(deliver, lambda: len(got) >= 500, timeout=30) is None
        # the controller stops reading: c's deliveries wait unconfirmed, and m keeps their inputs
        wait_step(addr, "m", "o2", lambda s: s["unacked"] >= 300)
        os.kill(c.p.pid, signal.SIGKILL)
        c.p.wait(10)
        restart_on_port(devices, sink, ["--port", str(ports["c"]), "--name", "c", "--sensors", ""], ports["c"])
        # the same assignment on the new process; the controller remembers what it took. It says
        # start only once the deployed sink has sent callback values (its replay came first)
        request = deploying.request

        def start_after_a_delivery(session, msg, key, aside):
            if "start" in msg:
                ready, _, _ = select.select([session.client.sock], [], [], 30)
                assert ready, "the deployed sink sent no callback values before its start"
            return request(session, msg, key, aside)
        monkeypatch.setattr(deploying, "request", start_after_a_delivery)
        dc = deploy({"c": asg["c"]}, {"c": addr["c"]}, deliveries=dep.deliveries)
        assert dc.pending and all("deliver" in m for _, m in dc.pending), dc.pending
        dep.watch(deliver, lambda: False, timeout=1.0)    # what the dead process had sent (until its EOF)
        dc.watch(deliver, lambda: len(got) >= N, timeout=60)
        assert got == list(range(N)), (len(got), [i for i in range(min(N, len(got))) if got[i] != i][:3],
                                       "the killed sink's log: " + c.p.stderr.read()[-3000:])
        # the restarted sink numbered its deliveries as before: the controller dropped values
        assert dep.deliveries.duplicates > 0
        dc.stop()
        with open(csv_path) as f:
            rows = [int(x) for x in f.read().split("\n") if x]
        assert rows == list(range(N)), (len(rows), [i for i in range(min(N, len(rows))) if rows[i] != i][:3])
        st = status({"m": addr["m"]})["m"]["assignment"]["steps"]
        assert st["o2"]["resent"] > 0 and st["o2"]["evicted"] == 0, st["o2"]
    finally:
        if dc is not None:
            dc.close()
        dep.close()
