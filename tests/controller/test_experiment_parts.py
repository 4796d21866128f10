"""The pure parts of `sensormesh experiment`: the run plan, placement files, a run's numbers
from its samples, the summary's best-per-column marks and the progress display."""
import io

import pytest

from sensormesh.controller.experiment import measures, placements, summary
from sensormesh.controller.experiment.plan import (NONE, PLAIN, PlanError, Placement, make_plan, parse_condition,
                                                   parse_placement, parse_strategies)
from sensormesh.controller.experiment.progress import Progress, clock
from sensormesh.controller.pipeline_file import load_model
from sensormesh.controller.placement import STRATEGIES

C, E = Placement("central", "central"), Placement("edge", "edge")


def test_plan_every_combination_with_a_baseline_first():
    runs = make_plan([C, E], [parse_condition("wifi:delay=20ms"), parse_condition("wifi:delay=100ms;a->b:loss=1%")],
                     repeat=2)
    assert len(runs) == 2 * 3 * 2
    assert [r.index for r in runs] == list(range(1, 13))
    assert [r.network.name for r in runs[:4]] == [NONE] * 4
    assert runs[0].network.specs == () and runs[0].network.emulated
    assert [(r.placement.name, r.repeat) for r in runs[:4]] == [("central", 1), ("edge", 1), ("central", 2), ("edge", 2)]
    assert runs[-1].network.specs == ("wifi:delay=100ms", "a->b:loss=1%")
    assert runs[4].id == "05-central-wifi_delay_20ms-r1"
    assert len({r.id for r in runs}) == 12


def test_plan_without_network_or_baseline():
    runs = make_plan([C, E], [])
    assert [(r.placement.name, r.network.name) for r in runs] == [("central", PLAIN), ("edge", PLAIN)]
    assert not runs[0].network.emulated
    runs = make_plan([C], [parse_condition("wifi:delay=1ms")], baseline=False)
    assert [r.network.name for r in runs] == ["wifi:delay=1ms"]
    runs = make_plan([C], [parse_condition("none"), parse_condition("wifi:delay=1ms")])
    assert [r.network.name for r in runs] == [NONE, "wifi:delay=1ms"]      # no second baseline


def test_plan_refuses_mistakes():
    with pytest.raises(PlanError, match="unknown strategy 'middle' \\(known: central, edge, optimal\\)"):
        parse_strategies("central,middle", STRATEGIES)
    with pytest.raises(PlanError, match="names a strategy twice"):
        parse_strategies("edge,edge", STRATEGIES)
    with pytest.raises(PlanError, match="give NAME=FILE"):
        parse_placement("mixed.yaml")
    with pytest.raises(PlanError, match="nothing to compare"):
        make_plan([], [])
    with pytest.raises(PlanError, match="placement names must differ: edge given twice"):
        make_plan([E, parse_placement("edge=x.yaml")], [])
    with pytest.raises(PlanError, match="given twice"):
        make_plan([C], [parse_condition("a:delay=1ms"), parse_condition("a:delay=1ms")])
    # the same condition spelled differently would run twice, under two names, as if it differed
    with pytest.raises(PlanError, match="'a:delay=1ms;b:loss=1%' and 'b: loss=0.01 ; a:delay=1000us' "
                                        "are the same condition: give it once"):
        make_plan([C], [parse_condition("a:delay=1ms;b:loss=1%"), parse_condition("b: loss=0.01 ; a:delay=1000us")])
    assert len(make_plan([C], [parse_condition("a:delay=1ms"), parse_condition("a:delay=2ms")])) == 3
    assert parse_placement("mixed=p.yaml") == Placement("mixed", "optimal", "p.yaml")


PIPELINE = """
pipeline: tiny
devices:
  board: {interpreter: cpython, cpu: 1, sensors: ["t=counter@10"], local: true}
  pc:    {interpreter: cpython, cpu: 8, local: true}
steps:
  t:   {type: source, sensor: t}
  big: {type: filter, fn: "tiny_steps.py:big", input: t}
sinks:
  out: {type: callback, input: big, on: pc}
"""


