"""`sensormesh top` and `status --watch` from the command line, against a real device: they end
on SIGTERM (a service manager, `kill`) as on Ctrl-C (the metrics file is finished and named, no
traceback, exit status 143 = 128 + 15), and `status --watch --json` prints JSON Lines."""
import json
import signal
import sqlite3
import sys
import textwrap

import pytest

from procs import Proc, free_port


def watched_file(tmp_path, port):
    f = tmp_path / "w.yaml"
    f.write_text(textwrap.dedent("""
        pipeline: watched
        devices:
          a: {address: "127.0.0.1:%d", sensors: [counter]}
        steps:
          s: {type: source, sensor: counter, rate: 20, on: a}
        sinks:
          k: {type: print, input: s, on: a}
        """ % port))
    return str(f)


@pytest.mark.parametrize("command, ready", [
    (["status", "--watch", "--interval", "0.3"], "rates: load a "),
    (["top", "--interval", "0.3"], None),
])
def test_sigterm_ends_the_watch_cleanly_with_143(devices, tmp_path, command, ready):
    port = free_port()
    devices("cpython", ["--port", str(port), "--name", "a", "--sensors", "counter"])
    out = tmp_path / "m.sqlite"
    argv = [sys.executable, "-m", "sensormesh.cli", command[0], watched_file(tmp_path, port)] + command[1:] + \
        ["--insecure", "--metrics-out", str(out)]
    p = Proc(argv, cwd=str(tmp_path))
    try:
        if ready:
            p.wait_line(ready, timeout=30)
        else:             # top writes to a pipe only at its end: wait until it wrote samples
            import time
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    n = sqlite3.connect(str(out)).execute("select count(*) from samples").fetchone()[0]
                except sqlite3.Error:
                    n = 0
                if n:
                    break
                p.p.poll()
                assert p.p.returncode is None
                select_wait(p)
        p.p.send_signal(signal.SIGTERM)
        p.wait_line("metrics written to %s" % out, timeout=30)
        assert p.p.wait(30) == 143
        err = p.p.stderr.read()
    finally:
        p.stop()
    assert "Traceback" not in err and "Aborted" not in err, err
    db = sqlite3.connect(str(out))
    assert db.execute("select count(*) from samples where device = 'a'").fetchone()[0] > 0


def select_wait(p):
    """Wait a little for the process without sleeping blindly: until it exits or 0.1 s pass."""
    import subprocess
    try:
        p.p.wait(0.1)
    except subprocess.TimeoutExpired:
        pass


def test_status_watch_json_prints_one_json_object_per_line_per_poll(devices, tmp_path):
    port = free_port()
    devices("cpython", ["--port", str(port), "--name", "a", "--sensors", "counter"])
    out = tmp_path / "m.sqlite"
    p = Proc([sys.executable, "-m", "sensormesh.cli", "status", watched_file(tmp_path, port), "--watch", "--json",
              "--interval", "0.3", "--duration", "1.5", "--insecure", "--metrics-out", str(out)], cwd=str(tmp_path))
    try:
        assert p.p.wait(60) == 0
        text, err = p.p.stdout.read(), p.p.stderr.read()
    finally:
        p.stop()
    lines = text.splitlines()
    assert len(lines) >= 3, text
    rounds = [json.loads(line) for line in lines]      # every line is one whole JSON object
    assert all(set(r) == {"t", "status", "affected", "metrics"} for r in rounds)
    assert [r["t"] for r in rounds] == sorted(r["t"] for r in rounds)
    assert all(r["status"]["a"]["name"] == "a" for r in rounds), rounds[0]["status"]
    assert "a" in rounds[-1]["metrics"]["devices"]
    assert "metrics written to %s" % out in err


def test_status_watch_json_first_line_holds_every_device(devices, tmp_path):
    """The poller spreads its requests over the period; the first line must still show the metrics
    of every device that answers, not only those of the first slot."""
    ports = [free_port() for _ in range(3)]
    for name, port in zip("abc", ports):
        devices("cpython", ["--port", str(port), "--name", name, "--sensors", "counter"])
    f = tmp_path / "w3.yaml"
    f.write_text(textwrap.dedent("""
        pipeline: watched3
        devices:
          a: {address: "127.0.0.1:%d", sensors: [counter]}
          b: {address: "127.0.0.1:%d", sensors: [counter]}
          c: {address: "127.0.0.1:%d", sensors: [counter]}
        steps:
          s: {type: source, sensor: counter, rate: 20, on: a}
        sinks:
          k: {type: print, input: s, on: a}
        """ % tuple(ports)))
    p = Proc([sys.executable, "-m", "sensormesh.cli", "status", str(f), "--watch", "--json",
              "--interval", "5", "--duration", "1", "--insecure", "--no-metrics-file"], cwd=str(tmp_path))
    try:
        assert p.p.wait(60) == 0
        text = p.p.stdout.read()
    finally:
        p.stop()
    first = json.loads(text.splitlines()[0])
    assert sorted(first["status"]) == ["a", "b", "c"]
    assert sorted(first["metrics"]["devices"]) == ["a", "b", "c"], first["metrics"]["devices"]
    # one snapshot each so far: no rate yet (never one over a sliver of a poll interval)
    assert all(d["busy"] is None for d in first["metrics"]["devices"].values()), first["metrics"]["devices"]
    assert all(s["in_per_s"] is None for s in first["metrics"]["steps"]), first["metrics"]["steps"]
