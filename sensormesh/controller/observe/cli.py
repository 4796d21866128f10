"""`sensormesh top FILE` and the options `up` and `status --watch` share for collecting metrics.

Registered in sensormesh/cli.py; the store, its file and the views live beside this module."""
import time

import click

from sensormesh.controller.cli_files import Seconds
from sensormesh.controller.errors import PipelineError

LOOK_AGAIN = 5.0     # seconds between two looks at the devices found down (top, status --watch)


def metrics_options(f):
    f = click.option("--no-metrics-file", is_flag=True,
                     help="Keep the metrics in memory only (the live views still work).")(f)
    f = click.option("--metrics-out", default=None, metavar="FILE.sqlite|FILE.csv",
                     help="Write every metrics sample to this SQLite (.sqlite/.db) or CSV (.csv) file "
                          "[default: .sensormesh/metrics-<pipeline>-<time>.sqlite].")(f)
    return f


def observation(model, metrics_out, no_file, echo=None, line_every=None):
    from sensormesh.controller.observe import files
    from sensormesh.controller.observe.run import LINE_EVERY, Observation
    if no_file and metrics_out:
        raise click.BadParameter("names a file and --no-metrics-file asks for none: give one of the two",
                                 param_hint="--metrics-out")
    try:
        return Observation(model, out=False if no_file else metrics_out, echo=echo,
                           line_every=line_every or LINE_EVERY)
    except files.FileError as e:
        if metrics_out and not no_file:     # the option's value is refused, as a usage error (exit 2)
            raise click.BadParameter(str(e), param_hint="--metrics-out")
        raise click.ClickException(str(e))


class Terminated:
    """SIGTERM (a service manager, `kill`) ends `top` and `status --watch` as Ctrl-C does: the
    first one raises KeyboardInterrupt where the command waits, so the metrics file is finished
    and the sessions closed; `signum` says it came, and the command then exits 143 (128 + 15,
    as a shell reports a process ended by SIGTERM). Later ones are only noted, so the clean-up
    itself is never cut short. Only in the main thread; restore() gives the old handler back."""

    def __init__(self):
        import signal
        import threading
        self.signum = None
        self.old = None
        if threading.current_thread() is threading.main_thread():
            self.old = signal.signal(signal.SIGTERM, self._on_signal)

    def _on_signal(self, signum, frame):
        first = self.signum is None
        self.signum = signum
        if first:
            raise KeyboardInterrupt

    def restore(self):
        import signal
        if self.old is not None:
            signal.signal(signal.SIGTERM, self.old)
            self.old = None

    def exit_if_hit(self):
        if self.signum is not None:
            import sys
            sys.exit(128 + self.signum)


def poll_rounds(sup, obs, interval, duration, on_round):
    """Ask every device for its status each `interval` s (feeding obs), call on_round(st, areas)
    after each round, until `duration` s pass (0: until Ctrl-C). Returns why it ended."""
    obs.attach(sup)
    end = time.monotonic() + duration if duration else None
    probed = time.monotonic()
    first = True
    try:
        while True:
            if time.monotonic() - probed >= max(LOOK_AGAIN, interval):
                probed = time.monotonic()
                sup.look_again()        # a device found down that answers again is watched again
            st, areas = sup.status()
            if first:               # the first round shows every device that answers, not one slot's
                first = False
                obs.settle()
            obs.tick()
            on_round(st, areas)
            nxt = time.monotonic() + interval
            if end is not None and nxt > end:
                return "duration"
            while time.monotonic() < nxt:           # keep the control links served meanwhile
                sup.loop.run_once(max(1, int((nxt - time.monotonic()) * 1000)))
                obs.tick()
    except KeyboardInterrupt:
        return "interrupted"


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--interval", type=Seconds(), default=1.0, show_default=True, help="Seconds between two polls.")
@click.option("--duration", type=Seconds(zero="until Ctrl-C"), default=0,
              help="Stop after this many seconds (0 = until Ctrl-C).")
@click.option("--timeout", type=Seconds(), default=5.0, show_default=True, help="Seconds to wait for each device.")
@click.option("--keys", "keys_dir", default=None, type=click.Path(file_okay=False),
              help="Key store whose controller key authenticates to the devices (as for `status`).")
@click.option("--insecure", is_flag=True,
              help="Talk to the devices in plaintext, without keys (devices that run without keys).")
@metrics_options
def top(file, interval, duration, timeout, keys_dir, insecure, metrics_out, no_metrics_file):
    """Live view of FILE's deployed pipeline: load, memory and rates per device, step and pipe,
    end-to-end latency p50/p99. Ctrl-C quits (the pipeline keeps running)."""
    from rich.console import Console
    from rich.live import Live
    from sensormesh.controller.cli_files import credentials_for as _creds
    from sensormesh.controller.cli_files import load_or_exit as _load
    from sensormesh.controller.cli_files import note_unstarted_local
    from sensormesh.controller.observe.top import render
    from sensormesh.controller.supervisor import Supervisor
    if interval <= 0:
        raise click.BadParameter("must be more than 0", param_hint="--interval")
    model = _load(file)
    note_unstarted_local(model, file)
    obs = observation(model, metrics_out, no_metrics_file)
    sup = Supervisor(model, None, timeout=timeout, creds=_creds(model, keys_dir, insecure))
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)
    term = Terminated()
    try:
        if console.is_terminal:
            with Live(render(obs.store.view()), console=console, refresh_per_second=4, screen=False,
                      vertical_overflow="visible") as live:
                poll_rounds(sup, obs, interval, duration, lambda st, areas: live.update(render(obs.store.view())))
        else:             # output to a file or pipe: the last view once, whole
            poll_rounds(sup, obs, interval, duration, lambda st, areas: None)
            console.print(render(obs.store.view()))
    except KeyboardInterrupt:
        if term.signum is None:
            raise
    finally:
        sup.close()
        obs.close()
        term.restore()
    if obs.path:
        click.echo("metrics written to %s" % obs.path)
    term.exit_if_hit()