def test_placement_file_pins_steps(tmp_path):
    (tmp_path / "tiny.yaml").write_text(PIPELINE)
    (tmp_path / "tiny_steps.py").write_text("def big(v):\n    return v > 3\n")
    model = load_model(str(tmp_path / "tiny.yaml"))
    good = tmp_path / "p.yaml"
    good.write_text("strategy: central\nsteps:\n  big: board\n")
    strategy, pins = placements.load(str(good), model)
    assert (strategy, pins) == ("central", {"big": "board"})
    placements.apply(model, pins)
    assert model.place(strategy).device_of["big"] == "board"        # central alone would say pc
    for text, msg in (("steps:\n  nope: pc\n", "no step 'nope'"),
                      ("steps:\n  big: esp-9\n", "'esp-9', which is no device"),
                      ("strategy: random\nsteps: {}\n", "strategy 'random' is not one of"),
                      ("big: pc\n", "give `steps:`"),
                      ("steps: {big: pc}\nwhere: x\n", "unknown key\\(s\\) where")):
        bad = tmp_path / "bad.yaml"
        bad.write_text(text)
        with pytest.raises(placements.PlacementFileError, match=msg):
            placements.load(str(bad), model)
    with pytest.raises(placements.PlacementFileError, match="missing.yaml"):
        placements.load(str(tmp_path / "missing.yaml"), model)


def test_a_malformed_placement_file_is_refused_in_one_line(tmp_path):
    # a device given as a list or a mapping, a key that is a number, a YAML mistake, a file
    # that is not text: one line naming the file and the problem, never a traceback
    (tmp_path / "tiny.yaml").write_text(PIPELINE)
    (tmp_path / "tiny_steps.py").write_text("def big(v):\n    return v > 3\n")
    model = load_model(str(tmp_path / "tiny.yaml"))
    bad = tmp_path / "bad.yaml"
    for text, msg in (("steps:\n  big: [board]\n", "step big: give one device name, not ['board'] (devices: board, pc)"),
                      ("steps:\n  big: {on: pc}\n", "step big: give one device name, not {'on': 'pc'}"),
                      ("steps:\n  big:\n", "step big: give one device name, not ''"),
                      ("steps: {big: pc}\n1: x\n", "unknown key(s) 1 (known: strategy, steps)"),
                      ("steps: {big: 'yes'}\n", "step big on 'yes', which is no device"),
                      ("steps:\n  big: [board\n", "is not valid YAML (line 2, column 8): the '[' here is not closed"),
                      ("# notes\nsteps: {big: pc}\nthis is: [not: yaml\n  x\n", "is not valid YAML (line 3, ")):
        bad.write_text(text)
        with pytest.raises(placements.PlacementFileError) as e:
            placements.load(str(bad), model)
        assert str(e.value).startswith("placement file %s" % bad) and msg in str(e.value), (text, str(e.value))
        assert "\n" not in str(e.value)
    # names are read as written, as in the pipeline file: a step called `on`, a device `1`
    (tmp_path / "names.yaml").write_text(PIPELINE.replace("board", "1").replace("input: big", "input: 'on'").replace("big:", "on:"))
    named = load_model(str(tmp_path / "names.yaml"))
    bad.write_text("strategy: central\nsteps:\n  on: 1\n")
    assert placements.load(str(bad), named) == ("central", {"on": "1"})
    bad.write_bytes(b"steps:\n  big: \xd0\x00\xff\n")
    with pytest.raises(placements.PlacementFileError, match="not UTF-8 text"):
        placements.load(str(bad), model)


