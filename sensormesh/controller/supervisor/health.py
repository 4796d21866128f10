"""Health of the devices the supervisor controls: one table, every change an event in it.

Everything that decides whether a device counts as running, suspected, failed, cut off or back
lives in this file; watching (watch.py), re-placement (reroute.py), recovery (recover.py) and
`Supervisor.status()` report what they saw as events and read the states back. The table does
not talk to devices and does not know why a check was made.

    ok        runs as placed, or was never checked
    suspect   a ping failed, its control session closed, or a gateway called it unreachable;
              it is checked once more before anything moves
    failed    did not answer that second check (or `status()` found it silent)
    cut-off   the controller has no control route to it any more (behind a failed device)
    back      a failed device answered a recovery probe; ok once it is taken back

An event with no entry for the device's state is a bug in the caller: HealthError names both.
Entries that map a state to itself are reports that change nothing (a failed device that is
suspected again stays failed).
"""

OK = "ok"
SUSPECT = "suspect"
FAILED = "failed"
CUT_OFF = "cut-off"
BACK = "back"
STATES = (OK, SUSPECT, FAILED, CUT_OFF, BACK)

# event -> {state before: state after}
TRANSITIONS = {
    # a ping failed, the control session closed, a gateway says it cannot reach the device
    "suspect": {OK: SUSPECT, SUSPECT: SUSPECT, BACK: SUSPECT, FAILED: FAILED, CUT_OFF: CUT_OFF},
    # checked again: it answers
    "answered": {SUSPECT: OK, OK: OK},
    # no longer a suspect without a check: what it was suspected for is handled elsewhere
    # (it sits behind a gateway that failed)
    "dismiss": {SUSPECT: OK, OK: OK, FAILED: FAILED, CUT_OFF: CUT_OFF, BACK: BACK},
    # checked again and silent, or silent while its gateways answer (status)
    "fail": {OK: FAILED, SUSPECT: FAILED, BACK: FAILED, CUT_OFF: FAILED, FAILED: FAILED},
    # no control route left (computed from the network without the failed devices)
    "cut": {OK: CUT_OFF, SUSPECT: CUT_OFF, BACK: CUT_OFF, CUT_OFF: CUT_OFF, FAILED: FAILED},
    # a control route again
    "reached": {CUT_OFF: OK, OK: OK, SUSPECT: SUSPECT, BACK: BACK, FAILED: FAILED},
    # a failed device answered a recovery probe
    "answers": {FAILED: BACK},
    # taken back into the pipeline (or left out of it, when nothing fits): watched again
    "rejoined": {BACK: OK},
}


class HealthError(RuntimeError):
    """An event that the table has no transition for in the device's state (a caller's bug)."""


class Health:
    """The state of every device the supervisor has heard of (unknown devices are ok), why it
    got there, and the suspicions waiting for their second check."""

    def __init__(self):
        self.state = {}          # device -> one of STATES (absent: ok)
        self.why = {}            # device -> the report that led to its state
        self._queue = {}         # device -> why: suspicions not yet checked again
        self.busy = False        # a change is being handled (watching does not start another)

    # -- reading -----------------------------------------------------------------------------

    def of(self, device):
        return self.state.get(device, OK)

    def in_state(self, *states):
        return {d for d, s in self.state.items() if s in states}

    @property
    def failed(self):
        return frozenset(self.in_state(FAILED))

    @property
    def cut_off(self):
        return frozenset(self.in_state(CUT_OFF))

    def down(self, device):
        """Failed or cut off: the controller does not send to it (recovery probes aside)."""
        return self.of(device) in (FAILED, CUT_OFF)

    # -- events --------------------------------------------------------------------------------

    def event(self, name, device, why=None):
        """Apply one event; returns the new state."""
        table = TRANSITIONS.get(name)
        if table is None:
            raise HealthError("no health event %r (known: %s)" % (name, ", ".join(sorted(TRANSITIONS))))
        before = self.of(device)
        if before not in table:
            raise HealthError("can't handle health event %r for %s in state %r" % (name, device, before))
        after = table[before]
        if after == OK:
            self.state.pop(device, None)
            self.why.pop(device, None)
        else:
            self.state[device] = after
            if after != before and why is not None:
                self.why[device] = why
        return after

    def suspect(self, device, why):
        """A report against device; it waits in the queue for its second check unless it is
        already down."""
        if self.event("suspect", device, why) == SUSPECT:
            self._queue.setdefault(device, why)

    def take_suspects(self):
        """{device: why} of the suspicions to check now (the queue starts empty again)."""
        queue, self._queue = self._queue, {}
        return {d: w for d, w in queue.items() if self.of(d) == SUSPECT}

    def has_suspects(self):
        return bool(self._queue)

    def answered(self, device):
        """Checked again and it answers (a suspicion reported meanwhile keeps it a suspect)."""
        if device not in self._queue:
            self.event("answered", device)

    def dismiss(self, device):
        self.event("dismiss", device)

    def fail(self, devices, why=None):
        """devices (or {device: why}) failed."""
        for d in devices:
            self._queue.pop(d, None)
            self.event("fail", d, devices[d] if isinstance(devices, dict) else why)

    def set_cut_off(self, devices):
        """devices (and no others) have no control route: they are cut off, the rest reached."""
        devices = set(devices)
        for d in devices:
            self._queue.pop(d, None)
            self.event("cut", d)
        for d in self.in_state(CUT_OFF) - devices:
            self.event("reached", d)

    def answers(self, device):
        self.event("answers", device)

    def rejoined(self, devices):
        for d in devices:
            if self.of(d) == BACK:
                self.event("rejoined", d)

    def handling(self):
        """with health.handling(): ... marks a change in progress (not re-entered)."""
        return _Busy(self)


class _Busy:
    __slots__ = ("health",)

    def __init__(self, health):
        self.health = health

    def __enter__(self):
        self.health.busy = True
        return self.health

    def __exit__(self, *exc):
        self.health.busy = False
        return False
