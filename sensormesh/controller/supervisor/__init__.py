"""The supervisor: deploys a placement along the controller's control routes and keeps it running.

    sup = Supervisor(model, "optimal", timeout=5.0)      # or Supervisor(model, placement)
    sup.deploy()                                          # all or nothing, downstream first
    sup.watch(on_deliver, until, on_event=print)          # deliveries, failures, re-routes
    per_device, areas = sup.status()
    final = sup.stop(); sup.close()

How it reaches a device follows `topology.control_routes()` (docs/topology.md):

  * direct / local: the controller dials the device and opens a control session (`hello`);
  * forwarded: the controller's session with the first gateway carries
    `{"forward": {"to": ADDR, "message": M}}` (nested once per further gateway); replies come
    back wrapped in `{"forwarded": {"from": ADDR, "message": ...}}` (sensormesh/device/forward.py).
    With keys (`creds`) the controller runs a session of its own with every device, end to end:
    the hello and the welcome travel as "message", then each level is a "token" of the
    controller's session with that hop's device, which the gateways relay without reading;
  * register: the device dials out. To a gateway: the gateway forwards to its name. To the
    controller: give `listen="host:port"` and configure the device with `register:` that address
    (with keys the controller then runs the client side of the handshake on that connection).

Everything runs on one `transport.Loop` in the calling thread; every wait is bounded by
`timeout` seconds. While watching, each device gets a `status` poll once per status interval,
the devices spread over it (detector.py). A device whose session closes, that a gateway reports
unreachable, or that misses two polls in a row is a suspect; a direct probe with a longer
deadline confirms it and only then is it counted as failed (a busy controller's own stalls are
not held against the devices). Then:

  1. `topology.affected_by(failed, pipes, steps)` describes the damage; its sentences go to
     `on_event` (and stay in `status()`);
  2. control of devices behind the failed gateway moves to their new control route (and their
     callback deliveries are subscribed again there);
  3. the placement is redone on the degraded network: steps stay where they are and broken
     pipes take another route (`re-routed`); when steps were lost with a failed device the
     whole pipeline is placed again on what is left. Devices whose assignment changed, and every
     device piped to them (pipes check the epoch), are stopped (their final pipe counts give
     the values lost), then deployed at a new epoch and started downstream first;
  4. what has no route left is reported as a cut-off area and left alone; the rest keeps
     running.

Where each part lives (one thing per module):

    __init__.py  Supervisor: set-up, deploy, status, stop
    control.py   links, control paths (direct, forwarded, registered, end-to-end keyed), requests
    health.py    the health table: ok, suspect, failed, cut-off, back, and its transitions
    watch.py     the watch loop, its periodic tasks, status polls and the probe of suspects
    detector.py  pure: poll slots over the interval, missed polls, stalls, the adaptive interval
    replace.py   pure re-placement decisions: epoch group, re-plan, recovery plan, pipe losses
    reroute.py   carries a failure out: control moves, re-placement, redeployment at a new epoch
    recover.py   probes of failed devices and taking them back
"""
from __future__ import annotations

import time

from sensormesh.device import codec
from sensormesh.controller.deploy import start_waves
from sensormesh.controller.errors import PipelineError
from sensormesh.controller.keys import add_pipe_peers
from sensormesh.controller.supervisor.control import (HANDSHAKE_CODES, NO_LISTENER, NOT_DIALED, PLAINTEXT,
                                                      REGISTERED, Control, ControlPath, Request, SupervisorError, session_failed)
from sensormesh.controller.supervisor.health import Health
from sensormesh.controller.supervisor.recover import Recover
from sensormesh.controller.supervisor.reroute import Reroute
from sensormesh.controller.supervisor.watch import Periodic, Watch
from sensormesh.controller.topology import Topology

__all__ = ["Supervisor", "SupervisorError", "ControlPath", "Request", "Periodic", "HANDSHAKE_CODES",
           "REGISTERED", "session_failed", "DEFAULT_TIMEOUT", "PING_INTERVAL"]

