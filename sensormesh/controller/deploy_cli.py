# `sensormesh up|deploy|status|stop FILE`: run a pipeline file's steps on its devices.
#
#   up FILE       start the file's local devices, deploy, show sink values live, Ctrl-C stops all
#   deploy FILE   deploy to running devices (replacing what they ran); --watch shows sink values
#   status FILE   what every device of the file runs, with per-step counts
#   stop FILE     stop the pipeline on every device of the file (upstream first)
#
# Registered in sensormesh/cli.py. The work is done by runner.py, shared with the Python API.
import shlex
import signal
import sys
import time

import click

from sensormesh.controller import deploy as deploying
from sensormesh.controller import runner
from sensormesh.controller import names
from sensormesh.controller.errors import PipelineError
from sensormesh.controller.cli_files import Count, Seconds
from sensormesh.controller.cli_files import credentials_for as _creds
from sensormesh.controller.cli_files import load_or_exit as _load
from sensormesh.controller.cli_files import note_unstarted_local
from sensormesh.controller.observe.cli import metrics_options, observation, poll_rounds
from sensormesh.controller.placement import STRATEGIES

_strategy = click.option("--strategy", "-s", type=click.Choice(STRATEGIES), default=None,
                         help="Placement strategy (see `sensormesh plan`; default: optimal, or edge when "
                              "optimal's problem is too large).")
# status and stop place the pipeline only to know where its steps run: the strategy it was
# deployed with gives the same placement
_deployed_strategy = click.option(
    "--strategy", "-s", type=click.Choice(STRATEGIES), default=None,
    help="The strategy the pipeline was deployed with (up's or deploy's --strategy), to know where "
         "its steps run (default: as up and deploy: optimal, or edge when optimal's problem is too large).")
_timeout = click.option("--timeout", type=Seconds(), default=5.0, show_default=True,
                        help="Seconds to wait for each device's answers.")


_keys = click.option("--keys", "keys_dir", default=None, type=click.Path(file_okay=False),
                     help="Key store whose controller key authenticates to the devices (default: "
                          ".sensormesh/keys when FILE's devices are all local: true and it exists; "
                          "otherwise plaintext).")
_insecure = click.option("--insecure", is_flag=True,
                         help="Talk to the devices in plaintext, without keys (devices that run without "
                              "keys: `up --insecure`, a worker without --identity).")


def _listen_address(ctx, param, value):
    """--listen: a TCP HOST:PORT (port 1..65535) the devices that dial out are configured to
    register at."""
    if value is None:
        return None
    from sensormesh.device.transport import parse_address
    try:
        addr = parse_address(value)
    except ValueError as e:
        raise click.BadParameter(str(e))
    if addr[0] != "tcp" or addr[2] == 0:
        raise click.BadParameter("%r: the controller takes registrations on a TCP HOST:PORT (port 1..65535), "
                                 "the address the devices' `register` names" % value)
    return value


_listen = click.option("--listen", default=None, metavar="HOST:PORT", callback=_listen_address,
                       help="Take the registrations of the devices that dial out to the controller (behind "
                            "a one-way link; their `register` or `worker --register` address) on this "
                            "address.")


def _watch_only(watch_, *options):
    """Refuse the options that mean something only with --watch when they are given without it
    (options: their parameter names)."""
    if watch_:
        return
    ctx = click.get_current_context()
    given = [o for o in options if ctx.get_parameter_source(o) not in (None, click.core.ParameterSource.DEFAULT)]
    if given:
        flags = ["--" + o.replace("_", "-") for o in given]
        raise click.UsageError("%s work%s only with --watch" % (
            ", ".join(flags), "s" if len(flags) == 1 else ""))


def _supervisor(model, listen, strategy=None, **kw):
    """The Supervisor of status and stop, listening for registrations at `listen` (or None),
    placing with `strategy` (None: the default one) when it needs to know where steps run;
    an address it cannot listen on is said as a ClickException."""
    from sensormesh.controller.supervisor import Supervisor
    _note_registering(model, listen)
    try:
        sup = Supervisor(model, strategy, listen=listen, **kw)   # control routes
    except OSError as e:
        raise click.ClickException(_listen_error(listen, e))
    if listen is not None:
        sup.wait_registrations()
    return sup


