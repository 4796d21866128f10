"""Running a pipeline from the controller: plan, start local devices, deploy, watch, stop.

`sensormesh up|deploy|status|stop` (deploy_cli.py) and `Pipeline.up()` in the Python API are thin
layers over these functions, so the command line and a user's program behave the same way.
"""
from __future__ import annotations

import json
import re
import time
from typing import Callable

from sensormesh.controller.names import SHOWN, name_list
from sensormesh.controller import deploy as deploying
from sensormesh.controller.errors import PipelineError

# While watching, up looks at its local devices' processes (a waitpid each) at most every
# TEND_PER_DEVICE s per device, and at least every TEND_MOST s: a few devices are looked at
# about every turn of the loop, 200 every 0.1 s (about 1% of a core either way).
TEND_PER_DEVICE = 0.0005
TEND_MOST = 0.1


def callback_names(model) -> dict[str, str]:
    """{callback step id: the name the user's program knows it by}."""
    out = {}
    for sid, s in model.steps.items():
        if s.type == "callback":
            out[sid] = (s.params or {}).get("name") or sid
    return out


def shown(v):
    """v with each float cut to 12 significant digits, for printing: a mean's binary rounding
    (48.14999999999999) shows as 48.15; the callback itself gets the value unchanged."""
    if type(v) is float:
        return float("%.12g" % v) if v == v and v not in (float("inf"), float("-inf")) else v
    if type(v) is list:
        return [shown(x) for x in v]
    if type(v) is dict:
        return {k: shown(x) for k, x in v.items()}
    return v


class Printer:
    """Shows deliveries, events and device output, one line each, safe across threads."""

    def __init__(self, echo: Callable[[str], None] = print, model=None):
        import threading
        self.echo = echo
        self.lock = threading.Lock()
        self.names = callback_names(model) if model is not None else {}
        self.delivered = 0

    def line(self, text):
        with self.lock:
            self.echo(text)

    def deliver(self, device, step, values):
        name = self.names.get(step, step)
        with self.lock:
            for v in values:
                self.echo("%s  %s" % (name, json.dumps(shown(v), separators=(",", ":"))))
            self.delivered += len(values)

    def device_line(self, device, text):
        self.line("  %s | %s" % (device, text))

    def event(self, text):
        self.line("! " + text)


def dispatcher(model, fallback: Callable[[str, str, list], None]):
    """on_deliver that calls the user's callback functions (model.callbacks) by sink name and
    hands values of callbacks without a function to `fallback`."""
    names = callback_names(model)
    fns = model.callbacks or {}

    def on_deliver(device, step, values):
        fn = fns.get(names.get(step, step))
        if fn is None:
            fallback(device, step, values)
            return
        for v in values:
            fn(v)
    return on_deliver


# Above this many devices a stop summary groups the devices that ran the same steps; above
# FOLD_AT steps of one kind on a device (a sink's hundreds of pipe inputs) they are counted
# together. verbose lists everything.
SUMMARY_AT = 12
FOLD_AT = 4


def _kind(sid):
    """A step id with its numbers as "#": the steps one fleet's devices run alike ("in:w#")."""
    return re.sub(r"[0-9]+", "#", sid)


def _counts(s):
    bit = "%s>%s" % (s.get("in", "-"), s.get("out", "-"))
    # a pipe_in's `lost`: values its sender's full replay buffer let go (docs/reliability.md)
    return bit + (" (%d dropped)" % s["dropped"] if s.get("dropped") else "") + \
        (" (%d lost)" % s["lost"] if s.get("lost") else "")


def _steps(st):
    return [(sid, s) for sid, s in (st.get("steps") or {}).items() if isinstance(s, dict)]


def _total(parts):
    """One step's counts summed over parts ({"in", "out", "dropped"} dicts)."""
    out = {}
    for k in ("in", "out", "dropped", "lost"):
        vals = [p[k] for p in parts if isinstance(p.get(k), int)]
        if vals:
            out[k] = sum(vals)
    return out


