"""Recovery: failed devices that answer again are taken back into the pipeline.

While anything is failed, watch() probes each failed device every `recover_every` seconds
(watch.py), over the network without the other failed devices. A device that answers is
`back` (health.py): control behind it returns to the old routes, it starts afresh, and the
pipeline moves to the recovery plan (replace.recovery_plan): the first placement once nothing
is failed any more, else the pipeline placed again without what is still failed.
"""
from __future__ import annotations

from sensormesh.controller.deploy import device_order
from sensormesh.controller.errors import PipelineError
from sensormesh.controller.keys import add_pipe_peers
from sensormesh.controller.supervisor import replace


class Recover:
    """Recovery probes of a Supervisor (mixed into it)."""

    def restarted(self, devices):
        """Devices whose process was started again (`sensormesh up` restarts local devices): they
        run nothing, so each counts as failed (if the watch has not found that out yet) and is
        probed now, to be given its steps back. Call between two turns of watch()."""
        if self.health.busy:
            return False
        new = {d: "its process exited" for d in devices if d in self.model.devices and not self.health.down(d)}
        if new:
            self.health.fail(new)
        self._probe_failed()
        return True

    def gone_for_good(self, devices):
        """Devices whose process will not run again (`sensormesh up` gave up restarting them):
        they are never probed nor taken back any more. Whatever answers at one's address later
        is not that device (another run's device of the same name, on a machine where Unix
        socket paths follow the names), and must not be given this pipeline's steps."""
        self.retired.update(d for d in devices if d in self.model.devices)

    def look_again(self):
        """For a supervisor that only watches (`top`, `status --watch`: it deployed nothing): ask
        each failed device whether it answers again; the ones that do count as running again and
        are asked for their status and metrics as before. Nothing is stopped or deployed."""
        if self.health.busy or not self.failed or self.deployed:
            return []
        return self._probe_failed(take_back=False)

    def _probe_failed(self, take_back=True):
        """Ask each failed device (briefly, over the network without the other failed ones)
        whether it answers again; the ones that do are taken back into the pipeline (with
        take_back False: only controlled again). Returns them."""
        with self.health.handling():
            before = dict(self.paths)
            back = []
            probe = min(self.timeout, max(1.0, self.interval))
            inv = self.model.routing_inventory()
            for d in sorted(self.failed - self.retired):
                # only d gets a path for the probe: the others' paths (and replies) stay as they are
                route = self.topology.without(self.failed - {d}).control_routes().get(d)
                p = self._path(d, route, inv) if route is not None else None
                if p is None or self.by_key.get(p.key, d) != d:
                    continue
                self.paths[d] = p
                self.by_key[p.key] = d
                if self._hello([d], probe):
                    del self.paths[d]
                    self.by_key.pop(p.key, None)
                else:
                    self.health.answers(d)
                    back.append(d)
            if back:
                self._set_paths(self.topology.without(self.failed))
                try:
                    if take_back:
                        self._on_recovery(back, before)
                    else:
                        self._control_back(back, before)
                finally:
                    self.health.rejoined(back)
            return back

    def _control_back(self, back, before):
        """The devices in back answer again: control returns to the routes through them."""
        for d in back:
            self._event("%s answers again" % d)
        degraded = self.topology.without(self.failed)
        self.health.set_cut_off(degraded.unreachable() if self.failed else ())
        # control of the devices behind a device that is back moves to the old routes again
        moved = self._moved_control(before, skip=back)
        errors = self._hello(moved)
        self._subscribe([d for d in moved if d not in errors])
        for d, e in errors.items():
            self._suspect(d, e)

    def _on_recovery(self, back, before):
        self._control_back(back, before)
        # a device that is back restarted (it runs nothing) or was cut off (it runs an old epoch):
        # either way it starts afresh
        had = {d: self.assignments.get(d) for d in back if d in self.deployed}
        for d in back:
            if d in self.deployed:
                self._stop_to_redeploy(d)
                self.deployed.discard(d)
                self.assignments.pop(d, None)
        pl = self.place()
        self.impact = self.topology.affected_by(sorted(self.failed), self._pipes(pl),
                                                dict(pl.device_of)) if self.failed else None
        try:
            new_pl, how = self._recovery_plan(back)
        except PipelineError as e:
            self._event("%s is back but the pipeline cannot be placed again: %s; the rest keeps running"
                        % (", ".join(back), e))
            return
        if self._deploy_alone(back, had, new_pl, how):
            return
        self._redeploy(new_pl, how)

    def _deploy_alone(self, back, had, new_pl, how):
        """When the pipeline goes on exactly as it runs (every other device keeps its assignment
        at the running epoch) and the devices back get the assignments they had, only they are
        deployed again, at that epoch: their senders, which kept every value not acknowledged,
        dial them again and replay it (docs/reliability.md), and nothing else stops. Before, the
        whole pipeline piped to a sink board that came back was stopped and deployed again at a
        new epoch. Returns False when the plan changes anything else (then _redeploy does)."""
        if any(had.get(d) is None for d in back):
            return False
        new_asg = add_pipe_peers(new_pl.assignments(epoch=self.epoch, include_empty=False))
        running = dict(self.assignments, **had)
        if new_asg != running or any(d not in self.deployed for d in new_asg if d not in had):
            return False
        order = device_order(had)
        for phase, ask in (("deploy", lambda d: self._deploy_all([d], had)[d]),
                           ("start", lambda d: self._wait([self._send(d, {"start": {}}, ("started",))])[0])):
            for d in order:
                r = ask(d)
                if r.error is not None:
                    self._event("%s back: %s failed on %s: %s" % (", ".join(back), phase, d, r.error))
                    self._suspect(d, r.error)
                    return True
        for d in order:
            self.assignments[d] = had[d]
            self.deployed.add(d)
        self.placement = new_pl
        self.recoveries += 1
        self._overflow_while_down(order, running)
        self._event("deployed %s again at epoch %d, %s (%s; the rest kept running: %s senders "
                    "send again what %s had not acknowledged)" % (
                        ", ".join(order), self.epoch, "its own assignment" if len(order) == 1 else "their own assignments",
                        how, "its" if len(order) == 1 else "their", "it" if len(order) == 1 else "they"))
        return True

    def _recovery_plan(self, back):
        """(placement, how) for the network with the devices that came back."""
        failed = set(self.failed)
        current = self.place()
        return replace.recovery_plan(back, failed, self._original, current, self._degraded_link(failed),
                                     lambda link: self._place_with(link, current))

    def _overflow_while_down(self, back, running):
        """Before the devices in back take their pipes again: the senders' pipe_outs to them
        whose replay buffer overflowed (asked for their status). A device that restarted has no
        count of what it had taken, so the values that left a buffer unacknowledged are reported
        here, as the redeployment of the senders reports them (reroute.py)."""
        into = {}           # hop edge -> (receiving device back, sender, the sender's step id)
        for d in back:
            for st in running[d].get("steps", []):
                if st.get("type") == "pipe_in":
                    into[(st.get("params") or {}).get("edge")] = d
        senders = {}
        for s, asg in running.items():
            if s in back or self.health.down(s) or s not in self.deployed:
                continue
            for st in asg.get("steps", []):
                e = (st.get("params") or {}).get("edge")
                if st.get("type") == "pipe_out" and e in into:
                    senders.setdefault(s, []).append((e, into[e], st.get("id")))
        if not senders:
            return
        names = sorted(senders)
        for s, r in zip(names, self._wait([self._send(s, {"status": {}}, ("status",)) for s in names])):
            if r.error is not None:
                continue
            steps = ((r.reply.get("status") or {}).get("assignment") or {}).get("steps") or {}
            for e, d, sid in senders[s]:
                o = steps.get(sid)
                if not isinstance(o, dict) or not o.get("evicted"):
                    continue
                ev, dropped = o["evicted"], o.get("dropped", 0)
                self.losses.append({"edge": e, "src": s, "dst": d, "evicted": ev, "dropped": dropped})
                self._event("edge %s (%s -> %s): the replay buffer of %s overflowed while %s was down: %d "
                            "value%s left it unacknowledged so far, %d of them never sent, and those are lost "
                            "(more may follow until %s has caught up; %s restarted and counts none of them: "
                            "the `dropped` of %s's pipe does, in the final counts)"
                            % (e, s, d, s, d, ev, "" if ev == 1 else "s", dropped, d, d, s))