def _listen_error(listen, e):
    import errno
    import os
    if getattr(e, "errno", None) == errno.EADDRINUSE:
        return "cannot listen on %s for registrations: it is in use (give another --listen)" % listen
    return "cannot listen on %s for registrations: %s" % (listen, os.strerror(e.errno).lower() if e.errno else e)


def _note_registering(model, listen):
    """Without --listen, name the devices that must register with the controller (they dial
    out): the controller cannot reach them otherwise."""
    if listen is not None or model.topology is None:
        return
    from sensormesh.controller.topology import CONTROLLER
    names = sorted({hop.dst for route in model.topology.control_routes().values() for hop in route.hops
                    if hop.src == CONTROLLER and hop.dialer == hop.dst and hop.dst in model.devices
                    and not model.devices[hop.dst].local})
    if names:
        click.echo("note: %s dial%s out to register with the controller; give --listen HOST:PORT, the "
                   "address %s register%s at" % (", ".join(names), "" if len(names) > 1 else "s",
                                                 "they" if len(names) > 1 else "it",
                                                 "" if len(names) > 1 else "s"), err=True)


# Above this many devices, the start, placement and stop lines summarise (-v lists every device).
SUMMARY_AT = runner.SUMMARY_AT


def _show_plan(placement, asg, out, verbose=False):
    steps = {d: [s for s in a["steps"] if s["type"] not in ("pipe_in", "pipe_out")] for d, a in asg.items()}
    if verbose or len(steps) <= SUMMARY_AT:
        out("placement (%s): %s" % (placement.strategy, "; ".join(
            "%s runs %s" % (d, ", ".join(s["id"] for s in lst) if lst else "relays only")
            for d, lst in sorted(steps.items()))))
        return
    groups = {}     # the step types a device runs -> its devices
    for d, lst in sorted(steps.items()):
        groups.setdefault(tuple(s["type"] for s in lst), []).append(d)
    parts = []
    for kinds, devs in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        first = devs[0]
        ids = ", ".join(s["id"] for s in steps[first]) or "relays only"
        if len(devs) == 1:
            parts.append("%s runs %s" % (first, ids))
        else:
            parts.append("%d devices run %s (%s: %s)" % (len(devs), ", ".join(kinds) or "relays only", first, ids))
    out("placement (%s), %d devices: %s (-v lists every device)" % (placement.strategy, len(steps), "; ".join(parts)))


def _device_list(local, heap, verbose, romfs=None):
    """"board-1 (micropython, heap 96K), pc (cpython)", or counts for a large inventory; a
    MicroPython device that runs the package from files, not from ROMFS, says so."""
    def what(d):
        if d.interpreter != "micropython":
            return d.interpreter
        files = (d.romfs if romfs is None else romfs) is False
        return "micropython, heap %s%s" % (heap or d.heap, ", package in files" if files else "")
    if verbose or len(local) <= SUMMARY_AT:
        return ", ".join("%s (%s)" % (d.name, what(d)) for d in local)
    counts = {}
    for d in local:
        counts[what(d)] = counts.get(what(d), 0) + 1
    return "%s (-v lists them)" % ", ".join(
        "%d %s" % (n, w) for w, n in sorted(counts.items(), key=lambda kv: -kv[1]))


def _heap_option(value):
    if value is None:
        return None
    from sensormesh.controller.model import heap_bytes
    try:
        heap_bytes(value)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--heap")
    return value


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@_strategy
@click.option("--duration", type=Seconds(zero="until Ctrl-C"), default=0,
              help="Stop after this many seconds (0 = until Ctrl-C).")
@click.option("--count", type=Count(zero="no limit"), default=0,
              help="Stop after this many callback values (0 = no limit).")
@click.option("--quiet-devices", is_flag=True, help="Do not show the local devices' own output.")
@click.option("--heap", default=None, callback=lambda ctx, param, v: _heap_option(v),
              help="Heap of every local MicroPython device for this run, e.g. 128K (default: each device's "
                   "`heap` in the file, 96K if it has none).")
@click.option("--romfs/--no-romfs", "romfs", default=None,
              help="Run every local MicroPython device as a board with the package in a ROMFS partition "
                   "(run in place) or in files on its flash (default: each device's `romfs` in the file, "
                   "ROMFS if it has none).")
@click.option("--keys", "keys_dir", default=None, type=click.Path(file_okay=False),
              help="Key store for the local devices' and the controller's keys (default: .sensormesh/keys).")
@click.option("--insecure", is_flag=True,
              help="Run the local devices without keys: plaintext, anyone who can connect may deploy code.")
