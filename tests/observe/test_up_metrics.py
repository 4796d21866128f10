"""Metrics collection during a real `sensormesh up` (one MicroPython and one CPython device):
the line of rates, `status --watch` and `top` against the running pipeline, and the SQLite file
that stays readable with sqlite3 after `up` ends."""
import os
import sqlite3
import subprocess
import sys

from procs import ROOT
from uprun import BOARD, PC, Up, pipeline_file


def cli(*args, cwd, timeout=90):
    env = dict(os.environ, PYTHONPATH=ROOT, PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", "sensormesh.cli"] + list(args), cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_up_collects_metrics_into_sqlite_and_status_watch_and_top_see_them(tmp_path):
    path = pipeline_file(tmp_path)
    db_path = str(tmp_path / "run.sqlite")
    up = Up(path, "--metrics-out", db_path, "--rates-every", "1", "--insecure", cwd=str(tmp_path))
    try:
        line = up.wait_for(lambda l: l.startswith("rates:") and "mean->%s " % PC in l and "-/s" not in l)
        assert BOARD in line and PC in line
        # a second controller watches the same running pipeline and records its own file
        st = cli("status", path, "--watch", "--interval", "1", "--duration", "2.5", "--metrics-out",
                 str(tmp_path / "watch.csv"), cwd=str(tmp_path))
        assert st.returncode == 0, st.stdout + st.stderr
        assert "%s: running pipeline observed" % BOARD in st.stdout
        assert st.stdout.count("rates: ") >= 2 and "metrics written to" in st.stdout
        rows = open(tmp_path / "watch.csv").read().splitlines()
        assert rows[0] == "t,kind,device,entity,metric,value"
        assert any(",step,%s,mean,out_per_s," % BOARD in r for r in rows)
        top = cli("top", path, "--duration", "2", "--no-metrics-file", cwd=str(tmp_path))
        assert top.returncode == 0, top.stdout + top.stderr
        assert "sensormesh top: observed" in top.stdout and "mean->%s" % PC in top.stdout
    finally:
        code = up.stop()
    out = up.text()
    assert code == 0, out
    assert "metrics written to %s" % db_path in out
    db = sqlite3.connect(db_path)
    rates = [r[0] for r in db.execute(
        "SELECT value FROM samples WHERE kind='pipe' AND device=? AND entity=? AND metric='values_per_s'",
        (BOARD, "mean->" + PC))]
    assert rates and max(rates) > 0
    steps = {r[0] for r in db.execute("SELECT DISTINCT entity FROM samples WHERE kind='step'")}
    assert {"count", "scaled", "mean", "high", "means", "alarms"} <= steps
    assert db.execute("SELECT value FROM run WHERE key='pipeline'").fetchone() == ("observed",)
