# `sensormesh experiment FILE`: compare placements of one pipeline under network conditions.
# Registered in sensormesh/cli.py.
import os
import sys

import click

from sensormesh.controller.cli_files import Seconds
from sensormesh.controller.placement import STRATEGIES


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--strategies", default="", metavar="NAMES",
              help="Placement strategies to compare, comma-separated: %s." % ", ".join(STRATEGIES))
@click.option("--placement", "placement_specs", multiple=True, metavar="NAME=FILE",
              help="A placement file to compare as NAME (steps pinned to devices; repeatable).")
@click.option("--network", "networks", multiple=True, metavar="SPEC",
              help="A network condition, e.g. \"boards:delay=20ms,loss=1%\"; several specs that hold "
                   "together are joined by ';' (repeatable: one condition each). A baseline `none` "
                   "(the same emulated network without conditions) runs first unless --no-baseline.")
@click.option("--no-baseline", is_flag=True, help="With --network: no run without conditions.")
@click.option("--network-mode", type=click.Choice(["auto", "loopback", "namespaces"]), default="auto",
              show_default=True, help="Where the emulated network runs (see `sensormesh up --help`); loopback or namespaces "
                   "without --network: the file's network without conditions (network `none`).")
@click.option("--duration", type=Seconds(least=1.0), default=10.0, show_default=True,
              help="Seconds measured per run.")
@click.option("--warmup", type=Seconds(zero="no warm-up"), default=3.0, show_default=True,
              help="Seconds after each deployment that are not measured.")
@click.option("--repeat", type=click.IntRange(min=1), default=1, show_default=True,
              help="Runs of every combination.")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False),
              help="Directory for the results (created; must be empty or not exist).")
@click.option("--keys", "keys_dir", default=None, type=click.Path(file_okay=False),
              help="Key store for the local devices (default: .sensormesh/keys).")
@click.option("--insecure", is_flag=True, help="Run the local devices without keys (plaintext).")
@click.option("--timeout", type=Seconds(), default=10.0, show_default=True, help="Seconds a deployment may take.")
@click.option("-v", "--verbose", is_flag=True, help="Show the controller's events of every run.")
def experiment(file, strategies, placement_specs, networks, no_baseline, network_mode, duration, warmup,
               repeat, out, keys_dir, insecure, timeout, verbose):
    """Run pipeline FILE once per placement, network condition and repeat, measure each run, and
    write the comparison to --out: runs.csv, latency.csv, metrics.sqlite, summary.md, plots.

    Exit status: 0 when every run completed, 1 when any failed, 130 after Ctrl-C, 143 after
    SIGTERM (the results so far are kept)."""
    from sensormesh.controller.experiment import plan as planning
    from sensormesh.controller.experiment.driver import resolve_mode, run_experiment
    from sensormesh.controller.experiment.one_run import Settings
    from sensormesh.controller.experiment.progress import Progress
    from sensormesh.controller.cli_files import load_or_exit
    model = load_or_exit(file)
    if not any(d.local for d in model.devices.values()):
        raise click.ClickException("%s marks no device `local: true`; an experiment starts local devices" % file)
    try:
        chosen = [planning.Placement(s, s) for s in planning.parse_strategies(strategies, STRATEGIES)]
        files = [planning.parse_placement(p) for p in placement_specs]
        conditions = [planning.parse_condition(n) for n in networks]
        if not conditions and network_mode != "auto":
            # a mode alone: the file's network laid out without conditions, as `up` does
            conditions = [planning.parse_condition(planning.NONE)]
        runs = planning.make_plan(chosen + files, conditions, repeat, baseline=not no_baseline)
    except planning.PlanError as e:
        raise click.UsageError(str(e))
    _check_inputs(model, files, conditions)
    if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)):
        raise click.ClickException("--out %s exists and is not empty: give a new directory" % out)
    progress = Progress(len(runs), warmup + duration + 4.0)
    from sensormesh.controller.experiment.driver import ModeError
    try:
        mode = resolve_mode(network_mode, progress.note, model) if conditions else network_mode
    except ModeError as e:
        raise click.BadParameter(str(e), param_hint="--network-mode")
    settings = Settings(duration=duration, warmup=warmup, network_mode=mode, insecure=insecure,
                        keys_dir=keys_dir, timeout=timeout)
    progress.note("experiment %s: %d run(s) of %g s + %g s warm-up (%s), results in %s" % (
        model.name, len(runs), duration, warmup, _what(chosen + files, conditions, repeat, mode), out))
    from sensormesh.controller.experiment.results import ResultsError
    try:
        outcome = run_experiment(file, runs, settings, out, progress=progress,
                                 on_event=(lambda t: progress.note("  ! " + t)) if verbose else None,
                                 argv=["sensormesh", "experiment"] + sys.argv[2:] if sys.argv[1:2] == ["experiment"] else None,
                                 placement_files=[(p.name, p.path) for p in files])
    except ResultsError as e:
        raise click.ClickException(str(e))
    except KeyboardInterrupt:       # before the runs began, or a signal after the results were written
        progress.note("interrupted; results in %s" % out)
        sys.exit(130)
    import signal
    from sensormesh.controller.experiment.one_run import signal_words
    ok = sum(1 for r in outcome.rows if r["status"] == "ok")
    progress.note("%d of %d run(s) completed, %d failed%s; results in %s (summary.md, runs.csv, %d plots)" % (
        ok, len(runs), len(outcome.failed),
        ", interrupted by %s" % signal_words(outcome.signal) if outcome.interrupted else "", out, len(outcome.plots)))
    if outcome.interrupted:      # as a shell reports a process ended by the signal: 128 + its number
        sys.exit(128 + (outcome.signal or signal.SIGINT))
    if outcome.failed:
        sys.exit(1)


def _what(placements, conditions, repeat, mode):
    text = "placements %s" % ", ".join(p.name for p in placements)
    if conditions:
        text += "; network %s" % mode
    if repeat > 1:
        text += "; %d repeats" % repeat
    return text


def _check_inputs(model, files, conditions):
    """Refuse a bad placement file or network spec before anything starts."""
    from sensormesh.controller.experiment import placements
    from sensormesh.controller import runner
    from sensormesh.controller.errors import PipelineError
    for p in files:
        try:
            placements.load(p.path, model)
        except placements.PlacementFileError as e:
            raise click.BadParameter(str(e), param_hint="--placement")
    for c in conditions:
        try:     # as `up --network` checks it: the grammar, and its domains and links in the file
            runner.check_network(model, c.specs)
        except PipelineError as e:
            raise click.BadParameter(str(e), param_hint="--network")