@click.option("--network", "network", multiple=True, metavar="SPEC",
              help="Emulate network conditions, e.g. \"boards:delay=20ms,jitter=5ms,loss=1%,rate=1mbit\" "
                   "for a domain of FILE or \"office->cloud:delay=80ms\" for a link (repeatable; "
                   "see docs/experiments.md).")
@click.option("--network-mode", type=click.Choice(["auto", "loopback", "namespaces"]), default="auto",
              show_default=True,
              help="Where the emulated network runs: Linux network namespaces (root), loopback, or "
                   "namespaces when possible. loopback or namespaces without --network: the file's "
                   "network without conditions.")
@click.option("--no-metrics", is_flag=True,
              help="Run the local devices with their metrics off: no step times, latency or loop load (counts still count).")
@_timeout
@metrics_options
@click.option("--rates-every", type=Seconds(zero="none"), default=5.0, show_default=True,
              help="Seconds between two lines of rates (0 = none).")
@click.option("--dashboard", default=None, metavar="[HOST:]PORT",
              help="Serve a live web dashboard (and Prometheus /metrics) here; HOST defaults to 127.0.0.1, "
                   "PORT 0 picks a free port.")
@click.option("-v", "--verbose", is_flag=True, help="List every device in the start, placement and stop lines.")
def up(file, strategy, duration, count, quiet_devices, heap, romfs, keys_dir, insecure, network, network_mode,
       no_metrics, timeout, metrics_out, no_metrics_file, rates_every, dashboard, verbose):
    """Start FILE's local devices, deploy the pipeline, show sink values live; Ctrl-C stops everything.

    Metrics are collected while it runs (a line of rates every few seconds; every sample in
    .sensormesh/metrics-<pipeline>-<time>.sqlite unless --metrics-out/--no-metrics-file)."""
    from sensormesh.controller.local import LocalError
    if insecure and keys_dir is not None:       # as deploy, status, stop and top say it
        raise click.UsageError("--insecure runs the local devices without keys: give it or --keys, not both")
    model = _load(file)
    printer = runner.Printer(click.echo, model)
    local = [d for d in model.devices.values() if d.local]
    if not local:
        raise click.ClickException("%s marks no device `local: true`; `sensormesh up` starts local devices "
                                   "(use `sensormesh deploy` for devices that already run)" % file)
    if count and not runner.callback_names(model):
        raise click.BadParameter("it counts the values of callback sinks, and %s has none; use --duration"
                                 % file, param_hint="--count")
    if network:     # refused before any device starts (or a metrics file is made)
        try:
            runner.check_network(model, network)
        except PipelineError as e:
            raise click.BadParameter(str(e), param_hint="--network")
    if network or network_mode != "auto":
        from sensormesh.netlab.emulation import EmulationError, check_mode
        try:
            check_mode(model, network_mode)
        except EmulationError as e:
            raise click.BadParameter(str(e), param_hint="--network-mode")
    try:            # placed before any device starts (or a metrics file is made)
        placement = model.place(strategy)
    except PipelineError as e:
        raise click.ClickException(str(e))
    listen = None
    if dashboard is not None:
        from sensormesh.controller.observe.dashboard import DashboardError, parse_listen
        try:
            listen = parse_listen(dashboard)
        except DashboardError as e:
            raise click.BadParameter(str(e), param_hint="--dashboard")
    obs = observation(model, metrics_out, no_metrics_file, echo=printer.line if rates_every > 0 else None,
                      line_every=rates_every)
    dash = None
    if listen is not None:
        from sensormesh.controller.observe.dashboard import Dashboard
        dash = Dashboard(obs.store, *listen)
        try:
            printer.line("dashboard: %s (Prometheus: %smetrics)" % ((dash.start(),) * 2))
        except DashboardError as e:
            obs.close()
            raise click.ClickException(str(e))
        from sensormesh.controller.observe.graph import missing_note
        if missing_note():
            printer.event(missing_note())
    printer.line("starting %d local device(s): %s" % (len(local), _device_list(local, heap, verbose, romfs)))

    first = {}
    came = []       # the signals that ended the run: SIGTERM makes the exit status 143

    def deployed(placement, asg):
        first["epoch"] = next((a.get("epoch") for a in asg.values()), None)
        _show_plan(placement, asg, printer.line, verbose)
        printer.line("running; values from callback sinks follow%s" % ("" if duration else " (Ctrl-C stops)"))
    try:
        final = runner.up(model, strategy, duration=duration or None, count=count or None,
                          on_event=printer.event, on_line=None if quiet_devices else printer.device_line,
                          on_deliver=printer.deliver, on_deployed=deployed, heap=heap, romfs=romfs, timeout=timeout,
                          keys_dir=keys_dir, insecure=insecure, network=list(network), network_mode=network_mode,
                          observe=obs, device_metrics=not no_metrics, on_progress=printer.line,
                          placement=placement, on_signal=came.append)
    except (PipelineError, LocalError, deploying.DeployError) as e:
        raise click.ClickException(str(e))
    except KeyboardInterrupt:
        printer.line("interrupted while starting; every local device was stopped")
        sys.exit(128 + (came[0] if came else signal.SIGINT))
    finally:
        if dash is not None:
            dash.stop()
        obs.close()
    if obs.path:
        printer.line("metrics written to %s" % obs.path)
    if final:
        printer.line(runner.summary_header(final, first.get("epoch")))
        for line in runner.summary(final, verbose):
            printer.line("  " + line)
    if came and came[0] == signal.SIGTERM:
        # Ctrl-C is how `up` is meant to end (exit 0); SIGTERM (`kill`, a service manager) ends
        # it the same clean way, with 143 (128 + 15) as a shell reports it, like `top`
        sys.exit(128 + signal.SIGTERM)


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@_strategy
@click.option("--watch", "watch_", is_flag=True, help="Stay and show callback-sink values; Ctrl-C detaches.")
@click.option("--duration", type=Seconds(zero="until Ctrl-C"), default=0,
              help="With --watch: detach after this many seconds (0 = until Ctrl-C).")
