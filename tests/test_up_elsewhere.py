"""`sensormesh up` when its pipeline is stopped from another terminal, and its exit status.

Before, `up` went on watching a pipeline that `sensormesh stop FILE` had stopped (its devices
ran nothing, it printed nothing more) until its duration or a Ctrl-C. Now it notices the devices'
status (the pipeline stopped there), says so, ends without stopping it again and exits 0, with
every value the sink took delivered once. SIGTERM ends `up` as Ctrl-C does (the pipeline is
stopped, the counts shown), with exit status 143 as `top` and `status --watch` do."""
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time

from procs import ROOT, need_micropython


def sink_file(tmp_path, name):
    text = textwrap.dedent("""\
        pipeline: %s
        devices:
          a: {interpreter: cpython, sensors: ["counter@200"], local: true}
          b: {interpreter: micropython, local: true}
        steps:
          n: {type: source, sensor: counter, on: a}
        sinks:
          k: {type: callback, input: n, on: b}
        """) % name
    path = tmp_path / ("%s.yaml" % name)
    path.write_text(text)
    return str(path)


def start_up(path, *more):
    env = dict(os.environ, PYTHONPATH=ROOT, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "sensormesh.cli", "up", path, "--insecure", "--quiet-devices",
                             "--no-metrics-file", "--rates-every", "0"] + list(more),
                            cwd=os.path.dirname(path), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def read_until_values(p, lines, n):
    deadline = time.monotonic() + 60
    got = 0
    while got < n and time.monotonic() < deadline:
        line = p.stdout.readline()
        if not line:
            break
        lines.append(line)
        got += line.startswith("k ")
    assert got >= n, "".join(lines)


def read_to_end(p, lines, within=60):
    watchdog = threading.Timer(within, p.kill)      # bounds the read if `up` does not end
    watchdog.start()
    try:
        for line in p.stdout:
            lines.append(line)
    finally:
        watchdog.cancel()
    return p.wait(timeout=30)


def values(out):
    return [int(line.split()[1]) for line in out.splitlines() if line.startswith("k ")]


def test_up_ends_cleanly_when_the_pipeline_is_stopped_from_another_terminal(tmp_path):
    need_micropython()
    path = sink_file(tmp_path, "elsewhere")
    p = start_up(path, "--duration", "90")
    lines = []
    try:
        read_until_values(p, lines, 20)
        env = dict(os.environ, PYTHONPATH=ROOT)
        st = subprocess.run([sys.executable, "-m", "sensormesh.cli", "stop", path, "--insecure"],
                            cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=60)
        assert st.returncode == 0, st.stdout + st.stderr
        code = read_to_end(p, lines)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    out = "".join(lines)
    assert code == 0, out
    assert "stopped from elsewhere: " in out and "reports pipeline elsewhere stopped" in out, out
    assert "up ends without stopping it again" in out
    assert "stopping (duration)" not in out and "stopping (" not in out, out
    # every value the sink took (the other terminal's stop counted them) reached `up` once, in order
    took = int(re.search(r"b: k (\d+)>", st.stdout).group(1))
    assert values(out) == list(range(took)), (took, out[-2000:])


def test_up_ended_by_sigterm_stops_the_pipeline_and_exits_143(tmp_path):
    need_micropython()
    path = sink_file(tmp_path, "termed")
    p = start_up(path)
    lines = []
    try:
        read_until_values(p, lines, 20)
        p.send_signal(signal.SIGTERM)
        code = read_to_end(p, lines)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    out = "".join(lines)
    assert code == 143, out
    assert "stopping (interrupted)" in out and "stopped; per device" in out, out
    took = int(re.search(r"b: k (\d+)>", out).group(1))
    assert values(out) == list(range(took))


def test_deploy_watch_detaches_when_stopped_elsewhere_and_exits_143_on_sigterm(tmp_path, devices):
    from procs import free_port
    ports = {n: free_port() for n in "ab"}
    devices("cpython", ["--port", str(ports["a"]), "--name", "a", "--sensors", "counter@200"])
    devices("cpython", ["--port", str(ports["b"]), "--name", "b", "--sensors", ""])
    path = tmp_path / "watched.yaml"
    path.write_text(textwrap.dedent("""\
        pipeline: watched
        devices:
          a: {interpreter: cpython, sensors: ["counter@200"], address: "127.0.0.1:%d"}
          b: {interpreter: cpython, address: "127.0.0.1:%d"}
        steps:
          n: {type: source, sensor: counter, on: a}
        sinks:
          k: {type: callback, input: n, on: b}
        """) % (ports["a"], ports["b"]))
    env = dict(os.environ, PYTHONPATH=ROOT, PYTHONUNBUFFERED="1")

    def watch():
        return subprocess.Popen([sys.executable, "-m", "sensormesh.cli", "deploy", str(path), "--watch"],
                                cwd=str(tmp_path), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for how in ("stop", "sigterm"):
        p = watch()
        lines = []
        try:
            read_until_values(p, lines, 20)
            if how == "stop":
                st = subprocess.run([sys.executable, "-m", "sensormesh.cli", "stop", str(path)], cwd=str(tmp_path),
                                    env=env, capture_output=True, text=True, timeout=60)
                assert st.returncode == 0, st.stdout + st.stderr
            else:
                p.send_signal(signal.SIGTERM)
            code = read_to_end(p, lines)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        out = "".join(lines)
        if how == "stop":
            assert code == 0 and "detached: the pipeline was stopped or replaced from elsewhere" in out, out
        else:
            assert code == 143 and "detached (interrupted); the pipeline keeps running" in out, out