def undelivered(final, left_out):
    """final stats with each device's "undeliverable": of its lost_deliveries (every callback
    value it numbered and did not deliver), those it left out while the controller listened
    (left_out: Deliveries.left_out; values JSON cannot carry, NaN or infinity, or too large to
    send), unless the device says so itself. The rest were dropped while no controller listened."""
    for dev, st in final.items():
        if isinstance(st, dict) and st.get("lost_deliveries") and "undeliverable" not in st and left_out.get(dev):
            st["undeliverable"] = min(left_out[dev], st["lost_deliveries"])
    return final


def undelivered_parts(st):
    """Words for a device's callback values that were not delivered, by cause: those it could not
    send (st["undeliverable"]: NaN or infinity, which JSON cannot carry, or too large) and those
    dropped while no controller listened; when the stats do not say which, both causes."""
    lost = st.get("lost_deliveries") or 0
    if not lost:
        return []
    if "undeliverable" not in st:
        return ["%d callback value%s not delivered (values JSON cannot carry, such as NaN or infinity, or "
                "values dropped while no controller listened; the device's log says which)"
                % (lost, "" if lost == 1 else "s")]
    bad = min(st["undeliverable"] or 0, lost)
    parts = []
    if bad:
        parts.append("%d callback value%s not delivered: JSON cannot carry %s (NaN or infinity) or %s too "
                     "large to send" % (bad, "" if bad == 1 else "s", "it" if bad == 1 else "them",
                                        "it was" if bad == 1 else "they were"))
    if lost - bad:
        parts.append("%d callback value%s lost while no controller listened" % (lost - bad,
                                                                             "" if lost - bad == 1 else "s"))
    return parts


def _device_steps(st, verbose):
    """"t 5>5, 200 x in:w# 1000>1000 (4-6 each), all 1000>1000": a device's steps, those of
    one kind counted together when there are more than FOLD_AT of them (not verbose)."""
    steps = _steps(st)
    kinds = {}
    for sid, s in steps:
        kinds.setdefault(_kind(sid), []).append(s)
    parts, shown = [], set()
    for sid, s in steps:
        k = _kind(sid)
        many = kinds[k]
        if verbose or len(many) <= FOLD_AT:
            parts.append("%s %s" % (sid, _counts(s)))
        elif k not in shown:
            shown.add(k)
            each = [p.get("in") for p in many if isinstance(p.get("in"), int)]
            spread = " (%d-%d each)" % (min(each), max(each)) if each else ""
            parts.append("%d x %s %s%s" % (len(many), k, _counts(_total(many)), spread))
    parts += undelivered_parts(st)
    return ", ".join(parts) or "nothing ran"


def _device_line(dev, st, verbose):
    """What a stop made of one device: its error, its final counts, or, when nothing ran as the
    stop came, that its pipeline had stopped before (or that nothing was ever deployed)."""
    if "error" in st:
        return _error(dev, st)
    if st.get("state") == "empty":
        if st.get("pipeline"):
            return "already stopped (pipeline %s epoch %s)" % (st["pipeline"], st.get("epoch"))
        return "nothing deployed"
    return _device_steps(st, verbose)


def _error(dev, st):
    """A device's error in a summary line that already names it ("pc: ...", not "pc: pc: ...")."""
    text = st["error"]
    return text[len(dev) + 2:] if text.startswith(dev + ": ") else text


def summary_header(final: dict[str, dict], first_epoch=None) -> str:
    """The line before summary(): a device redeployed while the run went on (a re-placement
    after a failure, a device back) counts from that deployment, not from the start of the run,
    and the line says which devices, so that what the sinks printed and these counts can be
    compared."""
    again = sorted(d for d, st in final.items() if isinstance(st, dict) and "error" not in st
                   and first_epoch is not None and st.get("epoch") not in (None, first_epoch))
    if not again:
        return "stopped; per device (step in>out):"
    who = ", ".join(again) if len(again) <= SUMMARY_AT else "%d devices" % len(again)
    return ("stopped; per device (step in>out; %s redeployed during the run: counted since %s last "
            "deployment):" % (who, "their" if len(again) > 1 else "its"))