@_keys
@_insecure
@_timeout
@_listen
def deploy(file, strategy, watch_, duration, keys_dir, insecure, timeout, listen):
    """Deploy FILE's pipeline to its running devices (replacing what they ran before)."""
    _watch_only(watch_, "duration")
    model = _load(file)
    note_unstarted_local(model, file)
    printer = runner.Printer(click.echo, model)
    for w in model.warnings:
        printer.event("warning: %s" % w)
    _note_registering(model, listen)
    try:
        placement, asg, dep = runner.deploy(model, strategy, timeout=timeout,
                                            creds=_creds(model, keys_dir, insecure), listen=listen)
    except (PipelineError, deploying.DeployError) as e:
        raise click.ClickException(str(e))
    except OSError as e:
        raise click.ClickException(_listen_error(listen, e))
    if getattr(placement, "fallback", None):
        printer.event("warning: %s" % placement.fallback)
    _show_plan(placement, asg, printer.line)
    if not watch_:
        dep.close()
        # the options status and stop need to reach the same devices the same way
        more = "".join(" %s %s" % (o, shlex.quote(str(v))) for o, v in (("--keys", keys_dir), ("--listen", listen),
                                                                         ("--strategy", strategy)) if v)
        more += " --insecure" if insecure else ""
        printer.line("deployed and started on %d device(s); `sensormesh status %s%s` shows them, "
                     "`sensormesh stop %s%s` stops them" % (len(asg), file, more, file, more))
        return
    printer.line("running; values from callback sinks follow (Ctrl-C detaches, the pipeline keeps running)")
    came = []
    why = runner.watch(dep, runner.dispatcher(model, printer.deliver), printer.event, duration=duration or None,
                       on_signal=came.append)
    dep.close()
    if why == runner.ELSEWHERE:
        printer.line("detached: the pipeline was stopped or replaced from elsewhere")
    else:
        printer.line("detached (%s); the pipeline keeps running" % why)
    if came and came[0] == signal.SIGTERM:
        sys.exit(128 + signal.SIGTERM)      # as `up`, `top` and `status --watch`


def _step_line(sid, s):
    if not isinstance(s, dict):
        return "%s: %r" % (sid, s)
    if "error" in s:
        return "%s: ERROR %s" % (sid, s["error"])
    keys = [k for k in ("in", "out", "dropped", "lost", "pending", "connected", "lag") if k in s]
    return "%s: %s" % (sid, ", ".join("%s %s" % (k, s[k]) for k in keys) or "-")


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@_timeout
@click.option("--json", "as_json", is_flag=True, help="Print the raw status of every device as JSON (with --watch: "
              "JSON Lines, one object per poll with the status and the metrics).")
