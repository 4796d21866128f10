# The assignment runtime: what a device runs when the controller deploys a pipeline to it.
#
# Control messages (on a control session, see core.py):
#   {"deploy": {"assignment": {...}}}  build and check everything; replaces the running one only
#                                      when the new one is complete (nothing half-built runs)
#   {"deploy-part": {...}}             one part of an assignment too large for one frame (parts.py)
#   {"start": {}}                      start pipe receivers, then pipe senders, then sources
#   {"stop": {}}                       flush upstream-first, stop, report final stats
#   {"status": {}}                     (core.py) includes this runtime's status()
#   {"subscribe": {}}                  this session receives callback-sink deliveries
# Connections from other devices:
#   {"pipe": {"edge", "epoch"}}        data for one of our pipe_in steps follows
#   {"pull": {"edge", "epoch"}}        a pipe_in elsewhere wants one of our pipe_out's data
# The assignment format is in docs/architecture.md; steps in ../steps/; pipes in pipes.py.
#
# This module holds only what a running assignment uses all the time (sources, the ctx of the
# steps, back-pressure and acknowledgement plumbing). Everything else loads when it is needed:
# building and checking an assignment (deploy.py: loaded for a deployment and forgotten after on
# .mpy), the control messages (control.py, start.py and stop.py: loaded per message and
# forgotten after it), the status and its reply (report.py, the same), callback deliveries and
# csv outlets (delivery.py: only on devices that have them).
from sensormesh.device.schedule import grid_due, wait_ms
from sensormesh.device.steps import Outlet, Rarely, rare_call


class Source(Outlet):
    """Reads one sensor on its schedule (its rate) and pushes each value into the chain (made,
    its parameters checked and its state set up by build.source; starting and closing are in
    sources.py, its counts in report.py, each loaded per call: steps/__init__.py, Rarely, and so is what a failed read
    does, counted and logged; its wiring in wiring.py). A
    source that reads as fast as the pipeline takes values (rate 0) is a FreeSource
    (free_running.py, loaded only for one)."""

    SINK = False
    RARE_IN = "sensormesh.device.runtime.sources"
    RARE = ["start", "close", "flush", "_read_failed"]

    def _tick(self):
        self.timer = None
        if not self.running:
            return
        try:
            due = grid_due(self, self.rt.loop.now())
            while due > 0 and self.running:
                self.taken += 1
                due -= 1
                try:
                    v = self.read()
                except Exception as e:
                    try:
                        self._read_failed(e)    # counted and logged (sources.py, loaded for it)
                    except MemoryError:
                        self.errors += 1        # no room for that code now: counted only
                    continue
                self.n_out += 1
                self.emit(v)
                if self.limit and self.n_out >= self.limit:
                    self.running = False
        finally:
            # a step that could not take a value (a board short of heap) raises to the loop,
            # which counts and logs it; the source keeps its schedule all the same (a timer that
            # finds no heap free itself: resume_sources sets it going again)
            if self.running and self.timer is None:
                self.timer = self.rt.loop.call_later(
                    wait_ms(self.t0 + self.taken * self.period, self.rt.loop.now()), self._tick)