def summary(final: dict[str, dict], verbose=False) -> list[str]:
    """Lines describing each device's final stats after a stop: values in/out/dropped per step.

    Above SUMMARY_AT devices (not verbose) the devices that ran the same kinds of steps and
    ended well are one line with their counts summed ("200 devices b000 .. b199: t# 2000>2000,
    ..."); a device that failed, dropped values or lost deliveries keeps a line of its own."""
    if verbose or len(final) <= SUMMARY_AT:
        return ["%s: %s" % (dev, _device_line(dev, final[dev], verbose)) for dev in sorted(final)]
    from sensormesh.controller.names import natural_sorted
    groups, alone = {}, []
    for dev in natural_sorted(final):       # s2 before s10: a group is named by its first and last
        st = final[dev]
        steps = _steps(st)
        if "error" in st or not steps or st.get("lost_deliveries") or \
                any(s.get("dropped") or s.get("lost") for _, s in steps):
            alone.append(dev)
        else:
            groups.setdefault(tuple(_kind(sid) for sid, _ in steps), []).append(dev)
    lines = []
    for kinds, devs in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[1][0])):
        if len(devs) == 1:
            alone.append(devs[0])
            continue
        per = [dict(_steps(final[d])) for d in devs]
        sums = []
        for i, k in enumerate(kinds):
            sums.append("%s %s" % (k, _counts(_total([list(p.values())[i] for p in per]))))
        lines.append("%d devices %s .. %s: %s in all" % (len(devs), devs[0], devs[-1], ", ".join(sums)))
    failed = [d for d in natural_sorted(alone) if "error" in final[d]]
    shown = set(failed[:SHOWN - 1]) if len(failed) > SHOWN else set(failed)
    for dev in natural_sorted(alone):
        if "error" in final[dev] and dev not in shown:
            if dev == failed[SHOWN - 1]:    # a fleet that is down: the first few, then the others by name
                rest = failed[SHOWN - 1:]
                lines.append("and %d more devices with errors (-v gives each one's): %s"
                             % (len(rest), name_list(rest, shown=2 * SHOWN)))
            continue
        lines.append("%s: %s" % (dev, _device_line(dev, final[dev], False)))
    lines.append("(-v lists every device and step)")
    return lines


def credentials(keys_dir):
    """The controller's credentials from a key store (controller/keys.py)."""
    from sensormesh.controller import keys
    try:
        return keys.load_controller(keys_dir)
    except (keys.KeyStoreError, OSError, ValueError) as e:
        raise PipelineError("cannot use the key store %s: %s" % (keys_dir, e))


def check_network(model, specs):
    """Refuse `--network` specs that do not hold for model before anything starts: each spec's
    grammar, and its target (a domain or a link FROM->TO) against the file's `network:` section
    (without one, the file's devices form one domain, as the emulation lays them out). Raises
    PipelineError naming the spec and what is wrong; returns nothing."""
    from sensormesh.controller.topology import Topology
    from sensormesh.netlab.spec import NetworkSpecError, resolve
    topology = model.topology if model.topology is not None else \
        Topology.single_domain(list(model.devices))
    try:
        resolve(list(specs), topology)
    except NetworkSpecError as e:
        if model.topology is None:
            raise PipelineError("%s; the file has no `network:` section, so its devices form one domain, %r"
                                % (e, topology.domains and sorted(topology.domains)[0])) from None
        raise PipelineError(str(e)) from None


