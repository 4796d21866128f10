# Metrics of a running assignment, sampled so that they can stay on: the time each step takes
# per value, and the origin stamps that give end-to-end latency at the sinks.
#
# Unsampled values pay nothing: steps call each other directly as always. A sample timer
# (every SAMPLE_MS) swaps each source's emit for a one-shot "sampling" emit, so the next value
# each source reads is processed *sampled*: the probe arms every edge of the chain with a timing
# wrapper (node.emit swapped for a wrapped emitter, for the length of that one value's synchronous
# processing), sets the current origin [device, tick_us at the read], runs the value through,
# then restores the direct emits. A wrapper times its step's put and subtracts the time of the
# (timed) steps it calls, so "time_us" is the step's own time; it also does the origin's work:
#   into a pipe_out: the pipe sends the origin out of band ({"ts": ...}) before the array that
#                    carries the value, and the receiving pipe_in processes that value sampled,
#                    with the same origin (the latency stays measured from the source's read);
#   into a sink:     a latency sample [sink, origin device, origin tick_us, tick_us now];
#   into a step that holds values (HOLDING: windows, joins, throttle), when it does not pass
#                    something on at once: it keeps the origin (the oldest it holds) and its next
#                    output, whenever it comes (a time frame's timer, the value that completes a
#                    count window or a zip pair), is processed sampled with that origin.
# So a window's output carries the origin of the oldest sampled value in it.
from sensormesh.device.compat import MICROPYTHON, ticks_diff, ticks_us
from sensormesh.device.steps import emitter

SAMPLE_MS = 100                      # each source's next value is sampled after this long
RTT_EVERY = 10                       # pipe round-trip probes every RTT_EVERY samples (1 s)
MAX_LATENCY = 32 if MICROPYTHON else 4096   # latency samples kept between two metrics polls
# Latency samples per metrics reply at most (the rest wait for the next poll): a reply is a control
# message, which must fit a keyed link's wrap limit (runtime DELIVER_MAX) on MicroPython.
REPLY_LATENCY = 16 if MICROPYTHON else 4096

SINK, PIPE, STEP, HOLD = 1, 2, 3, 4
# Step types whose output may come later than (or combine) the values they take in. Other steps
# that pass nothing on (a filter saying no) drop the value, and its origin with it.
HOLDING = ("window", "sliding", "zip", "combine_latest", "throttle")


