"""One run of an experiment: load the pipeline afresh, apply the run's placement, start the local
devices (in the run's emulated network), deploy, warm up, measure, stop; returns its row.

A run that fails (the file, the placement, a device that cannot start, a deployment refused, a
device that exits for good) comes back as a row with status "failed" and the reason; Ctrl-C
comes back as status "interrupted" (the driver then stops)."""
from __future__ import annotations

import re
import time
from dataclasses import dataclass

from sensormesh.controller import runner
from sensormesh.controller.experiment import measures, placements
from sensormesh.controller.observe.run import Observation


POLL_EVERY = 0.5      # seconds between two metrics polls of a device during a run

# What `up` says when a local device exits while it runs (controller/local.py; the lines of
# docs/topology.md, "Reading the Supervisor's events"): started again, or past its restart limit.
RESTARTING = re.compile(r"^(\S+) exited \((.+?)\); restarting in ")
GIVEN_UP = re.compile(r"^(\S+) exited \((.+?)\); it restarted \d+ times within .*: not restarting it again")


class _Observation(Observation):
    """The observation of one run: polls twice a second, so the measured window starts and
    ends within half a second of the warm-up's end and the run's end."""

    def attach(self, sup):
        super().attach(sup)
        self.poller.every = POLL_EVERY


@dataclass
class Settings:
    duration: float = 10.0        # seconds measured per run
    warmup: float = 3.0           # seconds after the deployment that do not count
    network_mode: str = "loopback"   # where emulated runs build their network (resolved, not auto)
    insecure: bool = False
    keys_dir: str | None = None
    timeout: float = 10.0         # seconds a deployment may take
    heap: int | None = None
    restarts: int = 5             # restarts of an exited local device within a minute, as `up`

    def as_dict(self):
        return dict(self.__dict__)


def _delay_ms(specs):
    """The one-way delay a condition adds, in ms: the largest over its specs (0 for none)."""
    from sensormesh.netlab.spec import parse
    delays = [parse(s).condition.delay for s in specs]
    return max(delays) * 1000.0 if delays else 0.0


def _times(n, fmt, one):
    """`fmt` % n with an s for more than one ("3 times", "2 restarts"); `one` for 1, "" for 0."""
    if not n:
        return ""
    return (one or fmt % n) if n == 1 else fmt % n + "s"


def _reason(e):
    """An error in one line: its lines joined by "; " (a message listing several problems keeps
    them apart), after a heading that ends in ":" by a space."""
    lines = [" ".join(ln.split()) for ln in str(e).splitlines() if ln.strip()] or [type(e).__name__]
    if len(lines) > 1 and lines[0].endswith(":"):
        return lines[0] + " " + "; ".join(lines[1:])
    return "; ".join(lines)


def placement_record(placement, strategy, pins):
    return {"strategy": strategy, "pins": pins, "device_of": dict(placement.device_of),
            "pipes": [{"edge": p.edge, "src": p.src, "dst": p.dst, "route": list(p.route)}
                      for p in placement.pipes],
            "estimated_traffic_Bps": getattr(placement, "total_traffic", None)}


def signal_words(signum):
    """"Ctrl-C" for SIGINT, the signal's name for another (SIGTERM)."""
    import signal
    if signum in (None, signal.SIGINT):
        return "Ctrl-C"
    try:
        return signal.Signals(signum).name
    except ValueError:
        return "signal %d" % signum


