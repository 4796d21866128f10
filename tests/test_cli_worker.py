"""The worker and client commands as a user runs them."""
import json
import os
import subprocess
import sys
import time

import pytest

from procs import ROOT

INTERPS = ["cpython", "micropython"]


def run_client(*args, timeout=60):
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, "-m", "sensormesh.cli", "client"] + list(args), cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("interp", INTERPS)
def test_client_prints_json_lines_and_stops_after_count(devices, port, interp):
    devices(interp, ["--port", str(port), "--sensors", "dht11@20,gyro"])
    r = run_client("127.0.0.1:%d" % port, "--sensor", "dht11", "--time-frame", "100", "--count", "3")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 3
    for ln in lines:
        frame = json.loads(ln)
        assert isinstance(frame, list) and frame and set(frame[0]) == {"temperature", "humidity"}


@pytest.mark.parametrize("interp", INTERPS)
def test_client_reports_device_error_with_status_1(devices, port, interp):
    devices(interp, ["--port", str(port), "--sensors", "dht11"])
    r = run_client("127.0.0.1:%d" % port, "--sensor", "radar")
    assert r.returncode == 1
    assert "unknown sensor 'radar'" in r.stderr and "dht11" in r.stderr


def test_worker_rejects_unknown_sensor_kind(port):
    r = subprocess.run([sys.executable, "-m", "sensormesh.cli", "worker", "--port", str(port), "--sensors", "lava"],
                       cwd=ROOT, capture_output=True, text=True, timeout=60, env=dict(os.environ, PYTHONPATH=ROOT))
    assert r.returncode != 0
    assert "unknown simulated sensor 'lava'" in r.stderr


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.parametrize("interp", INTERPS)
def test_idle_worker_does_not_busy_poll(devices, port, interp):
    p = devices(interp, ["--port", str(port)])
    pid = p.p.pid
    c0, t0 = cpu_seconds(pid), time.monotonic()
    time.sleep(2.0)  # a measurement window, not synchronisation
    used = (cpu_seconds(pid) - c0) / (time.monotonic() - t0)
    assert used < 0.02, "idle worker used %.1f%% of a core" % (used * 100)


def test_client_fails_when_the_device_closes_before_count(port):
    """A device that ends the stream early: the client says so and exits 1 (not 0 with less)."""
    import socket
    import struct
    import threading

    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port))
    srv.listen(1)
    srv.settimeout(30)

    def serve():
        conn, _ = srv.accept()
        with conn:
            conn.settimeout(30)
            conn.recv(4096)                          # the data request
            for v in (1, 2):
                body = json.dumps([{"t": v}]).encode()
                conn.sendall(struct.pack(">I", len(body)) + body)
    t = threading.Thread(target=serve)
    t.start()
    try:
        r = run_client("127.0.0.1:%d" % port, "--sensor", "t", "--count", "5")
    finally:
        t.join(30)
        srv.close()
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert len(r.stdout.strip().splitlines()) == 2
    assert "127.0.0.1:%d closed the stream after 2 of 5 data messages" % port in r.stderr


def test_worker_listens_on_loopback_by_default(port):
    from procs import Proc
    p = Proc([sys.executable, "-m", "sensormesh.cli", "worker", "--port", str(port), "--sensors", "dht11"])
    try:
        line = p.wait_line("listening on")
    finally:
        p.stop()
    assert "tcp 127.0.0.1:%d" % port in line, line