class Probe:
    # Small on purpose (docs/performance.md, metrics on vs off): one dict entry per node with
    # outputs, one list and one default-argument function per edge (its time and calls counted
    # in that list); no closures with many cells, no dicts per step.
    def __init__(self, runtime):
        self.rt = runtime
        self.origin = None     # [device, tick_us] of the value being processed (sampled only)
        self.active = False
        self.child_us = 0
        self.edges = []        # per edge: [probe, up id, step id, kind, node, its inlet, own time_us, calls]
        self.wired = {}        # node id -> (node, its emit as wired, its emit through the wrappers)
        self.oneshot = {}      # node id -> an emit that samples its next output (source, held origin)
        self.held = {}         # node id -> origin of the oldest sampled value it holds
        self.emitted = {}      # node ids that emitted during the sampled value being processed
        self.latency = []      # flat: sink, origin device, origin tick_us, sink tick_us, sink, ...
        self.names = {}        # origin device names, one string each (a board's heap)
        self.latency_dropped = 0
        self.timer = None
        self.n = 0

    # -- wiring (deploy time) ----------------------------------------------------------------
    def install(self, nodes, edges):
        """edges: (upstream id, downstream id, port) of the assignment just built."""
        outs = {}
        for up, down, port in edges:
            node = nodes[down]
            if getattr(node, "PIPE", None) == "out":
                kind = PIPE
            elif getattr(node, "SINK", False):
                kind = SINK
            elif getattr(node, "TYPE", None) in HOLDING:
                kind = HOLD
            else:
                kind = STEP
            e = [self, up, down, kind, node, node.inlet(port), 0, 0]
            self.edges.append(e)

            def timed(value, e=e):
                _timed(e, value)
            lst = outs.get(up)
            if lst is None:
                lst = outs[up] = []
            lst.append(timed)
        for up in outs:
            node = nodes[up]
            self.wired[up] = (node, node.emit, emitter(outs[up]))

    # -- sampled processing --------------------------------------------------------------------
    def run(self, node, value, origin):
        """Process one value that `node` emits, sampled: every edge timed, `origin` carried."""
        w = self.wired.get(node.id)
        if w is None:
            node.emit(value)
            return
        if self.active:          # already inside a sampled value: the wrappers are on
            w[2](value)
            return
        self.active = True
        self.child_us = 0
        for sid in self.wired:
            w2 = self.wired[sid]
            w2[0].emit = w2[2]
        self.origin = origin
        try:
            w[2](value)
        finally:
            self.origin = None
            self._disarm(node.id)

    def _disarm(self, entry):
        held = self.held
        emitted = self.emitted
        for sid in emitted:
            if sid in held and sid != entry:
                del held[sid]          # it passed something on: its origin went with it
        self.emitted = {}
        one = self.oneshot
        for sid in self.wired:
            n, direct, _ = self.wired[sid]
            if sid in held and sid not in one:
                one[sid] = self._held_emit(n)
            n.emit = one.get(sid) or direct
        self.active = False

    def _held_emit(self, node):
        def emit(value):
            self.oneshot.pop(node.id, None)
            node.emit = self.wired[node.id][1]
            self.run(node, value, self.held.pop(node.id, None))
        return emit

    def sample_latency(self, sink, origin):
        lat = self.latency
        if len(lat) >= 4 * MAX_LATENCY:
            del lat[0:4]
            self.latency_dropped += 1
        name = origin[0]
        name = self.names.get(name) or self.names.setdefault(name, name)
        lat.extend((sink, name, origin[1], ticks_us()))

    # -- the sample timer ----------------------------------------------------------------------
    def start(self):
        self.stop()
        self.timer = self.rt.loop.call_later(SAMPLE_MS, self._tick)

    def stop(self):
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _tick(self):
        self.timer = None
        rt = self.rt
        for s in rt.sources:
            if s.running and s.id in self.wired and s.id not in self.oneshot:
                self.oneshot[s.id] = s.sample_emit
                s.emit = s.sample_emit
        self.n += 1
        if self.n % RTT_EVERY == 0:
            for p in rt.pipe_outs.values():
                p.probe_rtt()
        self.timer = rt.loop.call_later(SAMPLE_MS, self._tick)

    def source_sample(self, source, value):
        """A source's one-shot sampling emit: this value's origin is now, on this device. A
        free-running source keeps its emit for a whole burst: the burst's later values pass."""
        if self.oneshot.pop(source.id, None) is None:
            self.wired[source.id][1](value)
            return
        source.emit = self.wired[source.id][1]
        self.run(source, value, [self.rt.device.name, ticks_us()])


def _timed(e, value):
    # The timing wrapper of one edge (up -> sid): times the step's put minus the (timed) steps it
    # calls, so the step's own time; and does the origin's work (see the top of this file).
    probe, up, sid, kind, node, fn = e[0], e[1], e[2], e[3], e[4], e[5]
    probe.emitted[up] = True
    o = probe.origin
    if o is not None:
        if kind == SINK:
            probe.sample_latency(sid, o)
        elif kind == PIPE:
            node.stamp(o)
        elif kind == HOLD and sid not in probe.held:
            probe.held[sid] = o
    outer = probe.child_us
    probe.child_us = 0
    t0 = ticks_us()
    fn(value)
    took = ticks_diff(ticks_us(), t0)
    e[6] += took - probe.child_us
    e[7] += 1
    probe.child_us = outer + took
