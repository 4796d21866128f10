"""`sensormesh experiment` end to end on loopback (no root): a small pipeline, two strategies x
two network conditions (the baseline and a 30 ms delay on the board's network), a few seconds
each; every result file, with plausible numbers. And a run whose device cannot start is
recorded as failed while the other runs complete."""
import csv
import io
import json
import socket
import sqlite3

import pytest

from sensormesh.controller.experiment.driver import run_experiment
from sensormesh.controller.experiment.one_run import Settings
from sensormesh.controller.experiment.plan import Placement, make_plan
from sensormesh.controller.experiment.progress import Progress
from test_up import cli

DELAY_MS = 30

# a board reads a counter 50 times a second; the filter keeps every third value (the cost
# model is told so: selectivity), so filtering on the board moves a third of the bytes
PIPELINE = """
pipeline: small
devices:
  board: {interpreter: cpython, cpu: 1, sensors: ["n=counter@50"], local: true%(board)s}
  pc:    {interpreter: cpython, cpu: 8, local: true}
network:
  controller: [wifi]
  domains:
    wifi: [board, pc]
steps:
  n:     {type: source, sensor: n}
  third: {type: filter, fn: "small_steps.py:third", input: n, selectivity: 0.34}
sinks:
  out:   {type: callback, input: third, on: pc}
"""
STEPS = "def third(v):\n    return v % 3 == 0\n"


