"""A pipe whose receiver takes the connection and then refuses the edge (restarted, or not
deployed yet) backs off as a dial that fails outright does, instead of dialing ten times a
second for as long as the refusal lasts; once the receiver is deployed the values flow, every
one once. Real processes, both interpreters on either end."""
import select
import time

import pytest

from procs import free_port
from sensormesh.controller.deploy import deploy, status
from sensormesh.device.schedule import RETRY_MS

N = 40


@pytest.mark.parametrize("sender,receiver", [("cpython", "micropython"), ("micropython", "cpython")])
def test_a_pipe_refused_by_a_receiver_waiting_for_its_deployment_backs_off_then_delivers(devices, sender, receiver):
    ports = {"a": free_port(), "c": free_port()}
    devices(sender, ["--port", str(ports["a"]), "--name", "a", "--sensors", "counter@50"])
    c = devices(receiver, ["--port", str(ports["c"]), "--name", "c", "--sensors", ""])
    addr = {n: "127.0.0.1:%d" % p for n, p in ports.items()}
    send = {"a": {"pipeline": "rb", "epoch": 1, "steps": [
        {"id": "s", "type": "source", "params": {"sensor": "counter", "count": N}},
        {"id": "o", "type": "pipe_out", "params": {"edge": "e", "to": addr["c"], "time-frame": 20},
         "inputs": ["s"]}]}}
    take = {"c": {"pipeline": "rb", "epoch": 1, "steps": [
        {"id": "i", "type": "pipe_in", "params": {"edge": "e"}},
        {"id": "k", "type": "callback", "params": {"name": "got"}, "inputs": ["i"]}]}}
    first = deploy(send, {"a": addr["a"]})
    try:
        # c has no pipe_in for the edge yet: it takes each connection and refuses the edge.
        # The sender's connections that came up, counted as time goes by:
        t0 = time.monotonic()
        connects = 0
        while connects < len(RETRY_MS) + 2:
            assert time.monotonic() - t0 < 30, "the sender stopped dialing: %r" % connects
            connects = status({"a": addr["a"]})["a"]["assignment"]["steps"]["o"]["connects"]
            select.select([], [], [], 0.05)     # the next look at the count (bounded by the loop above)
        took = time.monotonic() - t0
        table = sum(RETRY_MS) + RETRY_MS[-1]    # the pauses before the 6th connection
        assert took >= 0.75 * table / 1000.0, (took, connects)   # (0.6 s when each pause was 100 ms)
        second = deploy(take, {"c": addr["c"]})
        got = []
        try:
            second.watch(lambda dev, step, values: got.extend(values), until=lambda: len(got) >= N, timeout=30)
            final = second.stop()
        finally:
            second.close()
        assert got == list(range(N)), got
        assert final["c"]["steps"]["i"]["lost"] == 0, final
    finally:
        first.stop()
        first.close()