def test_a_failed_runs_reason_keeps_several_problems_apart(tmp_path):
    # a placement that fits neither board: the placement error lists one problem per line, and
    # the reason (one line in runs.csv, the progress line and summary.md) must keep them apart
    from sensormesh.controller.errors import PlacementError
    from sensormesh.controller.experiment.one_run import _reason
    (tmp_path / "two.yaml").write_text(
        "pipeline: two\n"
        "devices:\n"
        "  b1: {interpreter: cpython, cpu: 1, memory: 10, sensors: ['t1=counter@10'], local: true}\n"
        "  b2: {interpreter: cpython, cpu: 1, memory: 10, sensors: ['t2=counter@10'], local: true}\n"
        "  pc: {interpreter: cpython, cpu: 8, local: true}\n"
        "steps:\n"
        "  t1: {type: source, sensor: t1}\n"
        "  t2: {type: source, sensor: t2}\n"
        "sinks:\n"
        "  out1: {type: callback, input: t1, on: pc}\n"
        "  out2: {type: callback, input: t2, on: pc}\n")
    model = load_model(str(tmp_path / "two.yaml"))
    with pytest.raises(PlacementError) as e:
        model.place("central")
    assert str(e.value).startswith("2 problems:\n")
    reason = _reason(e.value)
    where = str(tmp_path / "two.yaml")
    assert reason.startswith("2 problems: %s:3:3: device 'b1': " % where) and \
        "; %s:4:3: device 'b2': " % where in reason, reason
    assert "\n" not in reason and "  " not in reason
    assert _reason(ValueError("")) == "ValueError"


def test_the_copied_pipeline_holds_every_step_module_it_names(tmp_path):
    # pipeline/ is there to repeat the experiment: a module beside the file keeps its place, one
    # outside the file's folder (../lib, an absolute path) is copied too and said where from
    import json
    from sensormesh.controller.experiment.results import Results
    (tmp_path / "lib").mkdir()
    (tmp_path / "exp").mkdir()
    (tmp_path / "lib" / "shared.py").write_text("def big(v):\n    return v > 3\n")
    (tmp_path / "other.py").write_text("def small(v):\n    return v < 3\n")
    (tmp_path / "exp" / "mine.py").write_text("def same(v):\n    return v\n")
    file = tmp_path / "exp" / "p.yaml"
    file.write_text("steps:\n  a: {type: map, fn: \"mine.py:same\"}\n  b: {type: filter, fn: \"../lib/shared.py:big\"}\n"
                    "  c: {type: filter, fn: \"%s:small\"}\n" % (tmp_path / "other.py"))
    results = Results(str(tmp_path / "out"))
    try:
        results.save_inputs(str(file))
        env = results.save_environment({})
    finally:
        results.close()
    out = tmp_path / "out" / "pipeline"
    assert (out / "p.yaml").read_text() == file.read_text()
    assert (out / "mine.py").is_file()
    outside = env["step_modules_outside"]
    assert sorted(outside) == sorted(["../lib/shared.py", str(tmp_path / "other.py")])
    assert (tmp_path / "out" / outside["../lib/shared.py"]).read_text() == (tmp_path / "lib" / "shared.py").read_text()
    assert (tmp_path / "out" / outside[str(tmp_path / "other.py")]).read_text() == (tmp_path / "other.py").read_text()
    assert json.loads((tmp_path / "out" / "environment.json").read_text())["step_modules_outside"] == outside
    assert not (tmp_path / "out" / "lib").exists()          # nothing written outside pipeline/


def test_counter_increase_counts_resets_and_ignores_the_warmup():
    assert measures.increase([(0, 10), (1, 15), (2, 3), (3, 8)]) == (5 + 3 + 5, 3)     # +5, a reset to 3 counts 3, +5
    assert measures.increase([(5, 1)]) == (0.0, 0.0)
    samples = [(t, "step", "b", "t", "out", 10 * t) for t in range(0, 11)]           # 10 values/s
    samples += [(t, "step", "p", "out", "in", 2 * t) for t in range(0, 11)]
    samples += [(t, "pipe", "b", "t->p", "bytes", 100 * t) for t in range(0, 11)]
    samples += [(t, "pipe", "p", "t->p", "bytes", 100 * t) for t in range(0, 11)]     # the receiving end
    samples += [(t, "device", "b", "b", "busy_us", 250000 * t) for t in range(0, 11)]
    samples += [(t, "device", "b", "b", "wall_us", 1000000 * t) for t in range(0, 11)]
    samples += [(t, "device", "b", "b", "heap_free_bytes", 50000 - t) for t in range(0, 11)]
    lats = [(t, "out", 0.001 * t, 0.0001) for t in range(0, 11)]
    m = measures.measure(samples, lats, 4.0, ["t"], ["out"], {("b", "t->p"): {"dir": "out", "peer": "p"},
                                                                ("p", "t->p"): {"dir": "in", "peer": None}},
                         {"b": "micropython"})
    assert m["values_in"] == 60 and m["values_in_per_s"] == pytest.approx(10)
    assert m["values_out"] == 12 and m["values_out_per_s"] == pytest.approx(2)
    assert m["bytes"] == 600 and m["links"] == {"b->p": {"bytes": 600, "bytes_per_s": pytest.approx(100)}}
    assert m["devices"]["b"]["busy"] == pytest.approx(0.25)
    assert m["devices"]["b"]["heap_free_min"] == 49990
    assert m["window_s"] == 6
    assert m["latency"]["n"] == 7 and m["latency"]["p50"] == pytest.approx(7.0)
    assert m["latency"]["p99"] == pytest.approx(10.0)