def pipeline(tmp_path, board=""):
    (tmp_path / "small_steps.py").write_text(STEPS)
    path = tmp_path / "small.yaml"
    path.write_text(PIPELINE % {"board": board})
    return str(path)


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_two_strategies_under_two_network_conditions(tmp_path):
    file = pipeline(tmp_path)
    out = tmp_path / "results"
    res = cli("experiment", file, "--strategies", "central,edge", "--network", "wifi:delay=%dms" % DELAY_MS,
              "--network-mode", "loopback", "--duration", "3", "--warmup", "1.5", "--insecure",
              "--out", str(out), cwd=str(tmp_path), timeout=240)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "run 4/4 edge / wifi:delay=%dms / #1: ok" % DELAY_MS in res.stdout       # not a TTY: lines
    for name in ("runs.csv", "devices.csv", "links.csv", "latency.csv", "metrics.sqlite", "summary.md",
                 "environment.json", "pipeline/small.yaml", "pipeline/small_steps.py", "latency_cdf.png",
                 "throughput.png", "cpu_busy.png", "bytes_per_link.png", "latency_vs_delay.png"):
        assert (out / name).is_file(), name

    runs = read_csv(out / "runs.csv")
    assert [(r["placement"], r["network"], r["status"]) for r in runs] == [
        ("central", "none", "ok"), ("edge", "none", "ok"),
        ("central", "wifi:delay=%dms" % DELAY_MS, "ok"), ("edge", "wifi:delay=%dms" % DELAY_MS, "ok")]
    by = {(r["placement"], r["network"] != "none"): r for r in runs}
    for r in runs:
        for col in ("repeat", "duration_s", "values_in", "values_out", "latency_p50_ms", "latency_p95_ms",
                    "latency_p99_ms", "bytes", "busy_board", "busy_pc", "rss_max_board", "rss_max_pc", "reason"):
            assert col in r
        # the span of the polls (twice a second) within the measured duration: never longer
        # than the duration (a sample stamped after it belongs to the stop), shorter by as much
        # as a loaded machine delays the first and the last poll
        window = float(r["window_s"])
        assert 1.0 <= window <= float(r["duration_s"]), r
        # 50 values/s read, a third of them reach the sink
        assert float(r["values_in_per_s"]) == pytest.approx(50, rel=0.3), r
        assert float(r["values_out"]) == pytest.approx(float(r["values_in"]) / 3, rel=0.3), r
        assert float(r["latency_p50_ms"]) <= float(r["latency_p95_ms"]) <= float(r["latency_p99_ms"])
        assert 0 < float(r["busy_board"]) < 1 and 0 < float(r["busy_pc"]) < 1
        assert int(r["latency_n"]) >= 5
        assert float(r["rss_max_pc"]) > 1e6
    for p in ("central", "edge"):
        base, slow = float(by[(p, False)]["latency_p50_ms"]), float(by[(p, True)]["latency_p50_ms"])
        assert base < 15, by[(p, False)]
        # one pipe crosses the shaped network once: about the injected one-way delay more (the
        # medians of ~10 samples each on a loaded machine: a few ms either way)
        assert DELAY_MS * 0.75 <= slow - base <= DELAY_MS * 1.5, (p, base, slow)
        assert float(by[(p, True)]["delay_ms"]) == DELAY_MS
    for shaped in (False, True):
        # filtering on the board sends a third of what sending every value to the PC does
        central, edge = float(by[("central", shaped)]["bytes"]), float(by[("edge", shaped)]["bytes"])
        assert edge < 0.6 * central, (edge, central)

    links = read_csv(out / "links.csv")
    assert {l["link"] for l in links} == {"board->pc"} and len(links) == 4
    devices = read_csv(out / "devices.csv")
    assert sorted((d["run"], d["device"]) for d in devices) == sorted((r["run"], d) for r in runs for d in ("board", "pc"))
    lat = read_csv(out / "latency.csv")
    assert {l["run"] for l in lat} == {r["run"] for r in runs}
    assert {l["phase"] for l in lat} == {"warmup", "measure"}
    measured = [l for l in lat if l["run"] == by[("central", True)]["run"] and l["phase"] == "measure"]
    assert len(measured) == int(by[("central", True)]["latency_n"])
    # each latency is an estimate over synchronised clocks, within its reported bound: none may
    # be shorter than the injected delay by more than that bound
    short = [(l["latency_ms"], l["bound_ms"]) for l in measured
             if float(l["latency_ms"]) + float(l["bound_ms"] or 0) < DELAY_MS]
    assert not short, short

    db = sqlite3.connect(str(out / "metrics.sqlite"))
    per_run = dict(db.execute("SELECT run, COUNT(*) FROM samples GROUP BY run").fetchall())
    assert set(per_run) == {r["run"] for r in runs} and min(per_run.values()) > 50
    assert db.execute("SELECT COUNT(*) FROM samples WHERE metric = 'bytes' AND kind = 'pipe'").fetchone()[0] > 8
    db.close()

    for r in runs:
        placed = json.loads((out / "placements" / (r["run"] + ".json")).read_text())
        assert placed["device_of"]["third"] == ("pc" if r["placement"] == "central" else "board")
    env = json.loads((out / "environment.json").read_text())
    assert env["sensormesh"] and env["python"] and env["os"] and "micropython" in env
    assert env["settings"]["network_mode"] == "loopback"

    summary = (out / "summary.md").read_text()
    assert "| edge | wifi:delay=%dms | 1/1 ok |" % DELAY_MS in summary and "**" in summary

    import matplotlib.image
    for png in ("latency_cdf.png", "throughput.png", "cpu_busy.png", "bytes_per_link.png", "latency_vs_delay.png"):
        img = matplotlib.image.imread(str(out / png))
        assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100, png