DEFAULT_TIMEOUT = 5.0
PING_INTERVAL = 1.0
# Devices asked at once while deploying and starting: enough to keep a loaded machine busy
# (each answer costs the device a build), few enough that a slow device waits in one slot.
FAN_OUT = 32
# Deployments of this many devices or more report their progress (progress(text), once a second).
PROGRESS_FROM = 20
# A device that refuses its assignment for want of memory ("out-of-memory": a board's heap can be
# short for a moment, while its pipes' handshakes run) is asked again this many times, alone, the
# n-th time after n * MEMORY_PAUSE seconds; then the deployment fails naming it.
MEMORY_RETRIES = 2
MEMORY_PAUSE = 0.5


def brief_names(names, most=6):
    """"a, b, c" for a few names; runs as "board-1..board-40"; "200 devices: a, b, ... and 195
    more" for many (names.name_list)."""
    from sensormesh.controller.names import name_list
    return name_list(names, shown=most)


class Supervisor(Control, Watch, Reroute, Recover):
    """Deploys a model's placement along the control routes, watches it, re-routes on failure.

    model: a controller Model (its `topology`, or one domain when it has no `network:`).
    placement: a Placement, or a strategy name ("central", "edge", "optimal") to place with, or
        None: the default strategy (placement.place: optimal, or edge when optimal's problem is
        too large).
    addresses: {device: "host:port" | "unix:PATH"} the controller dials for that device's own
        control session (overrides the inventory, e.g. ports chosen by `sensormesh up`).
    timeout: seconds any one wait may take. interval: seconds between two status polls of a
    device while watching, at the start: the detector (detector.py) spreads the polls over it and
    lengthens it for many devices or a busy controller, up to max_interval (default 5 times
    interval), to keep the controller under watch_budget of one core (default 0.05).
    listen: "host:port" where devices that must dial out register with the controller (or a
    socket bound and listening there already: controller/registrations.py).
    epoch: the first deployment's epoch (default: seconds since 1970, so a redeploy is newer).
    creds: the controller's credentials (controller/keys.load_controller): every control link
        then runs the handshake and carries Fernet tokens (devices with keys refuse anything else);
        a device behind gateways gets a session of its own with the controller, end to end, the
        gateways relaying its tokens; a device that registers with the controller is the server
        of the handshake on the connection it opened."""

    def __init__(self, model, placement=None, addresses=None, timeout=DEFAULT_TIMEOUT,
                 interval=PING_INTERVAL, listen=None, epoch=None, place_options=None, creds=None,
                 watch_budget=None, max_interval=None):
        self.model = model
        self.creds = creds       # session.Credentials of the controller: authenticated, encrypted links
        self.topology = model.topology if model.topology is not None else \
            Topology.single_domain(list(model.devices))
        self._place_options = dict(place_options or {})
        if placement is None or isinstance(placement, str):
            self.strategy = placement
            self.placement = None
        else:
            self.strategy = placement.strategy
            self.placement = placement
        self.overrides = dict(addresses or {})
        self.timeout = float(timeout)
        self.interval = float(interval)
        # the failure detector (detector.py): interval adapted within [interval, max_interval]
        # to the number of devices and the controller's CPU share (watch_budget of one core)
        self._detector_options = {k: v for k, v in (("budget", watch_budget), ("max_interval", max_interval))
                                  if v is not None}
        self.epoch = int(time.time()) if epoch is None else int(epoch)
        self.assignments = {}    # device -> assignment it runs (as deployed)
        self.deployed = set()    # devices running our assignment
        self.health = Health()   # ok, suspect, failed, cut-off, back per device (health.py)
        self.impact = None       # topology.Impact of the failures so far
        self.events = []         # every event text, in order
        self.losses = []         # one dict per pipe that lost values in a re-route
        self.reroutes = 0
        self.recoveries = 0      # redeployments after failed devices answered again
        self.recover_every = 5 * self.interval   # seconds between probes of the failed devices
        self._original = None    # the placement of the first deployment (restored once all are back)
        self.last_status = {}    # device -> last status reply
        self.info = {}           # device -> its answer to hello (name, implementation, sensors)
        self.fan_out = FAN_OUT   # devices asked at once while deploying, starting, stopping
        self.progress = None     # fn(text): "deployed 120/201" while a large deployment goes on
        # Told when a re-route or a recovery stops a running device to deploy it again (its
        # counts start from zero at the new epoch): on_stopping fns get the device just before
        # its stop is sent, on_stopped fns get (device, the "stopped" reply's body) once it has
        # stopped. The metrics of a run (observe/run.py) take the old epoch's last counts there.
        self.on_stopping = []
        self.on_stopped = []
        self.retired = set()     # devices gone for good: never probed nor taken back (recover.py)
        self._init_control(listen)
        self._init_watch()
        self._set_paths(self.topology)

    @property
    def failed(self):
        """Devices found down (health.py)."""
        return self.health.failed

    @property
    def cut_off(self):
        """Devices the controller cannot reach any more (behind a failed device)."""
        return self.health.cut_off

    def _event(self, text):
        self.events.append(text)
        if self._on_event is not None:
            self._user_call(self._on_event, text)

    def _user_call(self, fn, *args):
        """fn(*args), a callback of the Supervisor's user: what it raises goes to the user as it
        is, also from inside the control loop (Control._loop_error lets it through)."""
        try:
            return fn(*args)
        except Exception as e:
            self._user_error = e
            raise

    # -- deployment ------------------------------------------------------------------------------

    def place(self):
        """The placement in use (placed now if the Supervisor was given a strategy)."""
        if self.placement is None:
            self.placement = self.model.place(self.strategy, **self._place_options)
        return self.placement

    def wait_registrations(self, devices=None, timeout=None):
        """Wait (at most timeout seconds, default the Supervisor's) until those of `devices`
        (default: all) that dial the controller to register have registered; a fresh Supervisor
        (`sensormesh status|stop --listen`) asks them only then."""
        devices = list(self.model.devices) if devices is None else devices
        waiting = [d for d in devices if d in self.paths and self.paths[d].first.startswith(REGISTERED)]
        if waiting:
            t = self.timeout if timeout is None else timeout
            self.loop.run_until(lambda: all(self._link(self.paths[d].first) is not None for d in waiting),
                                int(t * 1000))

    def _hello(self, devices, timeout=None):
        """Open control sessions (parents first); returns {device: error text} for failures."""
        errors = {}
        depth = lambda d: len(self.paths[d].targets) if d in self.paths else 0  # noqa: E731
        for d in devices:
            if d not in self.paths:
                errors[d] = "the controller has no control route to %s: %s" % (
                    d, self._why_unreachable(d))
        self.wait_registrations(devices, timeout)
        for level in sorted({depth(d) for d in devices if d in self.paths}):
            batch = []
            for d in devices:
                if d in self.paths and depth(d) == level:
                    p = self.paths[d]
                    down = [g for g in (p.route.relays if p.route is not None else ()) if g in errors]
                    if down:
                        errors[d] = "device %s (%s) is not reachable: its gateway %s is not" % (
                            d, p.describe(), down[0])
                    else:
                        batch.append(d)
            # a device the controller dials directly may answer in frames as large as the
            # controller takes (a status of hundreds of steps); through a gateway, the gateway's
            # limit is unknown
            # fanned out like the deployment: at most fan_out first contacts (with keys, each a
            # handshake, costly on a board) at once, not all of a large fleet in the same instant
            reqs = self._fan_out(batch, lambda d: self._send(d, {"hello": {"max-frame": codec.DEFAULT_MAX_FRAME}
                                                                 if not self.paths[d].targets else {}},
                                                             ("info",), timeout), None)
            for d, r in reqs.items():
                if r.error is not None:
                    p = self.paths[d]
                    where = "at %s" % p.first if not p.targets else "(%s)" % p.describe()
                    if r.code == PLAINTEXT:     # it answered: reachable, in another language
                        errors[d] = "device %s %s: %s" % (d, where, r.error[len(d) + 2:]
                                                         if r.error.startswith(d + ": ") else r.error)
                    else:
                        errors[d] = "device %s %s is not reachable: %s" % (d, where, r.error)
                else:
                    self.info[d] = r.reply["info"]
        return errors

    def _why_unreachable(self, d):
        if d in getattr(self, "path_errors", {}):
            return self.path_errors[d]
        if self.topology.control_route(d) is None:
            return "the network: section gives it no control route"
        if not self.failed:
            return "unknown"
        from sensormesh.controller.names import name_list
        return "it is behind %s, which failed" % name_list(self.failed)

    def control_devices(self, devices):
        """devices plus every gateway their control goes through, parents first."""
        out = []
        for d in devices:
            p = self.paths.get(d)
            for r in (p.route.relays if p is not None and p.route is not None else ()):
                if r not in out:
                    out.append(r)
        for d in devices:
            if d not in out:
                out.append(d)
        return out

    def deploy(self, epoch=None):
        """Place (if given a strategy), deploy every assignment and start them downstream first.
        All or nothing: if a device is unreachable or refuses, the ones already deployed are
        stopped again and SupervisorError (a DeployError) names the device and its route."""
        pl = self.place()
        if epoch is not None:
            self.epoch = int(epoch)
        asg = add_pipe_peers(pl.assignments(epoch=self.epoch, include_empty=False))
        if not asg:
            raise SupervisorError("nothing to deploy: the placement gives no device a step")
        errors = self._hello(self.control_devices(list(asg)))
        if errors:
            self.close()
            raise SupervisorError(unreachable_text(errors))
        if epoch is None:
            # newer than whatever the devices run, even for two deployments in one second:
            # pipes refuse peers of another epoch, so old connections never join the new one
            running = []
            reqs = self._fan_out(list(asg), lambda d: self._send(d, {"status": {}}, ("status",)), None)
            for r in reqs.values():
                if r.error is not None:
                    continue
                e = ((r.reply.get("status") or {}).get("assignment") or {}).get("epoch")
                if isinstance(e, int):
                    running.append(e)
            if running and max(running) >= self.epoch:
                self.epoch = max(running) + 1
                asg = add_pipe_peers(pl.assignments(epoch=self.epoch, include_empty=False))
        waves = start_waves(asg)
        order = [d for w in waves for d in w]
        deployed = []
        try:
            reqs = self._deploy_all(order, asg)
            deployed = [d for d in order if d in reqs and reqs[d].error is None]
            self._raise_first(order, reqs, "refused its assignment")
            started = 0
            for wave in waves:        # downstream first: a wave starts once its receivers run
                reqs = self._fan_out(wave, lambda d: self._send(d, {"start": {}}, ("started",)), "running",
                                     done_before=started, total=len(order))
                started += len(wave)
                self._raise_first(wave, reqs, "did not start")
        except SupervisorError:
            self._stop_waves([[d for d in w if d in deployed] for w in waves])
            self.close()
            raise
        self.assignments = dict(asg)
        self.deployed = set(asg)
        if self._original is None:
            self._original = pl
        return order

    def _deploy_all(self, devices, asg):
        """Send each device its assignment (fanned out); those that refuse it for want of
        memory are asked again one at a time (MEMORY_RETRIES). Returns {device: Request}."""
        def send(d):
            return self._send_deploy(d, asg[d])
        reqs = self._fan_out(devices, send, "deployed", retry=("out-of-memory",))
        for attempt in range(1, MEMORY_RETRIES + 1):
            short = [d for d in devices if d in reqs and reqs[d].code == "out-of-memory"]
            if not short or any(r.error is not None and r.code != "out-of-memory" for r in reqs.values()):
                break
            self._event("%s had no memory free for %s assignment; asking again, one at a time (%d of %d)" % (
                brief_names(short), "its" if len(short) == 1 else "their", attempt, MEMORY_RETRIES))
            self.loop.run_until(lambda: False, int(1000 * MEMORY_PAUSE * attempt))
            reqs.update(self._fan_out(short, send, "deployed", retry=("out-of-memory",), limit=1,
                                      done_before=len(devices) - len(short), total=len(devices)))
        return reqs

    def _fan_out(self, devices, send, what, done_before=0, total=None, retry=(), limit=None):
        """send(d) -> Request for each device, at most `fan_out` (or limit) waiting for their
        answers at once (a slow device holds up only its own slot); after the first error nothing
        more is sent, unless its code is in `retry` (what=None: ask every device whatever they
        answer; no progress). Returns {device: Request} of those sent; every one of them is done."""
        limit = self.fan_out if limit is None else limit
        reqs = {}
        todo = list(devices)
        waiting = []
        total = len(devices) if total is None else total
        n_done = done_before
        shown = time.monotonic()
        failed = False
        while todo or waiting:
            while todo and not failed and len(waiting) < limit:
                d = todo.pop(0)
                reqs[d] = r = send(d)
                waiting.append(r)
            if not waiting:
                break
            if not all(r.done for r in waiting):
                self.loop.run_once(50)
                self._expire()
            now = time.monotonic()
            for r in waiting:
                if not r.done and now > r.deadline:
                    self._drop_request(r, "no answer from %s within %gs" % (r.device, self.timeout))
            finished = [r for r in waiting if r.done]
            waiting = [r for r in waiting if not r.done]
            n_done += len(finished)
            failed = failed or (what is not None and any(r.error is not None and r.code not in retry
                                                         for r in finished))
            if what is not None and self.progress is not None and total >= PROGRESS_FROM and (now - shown >= 1.0 or not (todo or waiting)):
                shown = now
                self.progress("%s %d/%d" % (what, n_done, total))
        return reqs

    def _raise_first(self, devices, reqs, verb):
        """SupervisorError naming the first device (in `devices` order) whose request failed."""
        bad = [d for d in devices if d in reqs and reqs[d].error is not None]
        if not bad:
            return
        d = bad[0]
        more = "" if len(bad) == 1 else " (%d more failed: %s)" % (len(bad) - 1, brief_names(bad[1:], 5))
        raise SupervisorError("device %s (%s) %s: %s%s%s" % (d, self.paths[d].describe(), verb, reqs[d].error,
                                                             self._written_at(reqs[d].error), more))

    def _written_at(self, error):
        """' (step w: p.yaml:6:3)' for the steps a device's error names, by id or by the shipped
        module holding their fn, so a refused assignment points at the user's own line."""
        import re
        steps = self.model.steps
        named = [sid for sid in re.findall(r"step '([^']+)'", error) if sid in steps]
        for module in re.findall(r"shipped module '([^']+)'", error):
            named += [sid for sid, st in steps.items()
                      if str((st.params or {}).get("fn", "")).partition(":")[0] == module]
        where = []
        for sid in dict.fromkeys(named):
            if steps[sid].origin:
                where.append("step %s: %s" % (sid, steps[sid].origin))
        return " (%s)" % "; ".join(where) if where else ""

    def _stop_waves(self, waves):
        """Stop the devices of waves, upstream first (the last wave first), each wave at once."""
        for wave in reversed(waves):
            if wave:
                self._fan_out(wave, lambda d: self._send(d, {"stop": {}}, ("stopped",)), "stopped")

    # -- status and stop -------------------------------------------------------------------------

    def status(self):
        """(per-device status dicts, affected-area sentences).

        Devices are asked gateways first; one that does not answer while its gateways do is
        counted as failed, and the devices behind it are asked again over their new control
        routes. So a fresh Supervisor (e.g. `sensormesh status FILE`) finds the same areas as a
        watching one. A device the controller cannot reach gets {"error": "..."} saying why."""
        devices = list(self.model.devices)
        out = {}
        refused = {}                  # device -> why it refused the controller's secure session
        garbled = {}                  # device -> the protocol error its answer was
        unregistered = {}             # device -> why: it must register and nothing listens here
        for _ in range(len(devices) + 1):
            todo = [d for d in self.control_devices(devices)
                    if d in self.paths and d not in out and d not in self.failed]
            new_failed = set()
            silent = {}               # device -> what its status request got (why it counts as failed)
            depth = lambda d: len(self.paths[d].targets)  # noqa: E731
            for level in sorted({depth(d) for d in todo}):
                reqs = {}
                for d in todo:
                    behind = set(self.paths[d].route.relays) if self.paths[d].route is not None else set()
                    if depth(d) == level and not behind & (new_failed | self.failed):
                        reqs[d] = self._send(d, {"status": {}}, ("status",))
                self._wait(list(reqs.values()))
                for d, r in reqs.items():
                    if r.error is None:
                        got = r.reply["status"]
                        if type(got) is not dict:
                            # it answers, but not as a sensormesh device does
                            got = {"error": "%s answered its status request with a status that is not "
                                            "an object: %s" % (d, repr(got)[:120])}
                        out[d] = got
                    elif r.code == "busy":
                        # it answered, so it is up: it had no room for this request now (a board
                        # short of heap for a handshake, a device at its connection limit)
                        out[d] = {"error": "%s is busy: %s"
                                  % (d, r.error[len(d) + 2:] if r.error.startswith(d + ": ") else r.error),
                                  "busy": True}
                    elif r.code == PLAINTEXT:
                        # it answered (in plaintext), so it is up: it runs without keys and the
                        # controller, with keys, does not talk to it; nothing is lost with it
                        out[d] = {"error": r.error[len(d) + 2:] if r.error.startswith(d + ": ") else r.error,
                                  "plaintext": True}
                    elif r.answered and r.code not in HANDSHAKE_CODES:
                        # it answered with an error object instead of its status: it is up (not
                        # counted as failed, as a suspect that answers a probe is not), only its
                        # status is not known; say what it answered, with its code
                        said = r.error[len(d) + 2:] if r.error.startswith(d + ": ") else r.error
                        out[d] = {"error": "%s is up, but refused its status request: %s (code %s)"
                                  % (d, said, r.code if r.code is not None else "none given"),
                                  "refused": {"code": r.code, "message": said}}
                    else:
                        new_failed.add(d)
                        silent[d] = r.error[len(d) + 2:] if r.error.startswith(d + ": ") else r.error
                        out.pop(d, None)
                        if "secure session failed" in r.error or r.error.endswith(NOT_DIALED):
                            refused[d] = r.error
                        elif "protocol error: " in r.error:
                            garbled[d] = r.error[r.error.index("protocol error: "):]
                        elif r.error.endswith("(%s)" % NO_LISTENER):
                            unregistered[d] = r.error
            if not new_failed:
                break
            self.health.fail({d: "no answer to a status request (%s)" % silent[d] for d in new_failed})
            self._set_paths(self.topology.without(self.failed))
        self.health.set_cut_off(self.topology.without(self.failed).unreachable() if self.failed else ())
        lines = []
        if self.failed:
            try:
                pl = self.place()
                pipes, steps = self._pipes(pl), dict(pl.device_of)
            except PipelineError:
                pipes, steps = [], {}
            self.impact = self.topology.affected_by(sorted(self.failed), pipes, steps)
            self.health.set_cut_off(self.impact.unreachable)
            lines = self.impact.lines()
        for d in devices:
            if d in self.failed:
                p = self.paths.get(d) or self.lost_paths.get(d)
                how = p.describe() if p is not None else "its control route"
                if d in refused and refused[d].endswith(NOT_DIALED):
                    out[d] = {"error": refused[d]}
                elif d in refused:
                    why = refused[d]
                    if self.creds is None and "plaintext-refused" in why:
                        # a keyed device asked in plaintext: say what to give
                        why += "; %s runs with keys: give the controller's key store (--keys DIR)" % d
                    out[d] = {"error": "%s does not accept the controller over %s: %s" % (d, how, why)}
                elif d in garbled:
                    # something answers at its address, but not as a sensormesh device does
                    out[d] = {"error": "%s does not answer as a sensormesh device over %s: %s"
                              % (d, how, garbled[d])}
                elif d in unregistered:
                    out[d] = {"error": unregistered[d]}     # not known to be down: it could not be asked
                else:
                    out[d] = {"error": "%s is down: it does not answer over %s" % (d, how)}
            elif d not in out:
                out[d] = {"error": "unreachable: " + (self._area_of(d) if d in self.cut_off
                                                       else self._why_unreachable(d))}
        return out, lines

    def _stop_to_redeploy(self, d):
        """Stop d's running assignment for a redeployment, keeping its pipes' numbering and
        replay buffers for the next one; returns the done Request. on_stopping and on_stopped
        hear of it (a broken listener does not stop the redeployment)."""
        for fn in list(self.on_stopping):
            self._tell(fn, d)
        # its status may say "stopped" or show another epoch until it runs ours again: not
        # someone else's doing (watch.py, _check_running)
        self.stopped_here.add(d)
        # keep: the pipes of the new deployment carry the old numbering and replay buffers on
        r = self._wait([self._send(d, {"stop": {"keep": True}}, ("stopped",))])[0]
        if r.error is None:
            for fn in list(self.on_stopped):
                self._tell(fn, d, r.reply["stopped"])
        return r

    def _tell(self, fn, d, *args):
        try:
            fn(d, *args)
        except Exception as e:     # a listener's bug must not leave a redeployment half done
            self._event("while stopping %s to deploy it again: %s failed: %s: %s"
                        % (d, getattr(fn, "__qualname__", fn), type(e).__name__, e))

    def _area_of(self, d):
        if self.impact is not None:
            for a in self.impact.areas:
                if d in a.devices:
                    return a.sentence
        return "the controller has no control route to %s" % d

    def stop(self, devices=None, drain_timeout=3.0):
        """Stop the pipeline without losing what is in flight; returns {device: final stats or
        {"error": ...}}.

        devices: the ones to stop (default: the deployed ones; a Supervisor that did not deploy,
        e.g. `sensormesh stop FILE`, stops every device of the model it reaches). Devices stop
        upstream first (each flushes its last frames), in waves: a wave's devices at once, once
        every device sending to them has stopped; before a device stops, the controller waits
        (at most drain_timeout seconds) until each of its pipe_ins has received what the already
        stopped sender sent."""
        if devices is None:
            devices = sorted(self.deployed) if self.deployed else list(self.model.devices)
        known = dict(self.assignments)
        if not known:
            try:
                known = add_pipe_peers(self.place().assignments(epoch=self.epoch, include_empty=False))
            except PipelineError:
                known = {}
        sub = {d: a for d, a in known.items() if d in devices}
        waves = list(reversed(start_waves(sub))) if sub else []       # upstream first
        planned = {d for w in waves for d in w}
        rest = sorted(d for d in devices if d not in planned)
        if rest:
            waves.append(rest)
        outs, ins = {}, {}
        for dev, a in known.items():
            for st in a.get("steps", []):
                edge = (st.get("params") or {}).get("edge")
                if st.get("type") == "pipe_out" and edge is not None:
                    outs[edge] = (dev, st["id"])
                elif st.get("type") == "pipe_in" and edge is not None:
                    ins[edge] = (dev, st["id"])
        sent = {}
        final = {}
        for wave in waves:          # each wave at once: its senders stopped in earlier waves
            todo = []
            for d in wave:
                if d in self.failed or d in self.cut_off:
                    final[d] = {"error": "not stopped: %s" % (
                        "it failed" if d in self.failed else self._area_of(d))}
                else:
                    todo.append(d)
            self._drain(todo, ins, sent, drain_timeout)
            reqs = self._fan_out(todo, lambda d: self._send(d, {"stop": {}}, ("stopped",)), None)
            for d in todo:
                r = reqs[d]
                if r.error is not None:
                    final[d] = {"error": r.error}
                    continue
                final[d] = r.reply["stopped"]
                self.deployed.discard(d)
                for e, (dev, pout) in outs.items():
                    if dev == d:
                        sent[e] = ((final[d].get("steps") or {}).get(pout) or {}).get("out", 0)
        return final

    def _drain(self, devices, ins, sent, drain_timeout):
        """Wait (at most drain_timeout s) until each of devices' pipe_ins has received what its
        already stopped sender sent (`sent`: edge -> values), asking their status at once."""
        waits = {}
        for d in devices:
            w = [(e, pin) for e, (dev, pin) in ins.items() if dev == d and e in sent]
            if w:
                waits[d] = w
        deadline = time.monotonic() + drain_timeout
        while waits and time.monotonic() < deadline:
            reqs = self._fan_out(list(waits), lambda d: self._send(d, {"status": {}}, ("status",)), None)
            for d, r in reqs.items():
                if r.error is not None:
                    waits.pop(d)
                    continue
                got = r.reply["status"]
                steps = ((got.get("assignment") or {}).get("steps") or {}) if type(got) is dict else {}
                left = [(e, p) for e, p in waits[d] if (steps.get(p) or {}).get("in", 0) < sent[e]]
                if left:
                    waits[d] = left
                else:
                    waits.pop(d)
            if waits:            # let the last frames arrive (and deliveries come in)
                self.loop.run_once(20)

    def close(self):
        self._close_links()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def unreachable_text(errors):
    """{device: why it cannot be reached} as one message: each reason for a few devices; for
    more, how many, their names in short ("board-1..board-40") and the first device's reason."""
    from sensormesh.controller.names import name_list, natural_sorted
    order = natural_sorted(errors)
    if len(order) <= 3:
        return "; ".join(errors[d] for d in order)
    return "%d devices cannot be reached: %s; the first: %s" % (
        len(order), name_list(order), errors[order[0]])
