"""What a device says on its console, as a user reads it: its name, whether it is plaintext,
one line per refused request (with the peer, no gap where a Unix socket has none), and
"stopped" when `sensormesh up` stops it, on both interpreters."""
import os
import subprocess
import sys

import pytest

from procs import ROOT, free_port, need_micropython
from sensormesh.client import Client, DeviceError
from sensormesh.controller.local import LocalProcess

INTERPS = ["cpython", "micropython"]


def argv_for(interp):
    if interp == "micropython":
        return [need_micropython(), "-m", "sensormesh.device"]
    return [sys.executable, "-m", "sensormesh.device"]


def env_for():
    return dict(os.environ, PYTHONPATH=ROOT, PYTHONUNBUFFERED="1", MICROPYPATH=ROOT + os.pathsep + ".frozen")


@pytest.mark.parametrize("interp", INTERPS)
def test_unnamed_device_line_refusal_and_stop(tmp_path, interp):
    port = free_port()
    sock = str(tmp_path / "d.sock")
    p = LocalProcess("d", argv_for(interp) + ["--port", str(port), "--unix", sock, "--sensors", "dht11"],
                     env_for(), ROOT, interp, lambda name, line: None)
    try:
        p.wait_listening(30)
        c = Client("unix:" + sock, timeout=10)
        try:
            c.request_data("radar")
            with pytest.raises(DeviceError):
                list(c.messages())
        finally:
            c.close()
    finally:
        code = p.stop()
    text = "\n".join(p.lines)
    # by default a MicroPython device listens on every interface (as a board does), a CPython one on loopback
    host = "0.0.0.0" if interp == "micropython" else "127.0.0.1"
    assert "sensormesh device device-%d listening on tcp %s:%d (plaintext)" % (port, host, port) in text, text
    assert "device device " not in text
    refusals = [ln for ln in p.lines if "radar" in ln]
    assert len(refusals) == 1, text
    assert refusals[0].startswith("[device-%d] refused data request (unknown-sensor): unknown sensor 'radar'" % port), \
        refusals[0]
    assert p.lines[-1] == "[device-%d] stopped" % port, text
    assert code == 0


def test_worker_says_plaintext_on_loopback(tmp_path):
    port = free_port()
    r = subprocess.Popen([sys.executable, "-m", "sensormesh.cli", "worker", "--port", str(port)],
                         cwd=ROOT, env=env_for(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = r.stdout.readline()
    finally:
        r.terminate()
        r.wait(10)
        r.stdout.close()
    assert line.strip() == "sensormesh device worker-%d listening on tcp 127.0.0.1:%d (plaintext)" % (port, port)
