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