@_keys
@_insecure
@click.option("--watch", "watch_", is_flag=True,
              help="Ask again every --interval seconds and collect the metrics (Ctrl-C ends).")
@click.option("--interval", type=Seconds(), default=2.0, show_default=True, help="With --watch: seconds between polls.")
@click.option("--duration", type=Seconds(zero="until Ctrl-C"), default=0,
              help="With --watch: stop after this many seconds (0 = until Ctrl-C).")
@click.option("-v", "--verbose", is_flag=True, help="Every device with its per-step counts, however many there are.")
@_listen
@_deployed_strategy
@metrics_options
def status(file, timeout, as_json, keys_dir, insecure, watch_, interval, duration, verbose, listen, strategy,
           metrics_out, no_metrics_file):
    """Show what every device of FILE runs, with per-step counts, and in words what a failed device
    cuts off (the affected area). Above a dozen devices: counts per domain and state, and the
    devices that are not running (-v: everything). Exit code 1 if a device is unreachable."""
    _watch_only(watch_, "interval", "duration", "metrics_out", "no_metrics_file")
    model = _load(file)
    note_unstarted_local(model, file)
    sup = _supervisor(model, listen, strategy, timeout=timeout, creds=_creds(model, keys_dir, insecure))
    domains = names.named_domains_of(sup.topology)
    if watch_:
        if interval <= 0:
            raise click.BadParameter("must be more than 0", param_hint="--interval")
        obs = observation(model, metrics_out, no_metrics_file)
        from sensormesh.controller.observe.cli import Terminated
        from sensormesh.controller.observe.top import rates_line
        term = Terminated()
        seen = {"unreachable": False}

        def show(st, areas):
            if as_json:       # JSON Lines: one object per round, nothing else on stdout
                seen["unreachable"] = any("error" in s for s in st.values())
                click.echo(watch_json_line(time.time(), st, areas, obs.store.view()))
                return
            click.echo("-- %s" % time.strftime("%H:%M:%S"))
            seen["unreachable"] = _show_status(st, areas, as_json, verbose, domains)
            click.echo(rates_line(obs.store.view()))
        try:
            poll_rounds(sup, obs, interval, duration, show)
        except KeyboardInterrupt:        # SIGTERM while a round was shown: it ends as within one
            if term.signum is None:
                raise
        finally:
            sup.close()
            obs.close()
            term.restore()
        if obs.path:      # with --json on stderr: stdout holds the JSON lines only
            click.echo("metrics written to %s" % obs.path, err=as_json)
        term.exit_if_hit()
        if seen["unreachable"]:
            sys.exit(1)
        return
    try:
        st, areas = sup.status()
    finally:
        sup.close()
    if _show_status(st, areas, as_json, verbose, domains):
        sys.exit(1)