class Runtime(Rarely):
    """The device's current assignment; the handlers of the messages that manage it are in
    control.py, start.py, stop.py and deploy.py (loaded per message), its rarely used methods
    (status, shutdown; deliver for the steps) in report.py (Rarely,
    steps/__init__.py)."""
    RARE_IN = "sensormesh.device.runtime.report"
    RARE = ["status", "shutdown", "deliver"]
    # the state of a device with no assignment that most assignments keep as it is; each
    # attribute becomes the runtime's own once it changes (what every deployment sets, and the
    # mutable state, are made in __init__: the class's dict stays at 23 entries, its table 23
    # slots, not 29). The state only one rarely loaded module uses has no class default either:
    # that module sets it and reads it with getattr(rt, name, default): cur (joined.py),
    # deliver_timer and deliver_fast (delivery.py), incoming and parts_dropped (parts.py)
    confirmed = False   # a subscriber confirms callback values (delivery.py)
    # lineage (docs/reliability.md, "Several inputs"): pipe_outs fed by several inputs tag
    # their values with the input value they come from; rt.cur names it while it is pushed
    tracking = False
    # joined inputs: a window or zip fed by several pipe_ins; their checkpoints are taken and
    # acknowledged together, and after a restart the replays start from the same cut
    joint = False
    parking = False
    lost_deliveries = 0
    # acknowledged pipes (pipes.py, replay.py)
    feeding = False  # a pipe_in is pushing a frame through the steps
    settled = False  # during that: the last holder let go of its values

    def __init__(self, device):
        self.device = device
        self.loop = device.loop
        # what a deployment sets (install.py, probe_plan.py)
        self.pipeline = None
        self.epoch = 0
        self.state = "empty"
        self.holders = 0      # steps that may hold values back (windows, zips)
        self.holding = 0      # of those, how many hold some right now
        self.probe = None     # the metrics probe of the running assignment when metrics are on (probe.py)
        self.nodes = {}       # id -> step / source / pipe object
        self.order = []       # ids, upstream first
        self.sources = []
        self.pipe_outs = {}   # edge -> PipeOut
        self.pipe_ins = {}    # edge -> PipeIn
        self.code = {}
        self.subscribers = []
        self.deliveries = {}  # callback step id -> Delivery (delivery.py)
        self.outlets = {}     # "@step id" -> a sink that keeps a position: Delivery, csv step
        self.files = []       # csv steps: flushed before what they wrote is acknowledged
        self.cut_marks = {}
        self.carry = {}       # edge -> sender/receiver state kept from the previous deployment
        self.metrics = getattr(device, "metrics", True)   # off: no probe, no stamps (benchmarks)

    def handler(self, key):
        """The handler fn(session, body) of a runtime message (core.RUNTIME_MESSAGES): a function
        of control.py (start.py for start, stop.py for stop and undeploy), whose code is loaded
        for the message and forgotten after it; a controller's confirmations of callback values go to delivery.py,
        loaded while there are callbacks."""
        if key == "deploy":     # a deployment: without control.py
            return self.deploy
        where = "control"
        if key == "start" or key == "stop":
            where = key
        elif key == "undeploy":
            where = "stop"
        elif key == "delivered":
            where = "delivery"    # loaded while there are callbacks
        name = "on_" + key.replace("-", "_")
        if where == "stop":     # a part at a time, each part's code alone (closes.py, stop.py)
            return lambda session, body: self.stopped(session, self.rare(
                where, name, session, *self.rare("closes", "closed", body)))
        return lambda session, body: self.stopped(session, self.rare(where, name, session, body))

    def flush_nodes(self, body):
        """Every node flushes its last values, upstream first (a stop's first part: their
        frames are sealed with only the running code and closes.py loaded). Returns body."""
        for i in self.order:
            try:
                self.nodes[i].flush()
            except Exception as e:
                self.log("flush of %s failed: %s" % (i, e))
        return body

    def stopped(self, session, final):
        """A stop's or an undeploy's reply with its final counts (stop.py returns them; the
        other handlers return None): sealed once stop.py's code is garbage, as a stop is a
        board's fullest moment (replies.py, loaded for it)."""
        if final is not None:
            rare_call("sensormesh.device.replies", "send_stats", self, session.conn, "stopped", final)

    def deploy(self, session, body):
        """{"deploy": ...}: deploy.py, loaded for it; a board without the heap for it, even for
        that module, refuses it saying so (short.py, once what it loaded is gone)."""
        try:
            self.rare("deploy", "on_deploy", session, body)
        except MemoryError:
            self.rare("short", "refuse", session)

    def rare(self, where, name, *args):
        """Call <where>.<name>(self, *args), where is a module of this package a running
        assignment rarely needs: loaded for the call, forgotten after it on .mpy."""
        return rare_call("sensormesh.device.runtime." + where, name, self, *args)

    # -- ctx for steps --------------------------------------------------------------------
    def now(self):
        return self.loop.now()

    def call_later(self, ms, fn):
        return self.loop.call_later(ms, fn)

    def log(self, text):
        self.device.log(text)

    def resolve(self, ref):
        return rare_call("sensormesh.device.runtime.shipped", "resolve", self.code, ref)

    def hold(self):
        """A window or join starts holding values back (ctx for steps; see checkpoints)."""
        self.holding += 1

    def release(self):
        """A window or join emitted or dropped everything it held."""
        self.holding -= 1
        if self.holding <= 0:
            self.holding = 0
            if self.feeding:
                self.settled = True    # the pipe_in pushing values checkpoints after this one
            else:
                for p in self.pipe_ins.values():
                    if p.rx.run is not None:
                        p.checkpoint(p.rx.expect)
                        if self.joint:
                            break      # one joint checkpoint is every input's

    # -- running ------------------------------------------------------------------------
    def resume_sources(self):
        """The pipes took values or got acknowledgements: free-running sources, which wait
        while a pipe is backlogged, read again (free_running.py), and a source left without a
        timer (it found no heap free) reads what is due and sets its timer again."""
        for s in self.sources:
            if not s.period:
                s.resume()
            elif s.timer is None and s.running:
                s._tick()

    def outputs_acked(self):
        for p in self.pipe_ins.values():
            p.settle()