def test_a_run_whose_device_cannot_start_is_recorded_and_the_others_complete(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # the board listens on a fixed port; during the first run something else holds it
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    port = blocker.getsockname()[1]
    blocker.close()
    file = pipeline(tmp_path, board=', address: "127.0.0.1:%d"' % port)
    runs = make_plan([Placement("central", "central"), Placement("edge", "edge")], [])
    held = {}

    def on_run(kind, run, row):
        if kind == "start" and run.index == 1:
            held["sock"] = s = socket.socket()
            s.bind(("127.0.0.1", port))
            s.listen(1)
        elif kind == "end" and "sock" in held:
            held.pop("sock").close()
    settings = Settings(duration=2.0, warmup=1.0, insecure=True)
    outcome = run_experiment(file, runs, settings, str(tmp_path / "out"), on_run=on_run)
    rows = read_csv(tmp_path / "out" / "runs.csv")
    assert [(r["placement"], r["status"]) for r in rows] == [("central", "failed"), ("edge", "ok")]
    assert "board" in rows[0]["reason"], rows[0]["reason"]
    assert rows[0]["values_out"] == ""                 # a failed run has no numbers
    assert float(rows[1]["values_out"]) > 0
    assert [r["run"] for r in outcome.failed] == [rows[0]["run"]] and not outcome.interrupted
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "| central | - | 0/1 ok |" in summary and "failed, " in summary
    assert (tmp_path / "out" / "throughput.png").is_file()


def test_a_device_that_exits_for_good_fails_its_run_and_a_restart_is_noted(tmp_path, monkeypatch):
    # the filter on the board ends the board's process when it sees the value 40, the first
    # three times: in the first run the board exits, is started again (one restart allowed),
    # exits again and stays down, so its steps measure nothing for the rest of the run; in the
    # second it exits once and comes back with its steps
    monkeypatch.chdir(tmp_path)
    file = pipeline(tmp_path)
    marks = tmp_path / "exits"
    marks.mkdir()
    (tmp_path / "small_steps.py").write_text(
        "import os\n"
        "MARKS = %r\n"
        "def third(v):\n"
        "    n = len(os.listdir(MARKS))\n"
        "    if v == 40 and n < 3:\n"
        "        open(os.path.join(MARKS, str(n)), 'w').close()\n"
        "        os._exit(3)\n"
        "    return v %% 3 == 0\n" % str(marks))
    runs = make_plan([Placement("edge", "edge")], [], repeat=2)
    settings = Settings(duration=8.0, warmup=1.0, insecure=True, restarts=1)
    lines = io.StringIO()
    outcome = run_experiment(file, runs, settings, str(tmp_path / "out"), progress=Progress(2, 10, out=lines, tty=False))
    rows = read_csv(tmp_path / "out" / "runs.csv")
    assert [r["status"] for r in rows] == ["failed", "ok"], rows
    assert rows[0]["reason"] == "board exited for good during the run (exit code 3, after 1 restart)", rows[0]
    assert rows[1]["reason"] == "board restarted once during the run (exit code 3)", rows[1]
    assert [r["run"] for r in outcome.failed] == [rows[0]["run"]]
    assert "run 1/2 edge / - / #1: FAILED: board exited for good during the run" in lines.getvalue()
    assert "; board restarted once during the run (exit code 3)" in lines.getvalue()
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "| edge | - | 1/2 ok |" in summary
    assert "- %s (edge / -, repeat 1): failed, board exited for good" % rows[0]["run"] in summary
    assert "- %s (edge / -, repeat 2): board restarted once" % rows[1]["run"] in summary


def test_a_run_whose_duration_ends_while_the_controller_looks_at_its_devices_is_ok(tmp_path, monkeypatch):
    # the watch asks two things each turn: whether the run is done (the duration, the local
    # devices' health), then whether to cut it short; when the duration ran out in between
    # (a slow look at the devices on a loaded machine), `up` stopped with no reason
    # ("stopping (?)") and the experiment failed a complete run: "ended early: ?"
    import time
    from sensormesh.controller.local import LocalCluster
    monkeypatch.chdir(tmp_path)
    file = pipeline(tmp_path)
    settings = Settings(duration=1.0, warmup=0.5, insecure=True)
    tend, first = LocalCluster.tend, {}

    def slow_first_look(self, on_event, now=None):
        if not first:       # the first look at the devices outlasts the run (fault injected)
            first["t"] = time.monotonic()
            while time.monotonic() < first["t"] + settings.warmup + settings.duration + 0.3:
                time.sleep(0.05)
        return tend(self, on_event, now)
    monkeypatch.setattr(LocalCluster, "tend", slow_first_look)
    events = []
    outcome = run_experiment(file, make_plan([Placement("edge", "edge")], []), settings, str(tmp_path / "out"),
                             on_event=events.append)
    assert first and "stopping (duration)" in events, events
    assert [(r["status"], r["reason"]) for r in outcome.rows] == [("ok", "")], outcome.rows


def test_ctrl_c_keeps_the_runs_so_far_and_exits_130(tmp_path):
    import signal
    import sys
    from procs import Proc
    file = pipeline(tmp_path)
    out = tmp_path / "results"
    p = Proc([sys.executable, "-m", "sensormesh.cli", "experiment", file, "--strategies", "central,edge,optimal",
              "--duration", "60", "--warmup", "0", "--insecure", "--out", str(out), "-v"], cwd=str(tmp_path))
    try:
        p.wait_line("run 1/3 central / - / #1: started", timeout=60)
        p.wait_line("! deployed (central): board: n; pc: ", timeout=60)
        p.p.send_signal(signal.SIGINT)         # the first run measures for a minute: stop it
        p.wait_line("0 of 3 run(s) completed, 0 failed, interrupted by Ctrl-C", timeout=60)
        assert p.p.wait(60) == 130
    finally:
        p.stop()
    rows = read_csv(out / "runs.csv")
    assert [(r["placement"], r["status"]) for r in rows] == [("central", "interrupted")]
    assert "Ctrl-C" in rows[0]["reason"]
    assert (out / "summary.md").is_file() and (out / "latency.csv").is_file()


def test_sigterm_stops_a_run_as_ctrl_c_does_and_says_so(tmp_path):
    # a job scheduler ends an experiment with SIGTERM: the run stops cleanly and its numbers are
    # kept, as after Ctrl-C, but the results name SIGTERM and the exit status is 128 + 15
    import signal
    import sys
    from procs import Proc
    file = pipeline(tmp_path)
    out = tmp_path / "results"
    p = Proc([sys.executable, "-m", "sensormesh.cli", "experiment", file, "--strategies", "central,edge",
              "--duration", "60", "--warmup", "0", "--insecure", "--out", str(out), "-v"], cwd=str(tmp_path))
    try:
        p.wait_line("! deployed (central): board: n; pc: ", timeout=60)
        p.p.send_signal(signal.SIGTERM)
        p.wait_line("0 of 2 run(s) completed, 0 failed, interrupted by SIGTERM", timeout=60)
        assert p.p.wait(60) == 143
    finally:
        p.stop()
    rows = read_csv(out / "runs.csv")
    assert [(r["placement"], r["status"]) for r in rows] == [("central", "interrupted")]
    assert rows[0]["reason"].startswith("stopped by SIGTERM"), rows[0]       # while watching or just before
    assert (out / "summary.md").is_file()


def test_sigterm_between_two_runs_keeps_the_results(tmp_path, monkeypatch):
    # SIGTERM while one run has ended and the next has not started: no run is running to stop,
    # the rest is skipped and the summary is still written
    import signal
    monkeypatch.chdir(tmp_path)

    class Killed(Exception):
        pass

    def killed(signum, frame):           # what SIGTERM would do to this test without a handler
        raise Killed()
    monkeypatch.setattr(signal, "_test_old", signal.signal(signal.SIGTERM, killed), raising=False)
    try:
        file = pipeline(tmp_path)
        runs = make_plan([Placement("central", "central"), Placement("edge", "edge")], [])

        def on_run(kind, run, row):
            if kind == "end" and run.index == 1:
                signal.raise_signal(signal.SIGTERM)
        outcome = run_experiment(file, runs, Settings(duration=1.0, warmup=0.5, insecure=True),
                                 str(tmp_path / "out"), on_run=on_run)
        assert signal.getsignal(signal.SIGTERM) is killed          # given back
    finally:
        signal.signal(signal.SIGTERM, signal._test_old)
    assert outcome.interrupted and outcome.signal == signal.SIGTERM
    rows = read_csv(tmp_path / "out" / "runs.csv")
    assert [(r["placement"], r["status"]) for r in rows] == [("central", "ok")]
    assert "| central | - | 1/1 ok |" in (tmp_path / "out" / "summary.md").read_text()


def test_a_network_mode_alone_runs_the_emulated_layout_without_conditions(tmp_path):
    # as `up --network-mode loopback` does; the runs are not plain `up` runs with the mode
    # merely written into environment.json
    file = pipeline(tmp_path)
    out = tmp_path / "out"
    res = cli("experiment", file, "--strategies", "edge", "--network-mode", "loopback", "--duration", "1",
              "--warmup", "0.5", "--insecure", "-v", "--out", str(out), cwd=str(tmp_path), timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "run 1/1 edge / none / #1: ok" in res.stdout
    assert "emulated network (loopback)" in res.stdout, res.stdout
    assert [(r["network"], r["status"]) for r in read_csv(out / "runs.csv")] == [("none", "ok")]
    assert json.loads((out / "environment.json").read_text())["settings"]["network_mode"] == "loopback"


def test_a_network_spec_is_checked_against_a_file_without_a_network_section(tmp_path):
    # no `network:` section: the devices form one domain, "default"; a spec naming another
    # domain or a link is refused before the baseline (or anything else) runs
    plain = PIPELINE.split("network:")[0] + PIPELINE.split("    wifi: [board, pc]\n")[1]
    (tmp_path / "two.yaml").write_text(plain % {"board": ""})
    (tmp_path / "small_steps.py").write_text(STEPS)
    out = tmp_path / "out"
    for spec, message in (("nowhere:delay=1ms", "the pipeline file has no domain 'nowhere' (domains: default)"),
                          ("a->b:delay=1ms", "the pipeline file has no link a->b (links: none)"),
                          ("default:delay=1ms;nowhere:loss=1%", "has no domain 'nowhere'")):
        res = cli("experiment", str(tmp_path / "two.yaml"), "--strategies", "central", "--network", spec,
                  "--network-mode", "loopback", "--insecure", "--out", str(out), timeout=30, cwd=str(tmp_path))
        assert res.returncode == 2, res.stdout + res.stderr
        assert "Invalid value for --network" in res.stderr and message in res.stderr
        assert "Traceback" not in res.stderr
        assert not out.exists() and not (tmp_path / ".sensormesh").exists()
        assert "run 1" not in res.stdout + res.stderr


def test_a_placement_file_pins_a_source_as_on_would(tmp_path):
    # `n` reads sensor n, which only the board has: `on: pc` is an error in the pipeline file,
    # and so is `n: pc` in a placement file, before anything starts
    file = pipeline(tmp_path)
    out = tmp_path / "out"
    (tmp_path / "pc.yaml").write_text("steps: {n: pc}\n")
    res = cli("experiment", file, "--placement", "pinned=%s" % (tmp_path / "pc.yaml"), "--insecure",
              "--out", str(out), timeout=30, cwd=str(tmp_path))
    assert res.returncode == 2, res.stdout + res.stderr
    assert ("placement file %s:1:12: step n: device 'pc' has no sensor 'n' (its sensors: none)"
            % (tmp_path / "pc.yaml")) in res.stderr
    assert "Traceback" not in res.stderr and "run 1" not in res.stdout + res.stderr
    assert not out.exists() and not (tmp_path / ".sensormesh").exists()


def test_applied_pins_are_the_placements_pins(tmp_path):
    from sensormesh.controller.experiment import placements
    from sensormesh.controller.pipeline_file import load_model
    file = pipeline(tmp_path)
    (tmp_path / "p.yaml").write_text("strategy: central\nsteps: {n: board, third: board}\n")
    model = load_model(file)
    strategy, pins = placements.load(str(tmp_path / "p.yaml"), model)
    placements.apply(model, pins)
    placed = model.place(strategy)
    assert {s: placed.device_of[s] for s in pins} == pins == {"n": "board", "third": "board"}
    (tmp_path / "bad.yaml").write_text("steps: {n: pc}\n")
    with pytest.raises(placements.PlacementFileError, match="step n: device 'pc' has no sensor 'n'"):
        placements.load(str(tmp_path / "bad.yaml"), model)
    with pytest.raises(placements.PlacementFileError, match="step n: device 'pc' has no sensor 'n'"):
        placements.apply(load_model(file), {"n": "pc"})


def test_bad_input_is_refused_before_anything_starts(tmp_path):
    file = pipeline(tmp_path)
    out = tmp_path / "out"
    (tmp_path / "wrong.yaml").write_text("steps:\n  third: esp-9\n")
    for args, message in (
            (["--strategies", "central,middle"], "--strategies: unknown strategy 'middle' (known: central, edge, optimal)"),
            (["--strategies", "edge", "--network", "boards:delay=1ms"],
             "the pipeline file has no domain 'boards' (domains: wifi)"),
            (["--placement", "mixed=%s" % (tmp_path / "wrong.yaml")],
             "step third on 'esp-9', which is no device of the pipeline (devices: board, pc)"),
            (["--placement", "mixed"], "--placement 'mixed': give NAME=FILE")):
        res = cli("experiment", file, "--out", str(out), *args, cwd=str(tmp_path))
        assert res.returncode == 2, res.stderr
        assert message in res.stderr, res.stderr
        assert not out.exists() and not (tmp_path / ".sensormesh").exists()
    out.mkdir()
    (out / "runs.csv").write_text("earlier results\n")
    res = cli("experiment", file, "--strategies", "edge", "--out", str(out), cwd=str(tmp_path))
    assert res.returncode == 1 and "exists and is not empty: give a new directory" in res.stderr
    assert (out / "runs.csv").read_text() == "earlier results\n"
    # a directory that cannot be made (here: under a file): one line, before any run
    res = cli("experiment", file, "--strategies", "edge", "--out", str(out / "runs.csv" / "new"), cwd=str(tmp_path))
    assert res.returncode == 1, res.stdout + res.stderr
    assert ("Error: cannot write the results to %s: Not a directory: " % (out / "runs.csv" / "new")) in res.stderr
    assert "Traceback" not in res.stderr and "run 1" not in res.stdout


def test_an_experiment_after_a_crash_removes_what_the_crashed_run_left_and_names_it(tmp_path, monkeypatch):
    # a controller killed with SIGKILL leaves its record (.sensormesh/netlab-PID.json) with a
    # device still running and its temporary folder; the next experiment in that directory
    # removes them before its first run, whether its runs emulate a network or not, and says so
    # without -v
    import subprocess
    import sys
    from sensormesh.netlab import state
    monkeypatch.chdir(tmp_path)
    file = pipeline(tmp_path)
    left = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    folder = tmp_path / "sensormesh-net-left"
    folder.mkdir()
    try:
        (tmp_path / ".sensormesh").mkdir()
        (tmp_path / ".sensormesh" / "netlab-999999.json").write_text(json.dumps({
            "owner": {"pid": 999999, "start": 0}, "namespaces": [],
            "processes": [{"pid": left.pid, "start": state.start_time(left.pid), "what": "device board"}],
            "files": [str(folder)]}))
        out = io.StringIO()
        runs = make_plan([Placement("central", "central")], [])
        outcome = run_experiment(file, runs, Settings(duration=1.0, warmup=0.0, insecure=True),
                                 str(tmp_path / "out"), progress=Progress(len(runs), 5.0, out=out, tty=False))
        assert left.wait(10) is not None          # ended by the clean-up, not by this test
    finally:
        if left.poll() is None:
            left.kill()
            left.wait()
    text = out.getvalue()
    assert "removed what an earlier run left behind: process %d (device board), file %s" % (left.pid, folder) in text
    assert text.index("removed what") < text.index("run 1/1")
    assert not folder.exists() and not list((tmp_path / ".sensormesh").glob("netlab-*.json"))
    assert [r["status"] for r in outcome.rows] == ["ok"]


def test_a_second_ctrl_c_ends_the_experiment_at_once_with_130(tmp_path):
    # the first Ctrl-C stops the run; a second one (the user does not want to wait) ends the
    # experiment without a traceback: the results of the finished part stay, the exit status is
    # still 130 (a second Ctrl-C while the plots are drawn leaves them out: the test below)
    import signal
    import sys
    from procs import Proc
    file = pipeline(tmp_path)
    out = tmp_path / "results"
    p = Proc([sys.executable, "-m", "sensormesh.cli", "experiment", file, "--strategies", "central,edge",
              "--duration", "60", "--warmup", "0", "--insecure", "--out", str(out), "-v"], cwd=str(tmp_path))
    try:
        p.wait_line("! deployed (central): board: n; pc: ", timeout=60)
        p.p.send_signal(signal.SIGINT)
        p.wait_line("run 1/2 central / - / #1: interrupted", timeout=60)   # the first one was taken
        p.p.send_signal(signal.SIGINT)        # while the results are written, or just after
        assert p.p.wait(60) == 130
        err = p.p.stderr.read()
    finally:
        p.stop()
    assert "Traceback" not in err and "Aborted" not in err, err
    rows = read_csv(out / "runs.csv")
    assert [(r["placement"], r["status"]) for r in rows] == [("central", "interrupted")]
    assert (out / "summary.md").read_text().startswith("# ")


def test_ctrl_c_while_the_plots_are_drawn_leaves_them_out(tmp_path, monkeypatch):
    # Ctrl-C between runs stops the experiment; a second Ctrl-C while it draws the plots ends it
    # at once, without a traceback: run_experiment returns, interrupted, with no plots
    import signal
    from sensormesh.controller.experiment import driver
    monkeypatch.chdir(tmp_path)
    file = pipeline(tmp_path)
    runs = make_plan([Placement("central", "central"), Placement("edge", "edge")], [])
    real = driver.plots.draw

    def draw(*args):
        signal.raise_signal(signal.SIGINT)
        return real(*args)
    monkeypatch.setattr(driver.plots, "draw", draw)

    def on_run(kind, run, row):
        if kind == "end":
            signal.raise_signal(signal.SIGINT)
    before = signal.getsignal(signal.SIGINT)
    outcome = run_experiment(file, runs, Settings(duration=1.0, warmup=0.0, insecure=True),
                             str(tmp_path / "out"), on_run=on_run,
                             progress=Progress(len(runs), 5.0, out=io.StringIO(), tty=False))
    assert signal.getsignal(signal.SIGINT) is before
    assert outcome.interrupted and outcome.signal == signal.SIGINT and outcome.plots == []
    assert not list((tmp_path / "out").glob("*.png"))
    assert [(r["placement"], r["status"]) for r in read_csv(tmp_path / "out" / "runs.csv")] == [("central", "ok")]


def test_result_files_are_replaced_whole_never_left_truncated(tmp_path, monkeypatch):
    # a run's tables are rewritten after every run: interrupted while writing them (Ctrl-C, a
    # full disk) the files keep their last complete content, and no temporary file stays
    from sensormesh.controller.experiment import driver
    from sensormesh.controller.experiment import results as results_mod
    res = results_mod.Results(str(tmp_path / "out"))
    runs = make_plan([Placement("central", "central"), Placement("edge", "edge")], [])
    row = {"run": runs[0].id, "placement": "central", "strategy": "central", "network": "-", "repeat": 1,
           "status": "ok", "reason": "", "devices": {"pc": {"interp": "cpython", "busy": 0.1}},
           "links": {"board->pc": {"bytes": 10, "bytes_per_s": 1.0}}}
    res.add(runs[0], row, [(1.0, "out", 0.001, 0.0001)], start=0.0)
    driver._write_summary(res, res.rows, "t")
    names = ("runs.csv", "devices.csv", "links.csv", "latency.csv", "summary.md")
    before = {n: (tmp_path / "out" / n).read_text() for n in names}

    class Cut(Exception):
        pass

    def cut(*a, **kw):
        raise Cut()
    monkeypatch.setattr(results_mod.csv.DictWriter, "writerow", cut)
    monkeypatch.setattr(results_mod.csv, "writer", cut)
    with pytest.raises(Cut):
        res.add(runs[1], dict(row, run=runs[1].id, placement="edge"), [(2.0, "out", 0.002, 0.0001)], start=0.0)
    monkeypatch.setattr(driver.summary, "markdown", cut)
    with pytest.raises(Cut):
        driver._write_summary(res, res.rows, "t")
    res.close()
    assert {n: (tmp_path / "out" / n).read_text() for n in names} == before
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        ["metrics.sqlite", "placements"] + list(names))


REMOTE = PIPELINE.replace('local: true%(board)s', 'address: "127.0.0.1:%(port)d"')


def test_a_device_that_is_not_local_gets_loopback_under_auto_and_is_refused_in_namespaces(tmp_path):
    # in namespaces every device runs here: a board at its own address cannot be in one. Under
    # the default mode (auto) the experiment emulates on loopback, as `up` does, and says why;
    # --network-mode namespaces is refused before anything starts, not run by run
    from sensormesh.controller.experiment.driver import resolve_mode
    from sensormesh.controller.pipeline_file import load_model
    (tmp_path / "small_steps.py").write_text(STEPS)
    path = tmp_path / "remote.yaml"
    path.write_text(REMOTE % {"port": 1})
    notes = []
    assert resolve_mode("auto", notes.append, load_model(str(path))) == "loopback"
    assert notes == ["board not local: true, so the runs emulate the network on loopback (in namespaces "
                     "every device must run here)"]
    out = tmp_path / "out"
    res = cli("experiment", str(path), "--strategies", "central", "--network", "wifi:delay=5ms",
              "--network-mode", "namespaces", "--out", str(out), cwd=str(tmp_path))
    assert res.returncode == 2, res.stdout + res.stderr
    assert "every device of the file must be local: true (not: board)" in res.stderr
    assert not out.exists() and "run 1" not in res.stdout


def test_namespaces_where_they_cannot_be_built_are_refused_before_the_first_run(tmp_path, monkeypatch):
    # --network-mode namespaces without root (here: preflight says so): one error before anything
    # starts, not a failed run for every combination
    from sensormesh.controller.experiment.driver import ModeError, resolve_mode
    from sensormesh.netlab import namespaces

    def not_root():
        raise namespaces.NetLabUnavailable("the network lab needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN); run as root")
    monkeypatch.setattr(namespaces, "preflight", not_root)
    with pytest.raises(ModeError, match=r"cannot build network namespaces: the network lab needs root .*"
                                        r"--network-mode loopback needs no root"):
        resolve_mode("namespaces", print)
    notes = []
    assert resolve_mode("auto", notes.append) == "loopback" and "needs root" in notes[0]
    assert resolve_mode("loopback", notes.append) == "loopback"


def test_a_second_ctrl_c_while_the_stopped_run_is_recorded_keeps_its_row(tmp_path, monkeypatch):
    # the first Ctrl-C stops the run while it watches; the second comes while the run's numbers
    # are being worked out: the run is still recorded (as interrupted), only the plots are skipped
    import signal
    from sensormesh.controller.experiment import one_run
    monkeypatch.chdir(tmp_path)
    file = pipeline(tmp_path)
    runs = make_plan([Placement("central", "central"), Placement("edge", "edge")], [])
    real = one_run.measures.measure

    def measure(*args, **kw):
        signal.raise_signal(signal.SIGINT)
        return real(*args, **kw)
    monkeypatch.setattr(one_run.measures, "measure", measure)

    class FirstCtrlC(Progress):
        sent = False

        def tick(self, force=False):
            if not self.sent and self.t_run is not None and self.now() - self.t_run > 1.0:
                self.sent = True
                signal.raise_signal(signal.SIGINT)
            return super().tick(force)
    out = io.StringIO()
    outcome = run_experiment(file, runs, Settings(duration=30.0, warmup=0.0, insecure=True),
                             str(tmp_path / "out"), progress=FirstCtrlC(len(runs), 5.0, out=out, tty=True))
    assert outcome.interrupted and outcome.plots == []
    assert [(r["placement"], r["status"]) for r in read_csv(tmp_path / "out" / "runs.csv")] == [("central", "interrupted")]
    assert "interrupted again: the plots were left out" in out.getvalue()
