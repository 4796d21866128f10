"""Re-placement after a failure, and moving the running pipeline to a new placement.

The decisions are pure functions in replace.py; this part of the Supervisor carries them out:
marks the failed devices (health.py), moves control to the new routes, then stops, deploys and
starts the devices whose assignment changes at a new epoch, reporting what each pipe lost.
"""
from __future__ import annotations

import time

from sensormesh.controller.names import name_list
from sensormesh.controller.deploy import device_order
from sensormesh.controller.errors import PipelineError
from sensormesh.controller.keys import add_pipe_peers
from sensormesh.controller.supervisor import replace
from sensormesh.controller.topology import Route


class Reroute:
    """Failure handling and redeployment of a Supervisor (mixed into it)."""

    def _pipes(self, placement):
        return [(p.edge, p.src, p.dst, p.route_obj if isinstance(p.route_obj, Route) else tuple(p.route))
                for p in placement.pipes]

    def _on_failure(self, new_failed):
        self.health.fail(new_failed, "did not answer")  # {device: why} from watching
        pl = self.place()
        for _ in range(len(self.model.devices) + 1):
            impact = self.topology.affected_by(sorted(self.failed), self._pipes(pl), dict(pl.device_of))
            degraded = self.topology.without(self.failed)
            old_paths = dict(self.paths)
            self._set_paths(degraded)
            self.health.set_cut_off(impact.unreachable)
            # control moves to the new routes: reopen the session, subscribe to deliveries again
            moved = self._moved_control(old_paths)
            errors = self._hello(moved)
            if errors:
                for d, e in errors.items():
                    self._event("%s failed: %s" % (d, e))
                self.health.fail(errors)
                continue
            self._subscribe(moved)
            break
        self.impact = impact
        for line in impact.lines():
            self._event(line)
        self._reroute(impact)

    def _degraded_link(self, failed):
        """link(a, b) of the network without the failed devices (None: no route)."""
        return replace.degraded_link(self.topology, failed)

    def _place_with(self, link, old):
        """The whole pipeline placed again with old's strategy and headroom over link."""
        from sensormesh.controller.placement import place
        opts = dict(self._place_options)
        opts.setdefault("cpu_headroom", old.cpu_headroom)
        down = {d: "failed: %s" % self.health.why[d] if d in self.health.why else "failed" for d in self.failed}
        return place(self.model, old.strategy, link=link, down=down, **opts)

    def _moved_control(self, before, skip=()):
        """Deployed devices (and their gateways) still reachable whose control path is no
        longer the one in before."""
        return [d for d in self.control_devices(sorted(self.deployed))
                if not self.health.down(d) and d not in skip and before.get(d) != self.paths.get(d)]

    def _subscribe(self, devices):
        """Callback deliveries of these devices come to the controller over their (new) paths."""
        for d in devices:
            if d in self.deployed:
                self._wait([self._send(d, {"subscribe": {"acks": True}}, ("subscribed",))])

    def _resubscribe(self):
        """Subscribe again, on a new session, to the callback values of every deployed device
        whose control session closed while it ran on (a link that dropped): the subscription went
        with the old session, and the device counts its values as taken once queued until a
        confirming controller subscribes again, so without this none reached the user any more.
        Not waited for: a request that fails is sent again at a later turn."""
        for d, req in list(self.unsubscribed.items()):
            if d not in self.deployed:
                del self.unsubscribed[d]
            elif self.health.down(d) or (req is not None and not req.done):
                continue
            elif req is not None and req.error is None:
                del self.unsubscribed[d]
            elif req is None or time.monotonic() >= req.t_done + self.interval_now():
                self.unsubscribed[d] = self._send(d, {"subscribe": {"acks": True}}, ("subscribed",))

    def _replan(self):
        """(new placement, how) on the network without the failed devices."""
        old = self.place()
        failed = set(self.failed)
        return replace.replan(old, failed, self._degraded_link(failed), lambda link: self._place_with(link, old))

    def _reroute(self, impact):
        try:
            new_pl, how = self._replan()
        except PipelineError as e:
            self._event("no re-routing: %s; the rest keeps running" % e)
            return
        self._redeploy(new_pl, how, impact)

    def _left_unfinished(self, epoch):
        """True when the run being watched ends now (Ctrl-C, its duration): a re-route in
        progress stops there, said once, rather than wait for every device it has yet to ask."""
        why = self._ending()
        if why:
            self._event("re-route to epoch %d left unfinished: the run is ending (%s)" % (epoch, why))
        return bool(why)

    def _redeploy(self, new_pl, how, impact=None):
        """Move the running pipeline to new_pl at a new epoch: the devices whose assignment
        changes, and every device piped to them (pipes check the epoch), are stopped (upstream
        first, losses reported) and deployed again (downstream first). impact: the failure
        that led here, if any."""
        epoch = self.epoch + 1
        new_asg = add_pipe_peers(new_pl.assignments(epoch=epoch, include_empty=False))
        alive = [d for d in self.paths if not self.health.down(d)]
        changed = replace.changed_devices(self.assignments, new_asg, alive, self.deployed)
        if impact is not None and impact.lost_steps and not how.startswith("placed again"):
            self._event("steps lost with %s stay down: %s" % (name_list(self.failed), how))
            for line in self._pinned_waiting(impact.lost_steps):
                self._event(line)
        if not changed:
            if impact is not None and (impact.areas or any(e.status == "cut" for e in impact.edges)):
                self._event("nothing can be re-routed; the cut-off area stays down until a device "
                            "named above is back; the rest keeps running")
            return
        group = replace.epoch_group(self.assignments, new_asg, alive, changed)
        old_run = {d: self.assignments[d] for d in group if d in self.assignments and d in self.deployed}
        final = {}
        for d in reversed(device_order(old_run)):          # upstream first: senders flush first
            if self._left_unfinished(epoch):
                return
            r = self._stop_to_redeploy(d)
            final[d] = r.reply["stopped"] if r.error is None else {"error": r.error}
        if self._left_unfinished(epoch):
            return
        self._report_losses(self.place(), final)
        new_run = {d: new_asg[d] for d in group if d in new_asg}
        order = device_order(new_run)
        # one device at a time; one short of memory for its assignment is asked again (_deploy_all)
        for phase, ask in (("deploy", lambda d: self._deploy_all([d], new_run)[d]),
                           ("start", lambda d: self._wait([self._send(d, {"start": {}}, ("started",))])[0])):
            for d in order:
                r = ask(d)
                if r.error is not None:
                    if self._left_unfinished(epoch):
                        return
                    self._event("re-route at epoch %d: %s failed on %s: %s" % (epoch, phase, d, r.error))
                    self._suspect(d, r.error)
                    return
        for d in group:
            if d in new_run:
                self.assignments[d] = new_run[d]
                self.deployed.add(d)
            else:
                self.assignments.pop(d, None)
                self.deployed.discard(d)
        self.epoch = epoch
        self.placement = new_pl
        if impact is None:
            self.recoveries += 1
        else:
            self.reroutes += 1
        moved = [e for e in impact.edges if e.status == "rerouted"] if impact is not None else []
        for e in moved:
            self._event("re-routed edge %s: %s" % (e.edge, e.new_route.explain()))
        self._event("redeployed %s at epoch %d (%s; downstream first)"
                    % (", ".join(order), epoch, how))

    def _pinned_waiting(self, lost_steps):
        """A step pinned (`on:`) to a failed device cannot move: it waits for its device, which
        gets it back when it answers again (recover.py); the rest of the pipeline keeps running."""
        out = []
        for sid in sorted(lost_steps):
            step = self.model.steps.get(sid)
            dev = lost_steps[sid]
            if step is not None and getattr(step, "on", None) == dev:
                out.append("step %s is pinned to %s: waiting for it" % (sid, dev))
        return out

    def _report_losses(self, placement, final):
        """Per pipe whose both ends were stopped: what the sender took in and the receiver never got."""
        for loss, text in replace.pipe_losses(placement, final, self.failed):
            if loss is not None:
                self.losses.append(loss)
            self._event(text)