def test_a_step_that_moved_or_a_device_that_went_away_counts_once_over_the_window():
    # the sink `out` takes 2 values/s on p; p is down from 4 s to 6 s (its counters start from
    # zero when it is back) and the sink runs on q meanwhile: 20 values in 10 s, not the 16/10 +
    # 4/2 = 3.6 values/s of two rates added up
    samples = [(t, "step", "p", "out", "in", 2 * t) for t in range(0, 5)]
    samples += [(t, "step", "p", "out", "in", 2 * (t - 6)) for t in range(6, 11)]
    samples += [(t, "step", "q", "out", "in", 2 * (t - 4)) for t in range(4, 7)]
    # the source `t` on b reads 10 values/s; b answers no more after 5 s (gone for good), the
    # run goes on to 10 s: 50 values in the window, 5 a second over it, not b's own 10 a second
    samples += [(t, "step", "b", "t", "out", 10 * t) for t in range(0, 6)]
    samples += [(t, "pipe", "b", "t->p", "bytes", 100 * t) for t in range(0, 6)]
    samples += [(t, "device", "p", "p", "wall_us", 1000000 * t) for t in range(0, 11)]
    m = measures.measure(samples, [], 0.0, ["t"], ["out"], {("b", "t->p"): {"dir": "out", "peer": "p"}},
                         {"p": "cpython", "b": "cpython"}, end=10.0)
    assert m["window_s"] == 10
    assert m["values_out"] == 2 * 4 + 2 * 4 + 2 * 2 and m["values_out_per_s"] == pytest.approx(2.0)
    assert m["values_in"] == 50 and m["values_in_per_s"] == pytest.approx(5.0)
    assert m["bytes_per_s"] == pytest.approx(50.0) and m["links"]["b->p"]["bytes_per_s"] == pytest.approx(50.0)


def test_samples_after_the_duration_do_not_count():
    # polls every second; the run measures from 4 s to 8 s; a reply that came late (stamped at
    # 9 and 10 s, while the devices stopped) is not part of it
    samples = [(t, "step", "b", "t", "out", 10 * t) for t in range(0, 11)]
    samples += [(t, "device", "b", "b", "wall_us", 1000000 * t) for t in range(0, 11)]
    m = measures.measure(samples, [], 4.0, ["t"], [], {}, {"b": "cpython"}, end=8.0)
    assert m["window_s"] == 4 and m["values_in"] == 40 and m["values_in_per_s"] == pytest.approx(10)
    assert measures.measure(samples, [], 4.0, ["t"], [], {}, {"b": "cpython"})["window_s"] == 6


def _row(p, n, **kw):
    r = {"run": p + n, "placement": p, "network": n, "repeat": 1, "status": "ok", "devices": {}}
    r.update(kw)
    return r


