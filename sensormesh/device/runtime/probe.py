# Metrics of a running assignment, sampled so that they can stay on: the time each step takes
# per value, and the origin stamps that give end-to-end latency at the sinks.
#
# Unsampled values pay nothing: steps call each other directly as always. The sample timer
# (tick(), every SAMPLE_MS) swaps each source's emit for a one-shot emit that calls run() without
# an origin, so the next value each source reads is processed *sampled*: run() arms every node of
# the device that has outputs with a timing wrapper (node.emit swapped, for the length of that one
# value's synchronous processing), sets the current origin [device, tick_us at the read], runs the
# value through, then puts the emits back. A wrapper times each output's call and subtracts the
# time of the (timed) calls below it, so a step's time is its own; it also does the origin's work:
#   into a pipe_out: the pipe sends the origin out of band ({"ts": ...}) before the array that
#                    carries the value, and the receiving pipe_in processes that value sampled,
#                    with the same origin (the latency stays measured from the source's read);
#   into a sink:     a latency sample [sink, origin device, origin tick_us, tick_us now];
#   into a step that holds values (windows, joins, throttle: probe_wiring.py): it keeps the
#                    origin (the oldest it holds) until it passes something on; its next output,
#                    whenever it comes (a time frame's timer, the value that completes a count
#                    window or a zip pair), is processed sampled with that origin.
# So a window's output carries the origin of the oldest sampled value in it.
#
# Small on purpose (what metrics on cost a board's heap against off: benchmarks/bench_heap.py
# --metrics): a device keeps these few functions and one list per deployment (below); the plan
# in it is made at deploy time by probe_wiring.py, the metrics reply by ../metrics.py, both
# loaded when needed and forgotten after on a board.
from sensormesh.device.compat import MICROPYTHON, ticks_diff, ticks_us

SAMPLE_MS = 100                      # each source's next value is sampled after this long
RTT_EVERY = 10                       # pipe round-trip probes every RTT_EVERY samples (1 s)
MAX_LATENCY = 32 if MICROPYTHON else 4096   # latency samples kept between two metrics polls

# The probe of a deployment (runtime.probe) is one list, made by probe_wiring.install
# and read by ../metrics.py in this order. MicroPython's compiler puts the numbers in place of
# these names (const() of a name starting with _ costs nothing at run time); CPython runs them.
if not MICROPYTHON:
    const = int
_RT = const(0)        # the Runtime
_PLAN = const(1)      # tuple, per node with outputs: the node, its direct emit, the index in
#                       COUNTS of its first output's pair, then per output (node.outputs' order)
#                       the downstream node and its kind: 0 a step, 1 a sink, 2 a pipe_out,
#                       3 a step that holds values
_COUNTS = const(2)    # per edge (PLAN's order) two counters: own time_us, calls timed
_LATENCY = const(3)   # latency samples, flat: sink, origin device, origin tick_us, sink tick_us, ...
_DROPPED = const(4)   # latency samples lost because nobody polled
_ACTIVE = const(5)    # True while a sampled value is processed (the wrappers are on)
_ORIGIN = const(6)    # [device, tick_us] of the value being processed (sampled), None or False
_CHILD = const(7)     # time_us of the timed calls below the current one
_HELD = const(8)      # node -> origin of the oldest sampled value it holds
_TIMER = const(9)     # the sample timer
_N = const(10)        # samples taken


def run(probe, node, value, origin=None):
    """Process one value that `node` emits, sampled: every edge timed, `origin` carried. Without
    an origin it is a source's one-shot emit (tick()): the value was read now, here; an origin
    False: the value has none (its step held one and passed it on since)."""
    if probe[_ACTIVE]:          # already inside a sampled value: the wrappers are on
        node.emit(value)
        return
    if origin is None:
        node.emit = node.wired
        origin = [probe[_RT].device.name, ticks_us()]
    probe[_ACTIVE] = True
    probe[_CHILD] = 0
    probe[_ORIGIN] = origin
    plan = probe[_PLAN]
    saved = []
    i = 0
    while i < len(plan):
        n = plan[i]
        saved.append(n.emit)

        def emit(value, probe=probe, i=i):
            # n's emit while armed: each output called and timed in turn
            plan = probe[_PLAN]
            up = plan[i]
            held = probe[_HELD]
            if not probe[_ACTIVE]:
                # left armed because it holds a sampled value (below): this later output of
                # its, whenever it comes, is processed sampled with that origin
                up.emit = plan[i + 1]
                run(probe, up, value, held.pop(up, False))
                return
            was = probe[_ORIGIN]
            # a step that held a sampled value passes its origin on (and holds it no more)
            o = probe[_ORIGIN] = held.pop(up, was)
            c = plan[i + 2]
            for fn in up.outputs:
                down = plan[i + 3]
                kind = plan[i + 4]
                i += 2
                if o:
                    if kind == 1:
                        lat = probe[_LATENCY]
                        if len(lat) >= 4 * MAX_LATENCY:
                            del lat[0:4]
                            probe[_DROPPED] += 1
                        name = o[0]
                        if lat and lat[-3] == name:
                            name = lat[-3]       # one string per origin device, not per sample
                        lat += [down.id, name, o[1], ticks_us()]     # grows the list least
                    elif kind == 2:
                        down.stamp(o)
                    elif kind == 3 and down not in held:
                        held[down] = o
                outer = probe[_CHILD]
                probe[_CHILD] = 0
                t0 = ticks_us()
                fn(value)
                took = ticks_diff(ticks_us(), t0)
                counts = probe[_COUNTS]
                counts[c] += took - probe[_CHILD]
                counts[c + 1] += 1
                c += 2
                probe[_CHILD] = outer + took
            probe[_ORIGIN] = was
        n.emit = emit
        i += 3 + 2 * len(n.outputs)
    try:
        node.emit(value)
    finally:
        probe[_ORIGIN] = None
        probe[_ACTIVE] = False
        held = probe[_HELD]
        i = k = 0
        while i < len(plan):
            n = plan[i]
            if n not in held:       # else its emit stays armed (above)
                n.emit = saved[k]
            k += 1
            i += 3 + 2 * len(n.outputs)


def tick(probe, on=True):
    """The sample timer (runtime start/teardown: tick(probe), tick(probe, False)): marks the next
    value of every source to be sampled, probes the pipes' round trips every RTT_EVERY turns, and
    comes again SAMPLE_MS later until stopped."""
    if probe[_TIMER] is not None:
        probe[_TIMER].cancel()
        probe[_TIMER] = None
    if not on:
        return
    rt = probe[_RT]
    for s in rt.sources:
        if s.emit is s.wired:     # its next value is processed sampled, read now and here
            s.emit = lambda value, probe=probe, source=s: run(probe, source, value)
    probe[_N] += 1
    if probe[_N] % RTT_EVERY == 0:
        for o in rt.pipe_outs.values():
            o.probe_rtt()
    probe[_TIMER] = rt.loop.call_later(SAMPLE_MS, lambda: tick(probe))