def deploy(model, strategy=None, local: dict[str, str] | None = None, timeout=5.0, creds=None,
           progress=None, listen=None, placement=None, **options):
    """Plan and deploy (all or nothing) along the controller's control routes (direct, forwarded
    through gateways, or registered); returns (placement, assignments, Supervisor). `local`:
    {device: address} of devices `up` started. The Supervisor's watch() re-routes around failed
    gateways and its stop() drains the pipes (controller/supervisor/). progress(text) hears how a
    large deployment goes ("deployed 120/201"). listen: "host:port" where devices that must dial
    out register with the controller (controller/registrations.py). placement: one made already
    by model.place(strategy, **options) (`up` places before it starts any device)."""
    from sensormesh.controller.supervisor import Supervisor
    sup = Supervisor(model, strategy if placement is None else placement, addresses=local or {}, timeout=timeout,
                     place_options=options, creds=creds, listen=listen)
    sup.progress = progress
    if local:       # devices `up` just started: their callbacks number their values from 0
        sup.deliveries.fresh = True
    sup.deploy()
    return sup.placement, sup.assignments, sup


# why `up` or a watch ended when the devices report the pipeline stopped or replaced by
# someone else (Supervisor.elsewhere)
ELSEWHERE = "stopped from elsewhere"


def watch(dep, on_deliver, on_event, duration=None, on_signal=None):
    """Show a deployment's deliveries until `duration` seconds pass, Ctrl-C/SIGTERM (which
    end the watch between two messages) or the devices report the pipeline stopped or replaced
    by someone else. Returns why it ended: "duration", "interrupted" or ELSEWHERE.
    on_signal(signum): told which signal came (SIGINT or SIGTERM)."""
    deadline = None if not duration else time.monotonic() + duration
    signals = _Interrupts(on_signal)
    signals.mode = "flag"
    try:
        dep.watch(on_deliver, lambda: signals.hit or bool(dep.elsewhere) or
                  (deadline is not None and time.monotonic() >= deadline),
                  on_event=on_event,
                  cut_short=lambda: "interrupted" if signals.hit else (
                      "duration" if deadline is not None and time.monotonic() >= deadline else None))
    finally:
        signals.restore()
    return "interrupted" if signals.hit else ELSEWHERE if dep.elsewhere else "duration"


class _Interrupts:
    """SIGINT/SIGTERM while `up` runs. While watching (mode "flag") a signal only sets `hit`,
    so the watch ends between two messages and nothing already received is dropped; otherwise
    (starting, stopping) it raises KeyboardInterrupt as usual. Only in the main thread."""

    def __init__(self, on_signal=None):
        import signal
        import threading
        self.mode = "raise"
        self.hit = 0
        self.on_signal = on_signal      # on_signal(signum): told which signal came, before anything else
        self.old = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.old[sig] = signal.signal(sig, self._on_signal)

    def _on_signal(self, signum, frame):
        self.hit += 1
        if self.on_signal is not None:
            self.on_signal(signum)
        if self.mode == "raise":
            raise KeyboardInterrupt

    def restore(self):
        import signal
        for sig, handler in self.old.items():
            signal.signal(sig, handler)
        self.old = {}


def _number(v):
    import math
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def check_run_options(strategy, duration, count, until, timeout, options):
    """Refuse, before anything starts, what up() cannot run with: one PipelineError (TypeError
    for an unknown keyword) naming the argument and what it takes."""
    import inspect
    from sensormesh.controller.placement import STRATEGIES, place
    if strategy is not None and strategy not in STRATEGIES:
        raise PipelineError("strategy: unknown strategy %r; use one of %s" % (strategy, ", ".join(STRATEGIES)))
    if duration is not None and not (_number(duration) and duration >= 0):
        raise PipelineError("duration: give a number of seconds of 0 or more (0 or None: until "
                            "stopped), not %r" % (duration,))
    if count is not None and not (isinstance(count, int) and not isinstance(count, bool) and count >= 0):
        raise PipelineError("count: give a whole number of callback values of 0 or more (0 or None: "
                            "no limit), not %r" % (count,))
    if until is not None and not callable(until):
        raise PipelineError("until: give a function that returns True when the run should end, not %r"
                            % (until,))
    if not (_number(timeout) and timeout > 0):
        raise PipelineError("timeout: give a number of seconds more than 0, not %r" % (timeout,))
    params = inspect.signature(place).parameters
    known = [n for n in params if n not in ("model", "strategy")]
    for name in options:
        if name not in known:
            raise TypeError("up() got an unknown argument %r%s (placement options: %s)"
                            % (name, _suggest_name(name, known), ", ".join(known)))
    from sensormesh.controller.placement import _check_options
    _check_options(*(options.get(n, params[n].default) for n in ("cpu_headroom", "time_limit", "mip_rel_gap")))