def test_summary_marks_the_best_per_column():
    rows = [_row("central", "none", values_out_per_s=10.0, latency_p50_ms=5.0, bytes_per_s=800.0,
                 latency_n=40, devices={"pc": {"busy": 0.5}}),
            _row("edge", "none", values_out_per_s=12.0, latency_p50_ms=7.0, bytes_per_s=200.0,
                 latency_n=6, devices={"pc": {"busy": 0.1}}),
            _row("edge", "none", values_out_per_s=8.0, latency_p50_ms=9.0, bytes_per_s=200.0, repeat=2,
                 latency_n=4, devices={"pc": {"busy": 0.3}}),
            _row("edge", "slow", status="failed", reason="device board did not start")]
    head, raw, better, _ = summary.table(rows, ["pc"])
    assert head[:4] == ["placement", "network", "runs", "values out/s"]
    assert raw[1][0] == ["edge", "none", "2/2 ok"] and raw[1][1][0] == pytest.approx(10.0)   # the mean
    assert raw[2][0] == ["edge", "slow", "0/1 ok"] and raw[2][1][0] is None
    marks = summary.best(raw, better)
    col = {h: j for j, h in enumerate(head[3:])}
    assert (0, col["p50 ms"]) in marks and (1, col["p50 ms"]) not in marks
    assert (1, col["bytes/s between devices"]) in marks
    assert not any(j == col["values out/s"] for _, j in marks)     # all equal: nothing is best
    assert (1, col["busy pc"]) in marks
    # how many samples the percentiles rest on (the mean per run) is shown, and ranks nothing
    assert [r[1][col["latency samples"]] for r in raw] == [40, 5, None]
    assert not any(j == col["latency samples"] for _, j in marks)
    text = summary.markdown(rows, ["pc"])
    assert "| central | none | 1/1 ok | 10.0 | **5.0** |" in text
    assert "| edge | none | 2/2 ok | 10.0 | 8.0 | - | - | 5 | **200** | **20.0%** |" in text
    assert "latency samples is how many values per run the percentiles rest on" in text
    assert "| edge | slow | 0/1 ok | - | - |" in text
    rows[0]["bytes_per_s"] = 200.4                     # shown as 200 like the others: none is best
    assert "| central | none | 1/1 ok | 10.0 | **5.0** | - | - | 40 | 200 |" in summary.markdown(rows, ["pc"])
    assert summary.best([(["a"], [1.0, 3.0]), (["b"], [1.0, 2.0]), (["c"], [2.0, None])], ["min", "max"]) == \
        {(0, 0), (1, 0), (0, 1)}                                   # a tie for the best: both
    assert "edgeslow (edge / slow, repeat 1): failed, device board did not start" in text


def test_progress_lines_when_not_a_terminal():
    t = [0.0]
    out = io.StringIO()
    runs = make_plan([C, E], [])
    p = Progress(2, 10.0, out=out, tty=False, now=lambda: t[0])
    p.start(1, runs[0])
    assert p.tick() is False
    t[0] = 12.0
    assert p.left() == pytest.approx(10.0)         # the current run is late: only the next one
    p.done({"status": "failed", "reason": "no board"})
    p.start(2, runs[1])
    t[0] = 15.0
    assert p.left() == pytest.approx(9.0)          # the finished run took 12 s
    assert out.getvalue().splitlines() == ["run 1/2 central / - / #1: started (about 0:20 left)",
                                           "run 1/2 central / - / #1: FAILED: no board",
                                           "run 2/2 edge / - / #1: started (about 0:12 left)"]
    assert clock(3725) == "1:02:05"


def test_progress_redraws_one_line_on_a_terminal():
    t = [0.0]
    out = io.StringIO()
    run = make_plan([C], [])[0]
    p = Progress(1, 10.0, out=out, tty=True, now=lambda: t[0])
    p.start(1, run)
    t[0] = 4.0
    p.tick()
    assert out.getvalue().split("\r")[-1].startswith("run 1/1 central / - / #1  0:04  (0:06 left)")
    assert "\n" not in out.getvalue()
    p.done({"status": "ok", "latency_p50_ms": 1.5, "latency_n": 7, "values_out_per_s": 3.0})
    assert out.getvalue().endswith("run 1/1 central / - / #1: ok (p50 1.5 ms of 7 latency samples, 3.0 values/s out)\n")


