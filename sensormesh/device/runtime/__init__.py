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
from sensormesh.device import codec
from sensormesh.device.compat import MICROPYTHON, collect, forget, unload
from sensormesh.device.schedule import grid_due, sparse, wait_ms
from sensormesh.device.steps import Outlet, nowhere

BURST = 64 if MICROPYTHON else 256
# Callback-sink values wait at most this long before they leave for the controller.
DELIVER_MS = 50
MAX_UNDELIVERED = 1000 if MICROPYTHON else 200000
# Undelivered values of one callback that leave at once instead of waiting for the timer.
DELIVER_BURST = 256 if MICROPYTHON else 8192
# Largest JSON of one deliver message; more values leave in several. Control messages are not
# split, and each must fit every link on its way: a keyed link wraps at most 3 KB at once on
# MicroPython (12 KB on CPython), and each gateway relaying it adds about a third.
DELIVER_MAX = 1536 if MICROPYTHON else 4096


class AssignmentError(Exception):
    pass


class Source(Outlet):
    """Reads one sensor on its schedule and pushes each value into the chain."""

    SINK = False

    def __init__(self, runtime, sid, params):
        self.rt = runtime
        self.id = sid
        name = params.get("sensor")
        dev = runtime.device
        if name not in dev.sensors:
            # the spec may name a kind; take the first configured sensor of that kind
            for n in dev.sensor_names():
                if dev.sensor_kinds.get(n) == name:
                    name = n
                    break
        if name not in dev.sensors:
            raise AssignmentError("step '%s': this device has no sensor %r (it has: %s)"
                                  % (sid, params.get("sensor"), ", ".join(dev.sensor_names())))
        sensor, rate = dev.sensors[name]
        if params.get("rate") is not None:
            rate = params["rate"]
            if type(rate) not in (int, float) or rate < 0:
                raise AssignmentError("step '%s': rate must be a non-negative number" % sid)
        self.read = sensor.get
        self.read_many = getattr(sensor, "get_many", None)
        self.period = 1000.0 / rate if rate else 0.0
        self.limit = params.get("count") or 0   # stop after this many values (tests, demos)
        self.emit = nowhere
        self.emit_many = nowhere
        self.wired = nowhere    # emit as connected (the probe swaps emit to sample a value)
        self.outputs = []
        self.timer = None
        self.running = False
        self.n_out = 0
        self.errors = 0
        self.missed = 0       # grid slots not read because the loop was stalled (schedule.py)
        self.last_error = None

    def start(self):
        self.running = True
        self.t0 = self.rt.loop.now()
        self.taken = 0
        self._tick()

    def _tick(self):
        self.timer = None
        if not self.running:
            return
        if self.period:
            due = grid_due(self, self.rt.loop.now())
            while due > 0 and self.running:
                self.taken += 1
                due -= 1
                self._one()
            if self.running:
                self.timer = self.rt.loop.call_later(
                    wait_ms(self.t0 + self.taken * self.period, self.rt.loop.now()), self._tick)
        else:
            if self.rt.backlogged():
                return  # resume_sources() calls us again when the pipes drain
            self._burst()
            if self.running:
                self.timer = self.rt.loop.call_later(0, self._tick)

    def _burst(self):
        # A free-running source reads a run of values per loop turn and hands the list on at
        # once: steps that take runs (map, filter, pipe_out) pay per run, not per value.
        n = self.rt.room(BURST)
        if self.limit and self.limit - self.n_out < n:
            n = self.limit - self.n_out
        vals = self._read_run(n)
        self.n_out += len(vals)
        if self.limit and self.n_out >= self.limit:
            self.running = False
        if not vals:
            return
        if self.emit is not self.wired:
            # the probe samples the next value: it goes alone, the rest of the run follows
            self.emit(vals[0])
            vals = vals[1:]
        self.emit_many(vals)

    def _read_run(self, n):
        """The next n readings as a list (fewer if reads failed: each failure is counted)."""
        many = self.read_many
        if many is not None:
            try:
                return many(n)
            except Exception as e:
                # the sensor could not give a run: read its values one by one, as below
                self._read_failed(e)
        read = self.read
        out = []
        add = out.append
        for _ in range(n):
            try:
                add(read())
            except Exception as e:
                self._read_failed(e)
        return out

    def _read_failed(self, e):
        self.errors += 1
        self.last_error = "%s: %s" % (type(e).__name__, e)
        if sparse(self.errors):
            self.rt.log("source %s: sensor read failed: %s (%d so far)" % (self.id, self.last_error, self.errors))

    def _one(self):
        try:
            v = self.read()
        except Exception as e:
            self._read_failed(e)
            return
        self.n_out += 1
        self.emit(v)
        if self.limit and self.n_out >= self.limit:
            self.running = False

    def sample_emit(self, value):
        # swapped in for emit by the metrics probe (probe.py) when this source's next value is sampled
        from sensormesh.device.runtime.probe import source_sample
        source_sample(self.rt.probe, self, value)

    def resume(self):
        if self.running and not self.period and self.timer is None:
            self._tick()

    def flush(self):
        pass

    def close(self):
        self.running = False
        if self.timer:
            self.timer.cancel()
            self.timer = None

    def stats(self):
        s = {"in": self.n_out + self.errors, "out": self.n_out, "errors": self.errors, "missed": self.missed}
        if self.last_error:
            s["last_error"] = self.last_error
        return s


