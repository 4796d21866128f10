"""An assignment larger than a frame under the Supervisor, with keys: 200 sources on one device,
merged on another (200 pipe inputs). Both assignments are over the 12 KB a keyed link carries in
one frame, so they go in parts (sensormesh/device/runtime/parts.py); every value arrives.
tests/device/test_assignment_parts.py checks the device side on both interpreters."""
import os
import subprocess
import time

import pytest

from procs import ROOT, Recorder, device_argv, free_port
from sensormesh.controller.pipeline_file import load_model
from sensormesh.controller.supervisor import Supervisor
from sensormesh.device import codec

N = 200


@pytest.fixture(scope="module")
def keyring(tmp_path_factory):
    from sensormesh.controller.keys import provision_local
    store = str(tmp_path_factory.mktemp("large-keys") / "store")
    return {"store": store, "frags": provision_local(["src", "pc"], store)}


def fan_in_file(tmp_path, ports):
    lines = ["pipeline: wide", "devices:",
             '  src: {sensors: ["counter@0"], address: "127.0.0.1:%d"}' % ports["src"],
             '  pc: {cpu: 4, address: "127.0.0.1:%d"}' % ports["pc"], "steps:"]
    for i in range(N):
        lines.append("  s%03d: {type: source, sensor: counter, rate: 20, count: 2, on: src}" % i)
    lines.append("  all: {type: merge, inputs: [%s], on: pc}" % ", ".join("s%03d" % i for i in range(N)))
    lines += ["sinks:", "  out: {type: callback, input: all, on: pc}"]
    f = tmp_path / "wide.yaml"
    f.write_text("\n".join(lines) + "\n")
    return str(f)


def start_logged(argv, log):
    """A device process writing to the file log (200 pipes retrying their handshakes log more
    than a pipe holds); returns it once it listens."""
    env = dict(os.environ, PYTHONPATH=ROOT, PYTHONUNBUFFERED="1")
    with open(log, "w") as f:
        p = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while "listening on" not in open(log).read():
        assert p.poll() is None and time.monotonic() < deadline, open(log).read()
        time.sleep(0.05)      # waits for the line, bounded
    return p


def test_assignments_over_a_keyed_frame_are_deployed_in_parts_and_run(tmp_path, keyring):
    from sensormesh.controller.keys import load_controller
    ports = {n: free_port() for n in ("src", "pc")}
    procs = {}
    sup = None
    try:
        for n in ports:
            frag = keyring["frags"][n]
            procs[n] = start_logged(device_argv("cpython", [
                "--port", str(ports[n]), "--name", n, "--sensors", "counter@0",
                "--identity", frag["identity"], "--trust", frag["trust"]]), str(tmp_path / (n + ".log")))
        model = load_model(fan_in_file(tmp_path, ports))
        sup = Supervisor(model, "optimal", timeout=10.0, epoch=5, creds=load_controller(keyring["store"]))
        rec = Recorder()
        sup.deploy()
        for d in ("src", "pc"):
            size = len(codec.dumps({"deploy": {"assignment": sup.assignments[d]}}))
            assert size > sup._room(d), (d, size)       # it could not go as one frame
        assert len([s for s in sup.assignments["pc"]["steps"] if s["type"] == "pipe_in"]) == N
        sup.watch(rec.deliver, lambda: len(rec.got("out")) >= 2 * N, timeout=60, on_event=rec.event)
        assert sorted(rec.got("out")) == list(range(2 * N)), rec.events[:5]   # one counter, read by all
        per, _ = sup.status()
        # the controller takes large frames: the full status of 202 steps comes back
        assert per["pc"]["assignment"]["epoch"] == 5 and len(per["pc"]["assignment"]["steps"]) == N + 2
        final = sup.stop()
        assert final["pc"]["steps"]["all"]["out"] == 2 * N
    finally:
        if sup is not None:
            sup.close()
        for p in procs.values():       # by PID
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)
