"""The cost of `sensormesh experiment` itself: the time a run takes beyond its warm-up and
measured duration, against plain `sensormesh up` of the same pipeline for the same time, in one
run (runner.up with the same settings: what every run of an experiment does at least).

Each round: one `up` (the baseline) and one experiment run of the same pipeline (central
placement, keys on as by default), alternating, so both see the same load. Overhead = wall time
- (warm-up + duration). Also the experiment's own end: summary, tables and plots.

    python benchmarks/bench_experiment.py [--rounds 5] [--duration 3] [--warmup 1] [--network SPEC]
"""
import argparse
import os
import pathlib
import shutil
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

from sensormesh.controller import runner  # noqa: E402
from sensormesh.controller.experiment import plots, summary  # noqa: E402
from sensormesh.controller.experiment.one_run import Settings, run_one  # noqa: E402
from sensormesh.controller.experiment.plan import Placement, make_plan, parse_condition  # noqa: E402
from sensormesh.controller.experiment.results import Results  # noqa: E402
from sensormesh.controller.pipeline_file import load_model  # noqa: E402
from test_experiment import pipeline  # noqa: E402  (the pipeline of the experiment tests)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--duration", type=float, default=3.0)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--network", default=None, help="a condition for both, e.g. wifi:delay=20ms (loopback)")
    a = ap.parse_args()
    d = pathlib.Path(tempfile.mkdtemp(prefix="bench-experiment-"))
    cwd = os.getcwd()
    try:
        os.chdir(d)
        file = pipeline(d)
        cond = [parse_condition(a.network)] if a.network else []
        runs = list(make_plan([Placement("central", "central")], cond, a.rounds, baseline=False))
        specs = list(cond[0].specs) if cond else None
        settings = Settings(duration=a.duration, warmup=a.warmup, network_mode="loopback")
        results = Results(str(d / "out"))
        span = a.warmup + a.duration
        up, exp = [], []
        for run in runs:
            t0 = time.monotonic()
            runner.up(load_model(file), "central", duration=span, network=specs,
                      network_mode="loopback" if specs else "auto")
            up.append(time.monotonic() - t0 - span)
            t0 = time.monotonic()
            row, lats, start, placement = run_one(file, run, settings, results)
            results.add(run, row, lats, start, placement)
            exp.append(time.monotonic() - t0 - span)
            assert row["status"] == "ok", row
        t0 = time.monotonic()
        with open(results.path("summary.md"), "w") as f:
            f.write(summary.markdown(results.rows, results.devices))
        drawn = plots.draw(results.out, results.rows, {r["run"]: [] for r in results.rows}, results.devices)
        end = time.monotonic() - t0
        results.close()
    finally:
        os.chdir(cwd)
        shutil.rmtree(d, ignore_errors=True)
    print("%d rounds, %g s warm-up + %g s measured per run%s; seconds beyond warm-up + duration"
          % (a.rounds, a.warmup, a.duration, ", network " + a.network if a.network else ""))
    print("%-34s %8s %8s %8s" % ("", "min", "median", "max"))
    for name, xs in (("sensormesh up (baseline)", up), ("experiment run", exp)):
        print("%-34s %8.2f %8.2f %8.2f" % (name, min(xs), statistics.median(xs), max(xs)))
    print("experiment run - up, median: %+.2f s (ratio of overheads %.2f)"
          % (statistics.median(exp) - statistics.median(up), statistics.median(exp) / statistics.median(up)))
    print("summary, tables and %d plots after %d runs: %.2f s" % (len(drawn), len(runs), end))


if __name__ == "__main__":
    main()