def watch_json_line(t, st, areas, view):
    """One round of `status --watch --json` as one line of JSON: the time (Unix seconds), every
    device's raw status, the affected area in words and the metrics the store derived (devices'
    load and memory, step and pipe rates, end-to-end latency; null where not known yet)."""
    import json
    import math

    def finite(x):
        if isinstance(x, float):
            return x if math.isfinite(x) else None
        if isinstance(x, dict):
            return {str(k): finite(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [finite(v) for v in x]
        return x
    metrics = {k: view.get(k) for k in ("devices", "steps", "pipes", "latency")}
    return json.dumps(finite({"t": t, "status": st, "affected": list(areas or []), "metrics": metrics}),
                      sort_keys=True, separators=(",", ":"), default=str)


def _state(s):
    """A device's state for the counts: "busy" (it answered without room for the request),
    "status refused" (it answered its status request with an error), "down" (no answer), else
    its assignment's state."""
    if "error" in s:
        return "busy" if s.get("busy") else "without keys" if s.get("plaintext") else \
            "status refused" if s.get("refused") else "down"
    a = s.get("assignment") or {}
    state = a.get("state", "empty")
    return "stopped" if state == "empty" and a.get("pipeline") else state


def status_counts(st, domains_of):
    """Lines for many devices: "201 devices: 199 running, 2 down", then one line per domain
    ("boards: 198 running, 2 down"; a device in several domains counts in each)."""
    def counts(names):
        c = {}
        for n in names:
            c[_state(st[n])] = c.get(_state(st[n]), 0) + 1
        return ", ".join("%d %s" % (k, state) for state, k in sorted(c.items(), key=lambda kv: (-kv[1], kv[0])))
    members = {}
    for name in st:
        try:
            doms = sorted(domains_of(name))
        except KeyError:
            doms = []
        for d in doms or [names.NO_DOMAIN]:
            members.setdefault(d, []).append(name)
    lines = ["%d devices: %s" % (len(st), counts(st))]
    lines += ["  %s: %s" % (d, counts(members[d])) for d in sorted(members)]
    return lines


def _show_status(st, areas, as_json, verbose=False, domains_of=None):
    """Print one status round; True if a device was unreachable. Above SUMMARY_AT devices (and
    not verbose): counts per domain and state, then the devices not running, one line each."""
    import json
    if as_json:
        click.echo(json.dumps(st, indent=2, sort_keys=True))
    unreachable = []
    brief = not as_json and not verbose and domains_of is not None and len(st) > SUMMARY_AT
    if brief:
        for line in status_counts(st, domains_of):
            click.echo(line)
        click.echo("(-v lists every device with its steps)")

    def kind_of(s):
        return "BUSY" if s.get("busy") else "PLAINTEXT" if s.get("plaintext") else \
            "STATUS REFUSED" if s.get("refused") else "UNREACHABLE"
    order = names.natural_sorted(st) if brief else sorted(st)
    # brief: of each kind of device that did not answer, the first few with their reasons, then
    # the others by name in one line (a fleet that is not started is hundreds of devices down)
    kinds = {}
    for name in order:
        if "error" in st[name]:
            kinds.setdefault(kind_of(st[name]), []).append(name)
    for name in order:
        s = st[name]
        if as_json:
            if "error" in s:
                unreachable.append(name)
            continue
        if "error" in s:
            unreachable.append(name)
            kind = kind_of(s)
            same = kinds[kind]
            if brief and len(same) > names.SHOWN and name in same[names.SHOWN - 1:]:
                if name == same[names.SHOWN - 1]:
                    rest = same[names.SHOWN - 1:]
                    click.echo("and %d more %s (-v gives each one's reason): %s"
                               % (len(rest), kind, names.name_list(rest, shown=2 * names.SHOWN)))
                continue
            click.echo("%s: %s (%s)" % (name, kind, s["error"]))
            continue
        a = s.get("assignment") or {}
        if not isinstance(a, dict):     # not as a sensormesh device answers: shown as it came
            click.echo("%s: its status holds an assignment that is not an object: %s" % (name, repr(a)[:120]))
            continue
        state = a.get("state", "empty")
        if brief and state == "running" and not s.get("errors"):
            continue
        if state == "empty" and a.get("pipeline"):
            state = "stopped:"      # a device whose pipeline was stopped keeps its name and epoch
        head = "%s: %s" % (name, state)
        if a.get("pipeline"):
            head += " pipeline %s epoch %s" % (a["pipeline"], a.get("epoch"))
        if s.get("errors"):
            head += ", %s error(s)" % s["errors"]
        for part in runner.undelivered_parts(a):
            head += ", " + part
        click.echo(head)
        if brief:
            continue
        steps = a.get("steps") or {}
        for sid, step in (steps.items() if isinstance(steps, dict) else [("steps", steps)]):
            click.echo("    " + _step_line(sid, step))
        if a.get("steps_omitted"):
            click.echo("    (%d steps: their counts were left out: %s)"
                       % (a["steps_omitted"], a.get("omitted_because") or "they did not fit the reply"))
    if unreachable:
        if areas and not as_json:
            click.echo("affected area:")
            for line in areas:
                click.echo("  " + line)
        return True
    return False


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@_timeout
@_keys
@_insecure
@click.option("-v", "--verbose", is_flag=True, help="Every device with its per-step counts, however many there are.")
@_listen
@_deployed_strategy
def stop(file, timeout, keys_dir, insecure, verbose, listen, strategy):
    """Stop the pipeline on every device of FILE (upstream first) and show the final counts."""
    model = _load(file)
    note_unstarted_local(model, file)
    sup = _supervisor(model, listen, strategy, timeout=timeout, creds=_creds(model, keys_dir, insecure))
    try:
        final = sup.stop()
    finally:
        sup.close()
    for line in runner.summary(final, verbose):
        click.echo(line)
    if any("error" in v for v in final.values()):
        sys.exit(1)