class Runtime:
    """The device's current assignment, and the handlers of the messages that manage it."""

    def __init__(self, device):
        self.device = device
        self.loop = device.loop
        self.pipeline = None
        self.epoch = 0
        self.state = "empty"
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
        self.confirmed = False   # a subscriber confirms callback values (delivery.py)
        # lineage (docs/reliability.md, "Several inputs"): pipe_outs fed by several inputs tag
        # their values with the input value they come from; rt.cur names it while it is pushed
        self.tracking = False
        self.cur = None
        # joined inputs: a window or zip fed by several pipe_ins; their checkpoints are taken and
        # acknowledged together, and after a restart the replays start from the same cut
        self.joint = False
        self.parking = False
        self.cut_marks = {}
        self.lost_deliveries = 0
        self.deliver_timer = None
        self.deliver_fast = False   # the timer is due at once (deliver_soon)
        # acknowledged pipes (pipes.py, replay.py)
        self.carry = {}       # edge -> sender/receiver state kept from the previous deployment
        self.holders = 0      # steps that may hold values back (windows, zips)
        self.holding = 0      # of those, how many hold some right now
        self.feeding = False  # a pipe_in is pushing a frame through the steps
        self.settled = False  # during that: the last holder let go of its values
        self.metrics = getattr(device, "metrics", True)   # off: no probe, no stamps (benchmarks)
        self.probe = None      # the metrics probe of the running assignment when metrics are on (probe.py)
        self.incoming = None       # parts.Incoming: an assignment arriving in parts
        self.parts_dropped = None  # why the last one arriving in parts was dropped

    def handler(self, key):
        return getattr(self, "on_" + key.replace("-", "_"))

    # -- ctx for steps --------------------------------------------------------------------
    def now(self):
        return self.loop.now()

    def call_later(self, ms, fn):
        return self.loop.call_later(ms, fn)

    def resolve(self, ref):
        from sensormesh.device.runtime import shipped
        return shipped.resolve(self.code, ref)

    def log(self, text):
        self.device.log(text)

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

    def deliver(self, sid, value):
        d = self.deliveries.get(sid)
        if d is None:     # a callback outside the deployment (tests): its Delivery now
            from sensormesh.device.runtime.delivery import Delivery
            from sensormesh.device.runtime.replay import new_run
            d = self.deliveries[sid] = Delivery(sid, MAX_UNDELIVERED, new_run())
        tx = d.tx
        tx.add(value)
        if tx.dropped != d.logged:
            d.logged = tx.dropped
            if sparse(tx.dropped):
                self.log("callback %s: no controller took its values; %d dropped so far (the oldest go)"
                         % (sid, tx.dropped))
        if tx.unsent() >= DELIVER_BURST and self._live():
            # a burst (a replay, a backlog) outran the delivery timer: deliver now
            self._send_deliveries()
        elif self.deliver_timer is None:
            self.deliver_timer = self.loop.call_later(DELIVER_MS, self._send_deliveries)

    def _live(self):
        """The subscribers whose sessions are open; notes whether one of them confirms."""
        live = [s for s in self.subscribers if not s.conn.closed]
        self.subscribers = live
        confirmed = False
        for s in live:
            if getattr(s, "confirms", False):
                confirmed = True
        if confirmed != self.confirmed:
            self._confirming(confirmed)
        return live

    def _confirming(self, flag):
        """A confirming controller is subscribed (flag) or the last one went away: then what is
        queued has taken effect (as in the original design), and checkpoints may move on."""
        self.confirmed = flag
        for d in self.deliveries.values():
            d.confirmed = flag
        if not flag:
            if self.deliveries:
                self.log("no subscribed controller confirms callback values: they count as taken once queued")
            self.outputs_acked()

    def deliver_soon(self):
        """Acknowledgements wait for the controller to confirm callback values: what waits for
        the delivery timer leaves in this loop turn instead (one message per incoming array,
        not one per 50 ms)."""
        if self.deliver_timer is not None and not self.deliver_fast:
            self.deliver_timer.cancel()
            self.deliver_fast = True
            self.deliver_timer = self.loop.call_later(0, self._send_deliveries)

    def _send_deliveries(self):
        self.deliver_timer = None
        self.deliver_fast = False
        live = self._live()
        if not live:
            for d in self.deliveries.values():
                if d.tx.unsent():
                    self.deliver_timer = self.loop.call_later(DELIVER_MS * 4, self._send_deliveries)
                    break
            return
        for sid in self.deliveries:
            d = self.deliveries[sid]
            if not d.tx.unsent():
                continue
            try:
                msgs = d.messages(self.epoch, codec.dumps, DELIVER_MAX)
            except codec.ProtocolError as e:         # e.g. a value JSON cannot carry
                self._undeliverable(d, d.tx.unsent(), e)
                continue
            for msg in msgs:
                for s in live:
                    try:
                        s.conn.send(msg)
                    except codec.ProtocolError as e:   # one value too large for the link
                        self._undeliverable(d, len(msg["deliver"]["values"]), e)
            if not d.confirmed:
                d.tx.ack(d.tx.sent)       # nobody confirms: sent is taken (the original design)

    def _undeliverable(self, d, n, e):
        self.lost_deliveries += n
        self.log("callback values of %s not delivered: %s" % (d.sid, e))
        tx = d.tx
        if tx.unsent():
            tx.sent = tx.next_seq()       # they never leave; the position counts them as taken
            tx.high = tx.sent

    def on_delivered(self, session, body):
        """A controller confirms it took a callback's values: {"step", "seq", "run"}."""
        if type(body) is not dict:
            return
        d = self.deliveries.get(body.get("step"))
        if d is not None and body.get("run") == d.tx.run and d.tx.ack(body.get("seq")):
            self.outputs_acked()

    def _subscribed(self, session, body):
        """session collects callback values; with {"acks": true} it confirms them (and gets
        everything not yet confirmed again: it drops what it already had)."""
        if session not in self.subscribers:
            self.subscribers.append(session)
        if type(body) is dict and body.get("acks") is True:
            session.confirms = True
            if not self.confirmed:
                self._confirming(True)
            for d in self.deliveries.values():
                d.tx.restart()
            if self.deliver_timer is None:
                self.deliver_timer = self.loop.call_later(0, self._send_deliveries)

    # -- deploying (deploy.py: loaded for a deployment, its code forgotten afterwards) ---------
    def on_deploy(self, session, body):
        # Shipped code is loaded while building; its loader and the deployment's own code are
        # dropped afterwards (a board pays for them only during a deployment), and the garbage
        # of the deployment is collected, as is what came before it (the build needs free blocks).
        # A board without the memory for it refuses the assignment saying so ("out-of-memory"),
        # instead of leaving the controller waiting: the controller tries it again, alone.
        collect()
        short = False
        try:
            from sensormesh.device.runtime import deploy
            from sensormesh.device.runtime.shipped import ShippedError
            deploy.apply(self, session, body, ShippedError)
        except MemoryError:
            short = True
        finally:
            unload("sensormesh.device.runtime.shipped")
            forget("sensormesh.device.runtime.deploy")
            collect()
        if short:
            self.out_of_memory(session)

    def out_of_memory(self, session):
        free = ""
        if MICROPYTHON:
            import gc
            free = " (%d bytes free after collecting)" % gc.mem_free()
        text = "no memory free for its assignment%s; try again, or give it more heap or fewer steps" % free
        self.log("deploy refused: " + text)
        session.conn.send({"error": {"code": "out-of-memory", "message": text}})

    def on_deploy_part(self, session, body):
        # An assignment too large for one frame (parts.py): deployed once its last part is in.
        from sensormesh.device.runtime import parts
        a = parts.receive(self, session, body)
        if self.incoming is None:        # none arriving: a board frees the module's code
            unload("sensormesh.device.runtime.parts")
        if a is not None:
            # only a controller that confirms callback values sends an assignment in parts
            self.on_deploy(session, {"assignment": a, "acks": True})
        else:
            collect()

    def hurry_outlets(self):
        """An upstream buffer is half full: callback values leave now (the controller confirms
        them sooner) and csv rows are flushed."""
        if self.deliver_timer is not None:
            self.deliver_timer.cancel()
            self._send_deliveries()
        self.commit_files()

    def commit_files(self):
        """Flush what csv sinks wrote, so their checkpoints may be acknowledged upstream."""
        moved = False
        for f in self.files:
            if f.commit():
                moved = True
        if moved:
            self.outputs_acked()

    def on_start(self, session, body):
        if self.state == "empty":
            session.conn.send({"error": {"code": "not-deployed", "message": "nothing is deployed on this device"}})
            return
        if self.state != "running":
            for kind in ("in", "out"):     # pipe receivers, then pipe senders, then sources
                for i in self.order:
                    n = self.nodes[i]
                    if getattr(n, "PIPE", None) == kind:
                        n.start()
            for n in self.sources:
                n.start()
            if self.probe is not None:
                from sensormesh.device.runtime.probe import tick
                tick(self.probe)      # the metrics probe's sample timer
            self.state = "running"
        session.conn.send({"started": {"pipeline": self.pipeline, "epoch": self.epoch}})

    def on_stop(self, session, body):
        # {"stop": {"keep": true}}: a new deployment follows (the controller moves the pipeline);
        # the pipes of its edges carry on the numbering and replay buffers of these
        final = self.teardown(keep=type(body) is dict and body.get("keep") is True)
        self.send_stats(session.conn, "stopped", final if final is not None else self.status())

    def send_stats(self, conn, key, st):
        """Send a status or stopped reply. When it does not fit the link (the per-step counts of
        hundreds of steps, over a board's small frames or a keyed link), the per-step counts give
        way to their number ("steps_omitted") and the reply says why."""
        try:
            conn.send({key: st})
            return
        except codec.ProtocolError as e:
            why = str(e)
        a = st.get("assignment") if type(st.get("assignment")) is dict else st
        a["steps_omitted"] = len(a.get("steps") or ())
        a["steps"] = {}
        a["omitted_because"] = why
        conn.send({key: st})

    def on_undeploy(self, session, body):
        self.on_stop(session, body)

    def on_subscribe(self, session, body):
        self._subscribed(session, body)
        session.conn.send({"subscribed": {"pipeline": self.pipeline, "epoch": self.epoch}})
        self._send_deliveries()

    def _edge_conn(self, session, body, table, what):
        edge = body.get("edge") if type(body) is dict else None
        node = table.get(edge)
        if node is None:
            session.fail(session.conn, "unknown-edge", "no %s for edge %r on device %s (pipeline %s epoch %s)"
                         % (what, edge, self.device.name, self.pipeline, self.epoch))
            return None
        ep = body.get("epoch")
        if ep is not None and ep != self.epoch:
            session.fail(session.conn, "stale-epoch", "edge %r belongs to epoch %s; this device runs epoch %s"
                         % (edge, ep, self.epoch))
            return None
        return node

    def _attach(self, session, body, table, what):
        node = self._edge_conn(session, body, table, what)
        if node is not None:
            session.kind = "pipe"
            session.handler = node
            try:
                node.attach(session.conn, body)
            except ValueError as e:
                session.handler = None
                session.fail(session.conn, "bad-request", "edge %r: %s" % (node.edge, e))

    def on_pipe(self, session, body):
        self._attach(session, body, self.pipe_ins, "pipe_in")

    def on_pull(self, session, body):
        self._attach(session, body, self.pipe_outs, "pipe_out")

    # -- running ------------------------------------------------------------------------
    def backlogged(self):
        for p in self.pipe_outs.values():
            if p.backlogged():
                return True
        return False

    def room(self, n):
        """At most n: the values the fullest replay buffer still takes. A free-running source
        reads no more per turn, so it waits for acknowledgements instead of pushing the oldest
        unacknowledged values out of a buffer (its bound is for rated sources and outages)."""
        for p in self.pipe_outs.values():
            tx = p.tx
            if tx.acks and tx.spool is None:
                free = tx.cap - len(tx.buf)
                if free < n:
                    n = free if free > 1 else 1
        return n

    def resume_sources(self):
        for s in self.sources:
            s.resume()

    def acked_of(self, edge):
        """How far the receiver of one of our pipe_outs has acknowledged (a pipe no longer
        deployed counts as acknowledged: nothing waits for it any more)."""
        p = self.pipe_outs.get(edge)
        if p is not None:
            return p.tx.base
        p = self.outlets.get(edge)
        return p.acked() if p is not None else 1 << 60

    def outputs_acked(self):
        for p in self.pipe_ins.values():
            p.settle()

    def teardown(self, keep=False):
        """Stop sources, flush every step upstream-first, close everything. Returns the status
        taken after the flushes (so the counts include the last frames), or None if empty.
        keep: a new deployment follows; the pipes' numbering and replay buffers carry over to the
        pipes of the same edges in it."""
        if not keep:
            self.carry = {}
        if not self.nodes:
            return None
        for s in self.sources:
            s.close()
        if self.probe is not None:
            from sensormesh.device.runtime.probe import tick
            tick(self.probe, False)
        for i in self.order:
            try:
                self.nodes[i].flush()
            except Exception as e:
                self.log("flush of %s failed: %s" % (i, e))
        self._send_deliveries()
        final = self.status()
        if keep:
            for sid in self.deliveries:
                self.carry["cb " + sid] = self.deliveries[sid].tx
            for e in self.pipe_outs:
                self.carry["out " + e] = self.pipe_outs[e].tx
            for e in self.pipe_ins:
                self.carry["in " + e] = self.pipe_ins[e].rx
        for i in self.order:
            try:
                n = self.nodes[i]
                if keep and getattr(n, "PIPE", None) == "out":
                    n.close(keep=True)    # its replay buffer (and spool) goes on in the next deployment
                else:
                    n.close()
            except Exception as e:
                self.log("close of %s failed: %s" % (i, e))
        self.nodes = {}
        self.order = []
        self.sources = []
        self.pipe_outs = {}
        self.pipe_ins = {}
        self.state = "empty"
        final["state"] = "stopped"
        return final

    def shutdown(self):
        self.teardown()

    def status(self):
        st = {"pipeline": self.pipeline, "epoch": self.epoch, "state": self.state, "steps": {}}
        for i in self.order:
            try:
                st["steps"][i] = self.nodes[i].stats()
            except Exception as e:
                st["steps"][i] = {"error": str(e)}
        lost = self.lost_deliveries
        for d in self.deliveries.values():
            lost += d.tx.dropped
        if lost:
            st["lost_deliveries"] = lost
        return st