def _suggest_name(word, options):
    import difflib
    close = difflib.get_close_matches(word, options, n=1)
    return " (did you mean %r?)" % close[0] if close else ""


def up(model, strategy=None, duration=None, count=None, until=None, on_event=None, on_line=None,
       on_deliver=None, on_deployed=None, micropython=None, heap=None, timeout=5.0, keys_dir=None,
       insecure=False, network=None, network_mode="auto", observe=None, mpy=True, device_metrics=True,
       restarts=5, on_progress=None, on_signal=None, placement=None, romfs=None, **options):
    """Start the model's local devices, deploy, call the user's callback functions with the
    values that arrive, stop everything (upstream first, draining) and return the final stats.

    Ends after `duration` seconds, after `count` callback values, when until() is true, when every
    local device has exited past its restart limit (a device that exits is started again, with
    backoff, and given its steps back), on Ctrl-C (KeyboardInterrupt is not re-raised), or when
    the devices report the pipeline stopped or replaced from elsewhere (`sensormesh stop FILE` in
    another terminal: then it stops nothing itself but its local devices and returns {}). on_event(text) gets
    notes and failures; on_line(device, line) the local devices' output (default: discarded);
    on_deliver(device, step, values) the values of callback sinks without a function in
    model.callbacks; on_deployed(placement, assignments) is called once everything runs.

    device_metrics=False runs the local devices with their metrics off (no step times, latency
    stamps or loop busy time; benchmarks).

    Secure by default: the local devices get keys from the key store `keys_dir` (default
    .sensormesh/keys, made on first use) and refuse plaintext; the controller authenticates with
    its own key, also with the devices it reaches through gateways (end-to-end sessions the
    gateways only relay). insecure=True runs them without keys.

    network: `--network` specs ("boards:delay=20ms,loss=1%", "a->b:rate=1mbit"): the local
    devices then run in an emulated network laid out from the file's `network:` section, every
    connection over a shaped domain or link through a shaping relay (sensormesh/netlab/).
    network_mode: "auto" (namespaces as root, else loopback), "loopback" or "namespaces"; a
    mode other than "auto" without specs runs the layout without conditions (a baseline).
    Everything it creates is removed on return, and by the next run after a crash.

    observe: an observe.run.Observation to feed while watching (metrics, sink values, events).

    Local MicroPython devices run from the precompiled device package (mpy=False: from the .py
    sources) under their inventory `heap` (default 96K), from the package's ROMFS image or its files
    as their inventory `romfs` says (default: ROMFS); `heap` and `romfs` here override them for all.

    restarts: how many times a local device that exits is started again within a minute
    (0: never).

    on_progress(text): how starting and deploying many devices goes ("started 120/201"),
    about once a second (default: on_event).

    on_signal(signum): called (from the signal handler) when SIGINT or SIGTERM arrives, to tell
    one from the other; `up` handles both alike.

    placement: model.place(strategy, **options) made already (the CLI places before it makes a
    metrics file); otherwise `up` places before it starts anything."""
    import contextlib
    check_run_options(strategy, duration, count, until, timeout, options)
    if insecure and keys_dir is not None:
        raise PipelineError("insecure: runs the local devices without keys, so keys_dir %r would go unused; "
                            "give one of them, not both" % (keys_dir,))
    if count and not callback_names(model):
        raise PipelineError("count: pipeline %s has no callback sink, so no values to count; stop it "
                            "with a duration instead" % model.name)
    from sensormesh.controller.local import LocalCluster
    emulation = None
    if network or network_mode != "auto":     # a mode alone: the layout without conditions
        from sensormesh.netlab.emulation import Emulation, EmulationError
        try:
            emulation = Emulation(model, network or (), mode=network_mode, on_event=on_event)
        except EmulationError as e:
            raise PipelineError(str(e)) from None
    on_event = on_event or (lambda text: None)
    if observe is not None:
        shown = on_event

        def on_event(text):
            observe.event(text)
            shown(text)
    for w in model.warnings:          # what `plan` warns of (no sink, a step nobody reads)
        on_event("warning: %s" % w)
    # Placed before anything starts: a pipeline that cannot be placed is refused without
    # starting (and then stopping) a single local device or an emulated network.
    if placement is None:
        placement = model.place(strategy, **options)
    if getattr(placement, "fallback", None):     # no strategy chosen and optimal's problem too large
        on_event("warning: %s" % placement.fallback)
    got = {"n": 0}
    deliver = dispatcher(model, on_deliver or (lambda device, step, values: None))

    def counted(device, step, values):
        got["n"] += len(values)
        if observe is not None:
            observe.deliver(device, step, values)
        deliver(device, step, values)
    creds, config = None, {}
    if not insecure:
        from sensormesh.controller import keys
        keys_dir = keys_dir or keys.DEFAULT_DIR
        try:
            config = keys.provision_local([d.name for d in model.devices.values() if d.local], keys_dir)
        except (keys.KeyStoreError, OSError) as e:
            raise PipelineError("cannot provision keys in %s: %s" % (keys_dir, e))
        creds = credentials(keys_dir)
        on_event("secure: the local devices use keys from %s and refuse plaintext connections "
                 "(--insecure runs them without keys)" % keys_dir)
    if not device_metrics:
        config = {d.name: dict(config.get(d.name) or {}, metrics=False) for d in model.devices.values() if d.local}
    cluster = LocalCluster(model, on_line=on_line, micropython=micropython, heap=heap, config=config,
                           network=emulation, on_note=on_event, mpy=mpy, romfs=romfs)
    cluster.restart_limit = restarts
    dep = None
    listen = None       # the controller's listener for devices that register (registrations.py)
    signals = _Interrupts(on_signal)
    place = contextlib.ExitStack()      # the controller's place in an emulated network
    try:
        if emulation is not None:
            try:
                emulation.start()
            except EmulationError as e:
                raise PipelineError(str(e)) from None
            for line in emulation.describe():
                on_event(line)
        # devices the controller (or the gateway before them) cannot dial, by the file's one-way
        # links, dial out and register: with the controller's listener, or with their gateway
        from sensormesh.controller import registrations
        try:
            listen, regs = registrations.plan(model, emulation)
        except (OSError, ValueError) as e:
            raise PipelineError("cannot take the registrations of the devices that dial out: %s" % e) from None
        for name, (upstream, address) in regs.items():
            cluster.config[name] = dict(cluster.config.get(name) or {}, register=address)
        if regs:
            on_event("the controller cannot dial %s: %s dial%s out and register%s (%s)" % (
                name_list(regs), "it" if len(regs) == 1 else "they", "s" if len(regs) == 1 else "",
                "s" if len(regs) == 1 else "",
                "; ".join("%s with %s at %s" % (n, regs[n][0], regs[n][1]) for n in sorted(regs))))
        cluster.start(timeout=max(30.0, timeout), progress=on_progress or on_event)
        for note in cluster.notes:
            on_event(note)
        if emulation is not None:
            place.enter_context(emulation.controller_context())
        # in an emulated network the controller reaches the devices at the network's addresses
        placement, asg, dep = deploy(model, strategy, local=None if emulation else cluster.addresses,
                                     timeout=timeout, creds=creds, progress=on_progress or on_event,
                                     listen=listen, placement=placement, **options)
        if on_deployed is not None:
            on_deployed(placement, asg)
        if observe is not None:
            observe.attach(dep)
        deadline = None if not duration else time.monotonic() + duration
        why = {}

        restarted = []                  # local devices listening again, for the supervisor

        def tend():
            # A local device that exits is started again (bounded backoff and count, each
            # reported: local.py); once it listens the supervisor gives it its steps back. up
            # ends only when every local device is past its restart limit.
            restarted.extend(n for n in cluster.tend(on_event) if n not in restarted)
            if cluster.given_up - dep.retired:
                # past their restart limit: what may answer at their addresses later is not them
                dep.gone_for_good(cluster.given_up)
            if restarted and dep.restarted(restarted):
                del restarted[:]
            alive = cluster.alive()
            return sorted(cluster.given_up) if cluster.given_up and len(cluster.given_up) == len(alive) else []

        def done():
            if observe is not None:
                observe.tick()
            if signals.hit:
                why["why"] = "interrupted"
            elif dep.elsewhere:
                why["why"] = ELSEWHERE
            elif until is not None and until():
                why["why"] = "until"
            elif count and got["n"] >= count:
                why["why"] = "count"
            elif deadline is not None and time.monotonic() >= deadline:
                why["why"] = "duration"
            elif time.monotonic() >= looked["next"]:
                # one look costs a waitpid per local device: not at every turn of the loop
                # (hundreds a second with many devices sending)
                looked["next"] = time.monotonic() + min(TEND_MOST, TEND_PER_DEVICE * len(cluster.procs))
                gone = tend()
                if gone:
                    why["why"] = "local devices exited: " + name_list(gone)
            return bool(why)

        def ending():
            # asked while a re-route waits for devices, and by the watch right after done() (the
            # deadline may pass in between): what it says ends the run, so it is why it ended
            now_why = None
            if signals.hit:
                now_why = "interrupted"
            elif count and got["n"] >= count:
                now_why = "count"
            elif deadline is not None and time.monotonic() >= deadline:
                now_why = "duration"
            if now_why is not None:
                why.setdefault("why", now_why)
            return now_why
        looked = {"next": 0.0}
        signals.mode = "flag"      # from here a Ctrl-C ends the watch between two messages
        try:
            dep.watch(counted, done, on_event=on_event, cut_short=ending)
        finally:
            signals.mode = "raise"
            if observe is not None:
                observe.detach()       # no more metrics requests while the devices stop
        if why.get("why") == ELSEWHERE:
            # someone else stopped (or replaced) the pipeline: stopping it again would stop
            # what another controller deployed, and the stop there has the final counts
            on_event("the pipeline was %s (a `sensormesh stop` or `deploy` in another terminal, for "
                     "example): up ends without stopping it again" % ELSEWHERE)
            for name, m in dep.pending:
                deploying.dispatch(name, m, counted, on_event)
            dep.pending = []
            return {}
        on_event("stopping (%s)" % why.get("why", "?"))
        try:
            final = dep.stop()
        except KeyboardInterrupt:
            on_event("interrupted again: stopping the devices without their final counts")
            return {}
        for name, m in dep.pending:
            deploying.dispatch(name, m, counted, on_event)
        dep.pending = []
        return undelivered(final, dep.deliveries.left_out)
    finally:
        signals.restore()
        if dep is not None:
            dep.close()
        elif listen is not None:       # not handed to a Supervisor (it closes its own)
            listen.close()
        place.close()
        codes = cluster.stop()
        if emulation is not None:
            emulation.close()
        killed = getattr(cluster, "killed", [])     # named in the cluster's note already
        bad = {n: c for n, c in codes.items() if c not in (0, None, -15) and n not in killed}
        if bad:
            on_event("local device(s) ended with errors: %s" % ", ".join(
                "%s (exit %s)" % kv for kv in sorted(bad.items())))
