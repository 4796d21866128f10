"""Runs an experiment's plan one run after the other and writes the results as it goes.

    outcome = run_experiment(file, runs, settings, out_dir)
    outcome.rows, outcome.failed, outcome.interrupted

A run that fails is recorded with its reason and the next one starts. Ctrl-C ends the current
run (its devices stop in order, as under `sensormesh up`), records it as interrupted and skips
the rest; everything finished so far stays in the results, with its summary and plots."""
from __future__ import annotations

from dataclasses import dataclass, field

from sensormesh.controller.experiment import plots, summary
from sensormesh.controller.experiment.one_run import run_one
from sensormesh.controller.experiment.progress import Progress
from sensormesh.controller.experiment.results import Results

START_STOP = 4.0      # seconds a run takes beyond warm-up and duration, before one has finished


@dataclass
class Outcome:
    out: str
    rows: list = field(default_factory=list)
    plots: list = field(default_factory=list)
    interrupted: bool = False
    signal: int | None = None    # the signal that interrupted it: SIGINT (Ctrl-C) or SIGTERM

    @property
    def failed(self):
        return [r for r in self.rows if r["status"] == "failed"]


class ModeError(ValueError):
    """The network mode asked for cannot hold this pipeline's devices; the message says why."""


def resolve_mode(mode, on_note, model=None):
    """The network mode every emulated run uses (the baseline too, so they compare): auto means
    namespaces where they can be built, else loopback, decided once. In namespaces every device
    runs here, so a file with a device that is not `local: true` gets loopback under auto (as
    `up` does, saying so) and is refused under namespaces (ModeError), before any run starts, as
    is namespaces on a machine that cannot build them (not root, tools missing)."""
    from sensormesh.netlab.emulation import EmulationError, check_mode
    try:
        check_mode(model, mode)
    except EmulationError as e:
        raise ModeError(str(e)) from None
    remote = sorted(d.name for d in model.devices.values() if not d.local) if model is not None else []
    if mode != "auto":
        return mode
    if remote:
        on_note("%s not local: true, so the runs emulate the network on loopback (in namespaces "
                "every device must run here)" % ", ".join(remote))
        return "loopback"
    from sensormesh.netlab import namespaces
    try:
        namespaces.preflight()
        return "namespaces"
    except namespaces.NetLabUnavailable as e:
        on_note("%s; the runs emulate the network on loopback" % e)
        return "loopback"


def clean_leftovers(on_note, mode=None):
    """Before the first run: remove what an earlier run in this directory left behind when it was
    killed (its devices, relays, namespaces, temporary files; netlab/state.py) and say what, so
    that an experiment after a crash starts from a clean machine whether its runs emulate a
    network or not. In namespaces mode also the namespaces of dead runs of other directories."""
    from sensormesh.netlab import state
    removed = state.cleanup_leftovers()
    if mode == "namespaces":
        from sensormesh.netlab import namespaces
        try:
            removed += ["namespace " + n for n in namespaces.cleanup_stale()]
        except namespaces.NetLabError:
            pass                   # the run itself will say what is wrong
    if removed:
        on_note("removed what an earlier run left behind: %s" % ", ".join(removed))
    return removed


def run_experiment(file, runs, settings, out, progress=None, on_run=None, on_event=None, argv=None,
                   placement_files=()):
    """Run `runs` (plan.make_plan) of pipeline `file` into directory `out`. on_run(kind, run, row)
    is told "start" and "end" of every run (row None at the start)."""
    results = Results(out)
    try:
        results.save_inputs(file, placement_files)
        results.save_environment(dict(settings.as_dict(), runs=len(runs)), argv)
    except BaseException:
        results.close()
        raise
    progress = progress or Progress(len(runs), settings.warmup + settings.duration + START_STOP)
    clean_leftovers(progress.note, settings.network_mode)
    outcome = Outcome(out)
    measured = {}                # run id -> latency samples after the warm-up (s)
    title = "Experiment: %s" % file
    interrupts = Interrupts()      # between runs; each run's `up` handles them itself and tells it
    try:
        for k, run in enumerate(runs, 1):
            progress.start(k, run)
            if on_run is not None:
                on_run("start", run, None)
            row, lats, start, placement = run_one(file, run, settings, results, tick=progress.tick,
                                                  on_event=on_event, interrupts=interrupts)
            measured[run.id] = [lat for t, _, lat, _ in lats if start is not None and t >= start]
            results.add(run, row, lats, start, placement)
            outcome.rows.append(row)
            progress.done(row)
            if on_run is not None:
                on_run("end", run, row)
            _write_summary(results, outcome.rows, title)
            if row["status"] == "interrupted":
                outcome.interrupted = True
                break
    except KeyboardInterrupt:        # between two runs
        outcome.interrupted = True
    finally:
        cut = interrupts.hits >= 2
        try:
            _write_summary(results, outcome.rows, title)
            if interrupts.hits < 2:        # a second Ctrl-C: no plots, out at once
                interrupts.abortable = True
                outcome.plots = plots.draw(out, outcome.rows, measured, results.devices)
        except KeyboardInterrupt:          # a signal came while these were written
            outcome.interrupted = cut = True
        finally:
            interrupts.abortable = False
            results.close()
            interrupts.restore()
            outcome.signal = interrupts.signum
        if cut:
            outcome.plots = []
            progress.note("%s: the plots were left out (summary.md and the CSV files hold every "
                          "finished run)" % ("interrupted again" if interrupts.hits >= 2 else "interrupted"))
    return outcome


class Interrupts:
    """Ctrl-C (SIGINT) and SIGTERM during an experiment: both stop it as Ctrl-C does; `signum`
    is the first that came, `hits` how many came (a second one skips the plots). Between runs
    its handler raises KeyboardInterrupt; during a run `up` has its own, and tells note()
    (one_run.py). Handlers only in the main thread."""

    def __init__(self):
        import signal
        import threading
        self.signum = None
        self.hits = 0
        self.abortable = False      # while the plots are drawn: a signal ends them
        self.old = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.old[sig] = signal.signal(sig, self._on_signal)

    def note(self, signum):
        self.signum = self.signum or signum
        self.hits += 1

    def _on_signal(self, signum, frame):
        self.note(signum)
        # the first stops the experiment; a later one only ends the plots (`abortable`), so it
        # never cuts short the recording of the run that was stopped
        if self.hits == 1 or self.abortable:
            raise KeyboardInterrupt

    def restore(self):
        import signal
        for sig, handler in self.old.items():
            signal.signal(sig, handler)
        self.old = {}


def _write_summary(results, rows, title):
    from sensormesh.controller.experiment.results import replace_file
    text = summary.markdown(rows, results.devices, title)
    replace_file(results.path("summary.md"), lambda f: f.write(text))