def test_the_alarm_example_places_central_edge_and_mixed_as_documented():
    import os
    from procs import ROOT
    here = os.path.join(ROOT, "examples", "experiments")
    where = {}
    for name in ("central", "edge", "mixed"):
        model = load_model(os.path.join(here, "alarm.yaml"))
        strategy = name
        if name == "mixed":
            strategy, pins = placements.load(os.path.join(here, "mixed.yaml"), model)
            placements.apply(model, pins)
        pl = model.place(strategy)
        where[name] = (pl.device_of["shake1"], pl.device_of["shake2"], pl.total_traffic)
    assert where["central"][:2] == ("pc", "pc")
    assert where["edge"][:2] == ("esp-1", "esp-2")
    assert where["mixed"][:2] == ("esp-1", "pc")
    # the cost model's order of the traffic between devices: edge < mixed < central
    assert where["edge"][2] < where["mixed"][2] < where["central"][2]


def test_a_placement_file_gets_every_problem_at_once_with_its_line_and_a_suggestion(tmp_path):
    (tmp_path / "tiny.yaml").write_text(PIPELINE)
    (tmp_path / "tiny_steps.py").write_text("def big(v):\n    return v > 3\n")
    model = load_model(str(tmp_path / "tiny.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("strategy: centrl\nstepz: {}\nsteps:\n  bigg: pc\n  big: bord\n  big: pc\n")
    with pytest.raises(placements.PlacementFileError) as e:
        placements.load(str(bad), model)
    assert str(e.value).splitlines() == [
        "placement file %s: 5 problems:" % bad,
        "  %s:1:11: strategy 'centrl' (did you mean 'central'?) is not one of central, edge, optimal" % bad,
        "  %s:2:1: unknown key(s) stepz (did you mean 'steps'?) (known: strategy, steps)" % bad,
        "  %s:4:3: the pipeline has no step 'bigg' (did you mean 'big'?) (steps: big, out, t)" % bad,
        "  %s:5:8: step big on 'bord' (did you mean 'board'?), which is no device of the pipeline "
        "(devices: board, pc)" % bad,
        "  %s:6:3: 'big' is given twice (first on line 5)" % bad]


def test_the_latency_cdf_starts_at_0_ms_and_at_fraction_0(tmp_path, monkeypatch):
    # the CDF of a run whose latencies lie between 20 and 30 ms: its axis begins at 0 ms (so the
    # distance from 0 shows) and its curve at fraction 0 (not at 1/n of the first sample)
    from sensormesh.controller.experiment import plots
    assert plots.cdf_points([3.0, 1.0, 2.0]) == ([1.0, 1.0, 2.0, 3.0], [0.0, pytest.approx(1 / 3),
                                                                        pytest.approx(2 / 3), 1.0])
    drawn = {}
    real = plots._save

    def save(fig, path):
        if path.endswith("latency_cdf.png"):
            ax = fig.axes[0]
            drawn["xlim"], drawn["ylim"] = ax.get_xlim(), ax.get_ylim()
            drawn["y0"] = list(ax.lines[0].get_ydata())[0]
        return real(fig, path)
    monkeypatch.setattr(plots, "_save", save)
    row = {"run": "r1", "placement": "edge", "network": "-", "status": "ok", "values_out_per_s": 1.0,
           "devices": {}, "links": {}}
    plots.draw(str(tmp_path), [row], {"r1": [0.020 + k / 1000.0 for k in range(11)]}, [])
    assert drawn["xlim"][0] == 0.0 and drawn["xlim"][1] >= 30.0
    assert drawn["ylim"][0] == 0.0 and drawn["y0"] == 0.0


def test_a_runs_dropped_latency_samples_count_in_its_window():
    # a board dropped latency samples (not polled in time): the run says how many, counted
    # like the other counters from the end of the warm-up (4 s) to the end of the duration (8 s)
    samples = [(t, "device", "b", "b", "latency_dropped", 3 * t) for t in range(0, 11)]
    samples += [(t, "device", "p", "p", "latency_dropped", 0) for t in range(0, 11)]
    m = measures.measure(samples, [], 4.0, [], [], {}, {"b": "micropython", "p": "cpython"}, end=8.0)
    assert m["latency"]["dropped"] == 12