def run_one(file, run, settings, results, tick=None, on_event=None, interrupts=None):
    """Returns (row, latencies, start, placement record). tick() is called from the controller's
    loop while the run watches (the progress display); interrupts (driver.Interrupts) is told
    which signal stopped the run, and names it in the reason."""
    from sensormesh.controller.pipeline_file import load_model
    row = {"run": run.id, "placement": run.placement.name, "strategy": run.placement.strategy,
           "network": run.network.name, "repeat": run.repeat, "status": "failed", "reason": "",
           "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "warmup_s": settings.warmup,
           "duration_s": settings.duration, "delay_ms": None}
    events, seen = [], {}
    exits = {}           # device -> [exit status, ...] while the run ran
    gone = {}            # device -> exit status, for the devices past their restart limit
    t0 = time.monotonic()
    writer = results.writer(run)
    obs = None

    def event(text):
        events.append(text)
        m = RESTARTING.match(text) or GIVEN_UP.match(text)
        if m:
            exits.setdefault(m.group(1), []).append(m.group(2))
            if m.re is GIVEN_UP:
                gone[m.group(1)] = m.group(2)
        if on_event is not None:
            on_event(text)

    def deployed(placement, asg):
        seen["t"] = time.time()
        seen["placement"] = placement
        by_device = {}
        for sid, dev in sorted(placement.device_of.items()):
            by_device.setdefault(dev, []).append(sid)
        event("deployed (%s): %s; warming up for %g s" % (placement.strategy, "; ".join(
            "%s: %s" % (d, ", ".join(s)) for d, s in sorted(by_device.items())), settings.warmup))
    try:
        row["delay_ms"] = _delay_ms(run.network.specs)
        model = load_model(file)
        strategy, pins = run.placement.strategy, {}
        if run.placement.path:
            strategy, pins = placements.load(run.placement.path, model)
            placements.apply(model, pins)
            row["strategy"] = strategy
        obs = _Observation(model, out=False)
        obs.store.writer = writer
        emulated = run.network.emulated
        runner.up(model, strategy, duration=settings.warmup + settings.duration, on_event=event,
                  on_deployed=deployed, until=(lambda: bool(tick and tick())), timeout=settings.timeout,
                  keys_dir=settings.keys_dir, insecure=settings.insecure, heap=settings.heap,
                  network=list(run.network.specs) if emulated else None,
                  network_mode=settings.network_mode if emulated else "auto", observe=obs,
                  restarts=settings.restarts, on_signal=interrupts and interrupts.note)
        stops = [e[len("stopping ("):-1] for e in events if e.startswith("stopping (")]
        why = stops[-1] if stops else None
        if why == "interrupted":
            row["status"], row["reason"] = "interrupted", "stopped by %s" % signal_words(interrupts and interrupts.signum)
        elif why != "duration":
            row["reason"] = "ended early: %s" % (why or "no deployment")
        elif "t" not in seen:
            row["reason"] = "nothing was deployed"
        elif gone:     # its steps stopped for good: the run measured a different pipeline
            row["reason"] = "; ".join("%s exited for good during the run (%s%s)" % (
                d, gone[d], _times(len(exits[d]) - 1, ", after %s restart", "")) for d in sorted(gone))
        else:
            row["status"] = "ok"
            # restarted devices got their steps back, but the numbers hold the gap: say so
            row["reason"] = "; ".join("%s restarted %s during the run (%s)" % (
                d, _times(len(st), "%s time", "once"), ", ".join(sorted(set(st)))) for d, st in sorted(exits.items()))
    except KeyboardInterrupt:
        row["status"], row["reason"] = "interrupted", "stopped by %s while starting or stopping" % (
            signal_words(interrupts and interrupts.signum))
    except Exception as e:
        # the file or the placement (PipelineError, PlacementFileError), a local device that
        # cannot start (LocalError), a deployment refused (DeployError), or a bug: the run is
        # recorded as failed with the reason and the experiment goes on
        row["reason"] = _reason(e)
    finally:
        writer.close()
    row["run_wall_s"] = time.monotonic() - t0
    start = seen["t"] + settings.warmup if "t" in seen else None
    placement = None
    if "placement" in seen:
        placement = placement_record(seen["placement"], row["strategy"], run.placement.path and pins or {})
    if start is not None and obs is not None:
        store = obs.store
        model_steps = model.steps
        sources = [sid for sid, s in model_steps.items() if s.type == "source"]
        sinks = [sid for sid, s in model_steps.items() if s.is_sink]
        interp = {d: (store.devices.get(d) or {}).get("interp") or model.devices[d].interpreter
                  for d in model.devices if d in store.devices}
        m = measures.measure(writer.all_samples, writer.all_latencies, start, sources, sinks,
                             dict(store.pipes), interp, end=start + settings.duration)
        lat = m["latency"]
        row.update({"window_s": m["window_s"], "values_in": m["values_in"], "values_out": m["values_out"],
                    "values_in_per_s": m["values_in_per_s"], "values_out_per_s": m["values_out_per_s"],
                    "latency_n": lat["n"], "latency_p50_ms": lat["p50"], "latency_p95_ms": lat["p95"],
                    "latency_p99_ms": lat["p99"], "latency_bound_ms": lat["bound_ms"],
                    "latency_dropped": lat["dropped"], "bytes": m["bytes"],
                    "bytes_per_s": m["bytes_per_s"], "devices": m["devices"], "links": m["links"]})
    if row["status"] == "failed" and not row["reason"]:
        row["reason"] = "unknown"
    if row["status"] != "ok" and events:
        row["last_events"] = events[-5:]
    row["events"] = events
    return row, writer.all_latencies, start, placement
