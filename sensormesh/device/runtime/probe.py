# Metrics of a running assignment, sampled so that they can stay on: the time each step takes
# per value, and the origin stamps that give end-to-end latency at the sinks.
#
# Unsampled values pay nothing: steps call each other directly as always. The sample timer
# (every SAMPLE_MS, probe_wiring.py) swaps each source's emit for a one-shot emit (once()), so the next value
# each source reads is processed *sampled* (probe_wiring.run): every node of the device
# that has outputs gets a timing wrapper as its emit for the length of that one value's
# synchronous processing, the current origin is [device, tick_us at the read], and the emits are
# put back after. A wrapper times each output's call and subtracts the time of the (timed) calls
# below it, so a step's time is its own; it also does the origin's work:
#   into a pipe_out: the pipe sends the origin out of band ({"ts": ...}) before the array that
#                    carries the value, and the receiving pipe_in processes that value sampled,
#                    with the same origin (the latency stays measured from the source's read);
#   into a sink:     a latency sample [sink, origin device, origin tick_us, tick_us now];
#   into a step that holds values (windows, joins, throttle): it keeps the origin (the oldest it
#                    holds) and a one-shot emit until it passes something on; its next output,
#                    whenever it comes (a time frame's timer, the value that completes a count
#                    window or a zip pair), is processed sampled with that origin.
# So a window's output carries the origin of the oldest sampled value in it.
#
# Small on purpose (what metrics on cost a board's heap against off: benchmarks/bench_heap.py
# --metrics): between samples a device keeps this module (two functions: the entry point of the
# timer, the one-shot emits and the pipe_in's stamped values, and the maker of one-shot emits)
# and one list per deployment (below). The code of a timer turn and of a sampled value
# (probe_wiring.py) is loaded for each and forgotten after on a board running .mpy files; so is
# the code that makes the probe at deploy time (probe_plan.py) and the metrics reply
# (../metrics.py). A board
# samples once a second (probe_wiring.SAMPLE_MS): about four loads a second on a device with a
# source, a window and a pipe each way (docs/observability.md has what a load costs). When a
# board has no room to load that code, the value goes unsampled (a timer turn comes again).
from sensormesh.device.compat import forget

# Origin stamps a pipe keeps for values not sent yet, and a pipe_in takes with an array
# (sampled: about 10 a second per source).
MAX_STAMPS = 32

# The probe of a deployment (runtime.probe) is one list, made by probe_plan.py (install) at deploy
# time and read by probe_wiring.py and ../metrics.py (report) in this order:
#   0 the Runtime
#   1 the plan: a tuple, per node with outputs: the node, its direct emit, then per output
#     (node.outputs' order) the downstream node and its kind: 0 a step, 1 a sink, 2 a pipe_out,
#     3 a step that holds values
#   2 samples taken
#   3 latency samples, flat: sink, origin device, origin tick_us, sink tick_us, ...
#   4 latency samples lost because nobody polled
#   5 True while a sampled value is processed (the wrappers are on)
#   6 [device, tick_us] of the value being processed (sampled), None or False
#   7 time_us of the timed calls below the current one
#   8 the armed nodes: node -> origin of the oldest sampled value it holds (None: a source whose
#     next value is sampled, read then)
#   9 the sample timer
#   10, 11, ... per output in the plan, in its order, two counters: own time_us, calls timed


def run(probe, node, value, origin=None, emit=None):
    """Process one value that `node` emits, sampled, with `origin` ([device, tick_us]; None: read
    now, here); emit: the node's own emit when this is its one-shot emit (once()).
    With node None, the sample timer: value None a turn of it (it starts with the first, at the
    runtime's start), False stops it (the runtime's teardown)."""
    if node is None:
        if probe[9] is not None:
            probe[9].cancel()
            probe[9] = None
        if value is False:
            return
    if emit is not None:
        node.emit = emit
        origin = probe[8].pop(node, None)
    try:
        from sensormesh.device.runtime import probe_wiring
    except MemoryError:       # no room for the sampling code now
        if node is None:      # the timer comes again (a board samples once a second)
            probe[9] = probe[0].loop.call_later(1000, once(probe, None, None))
        else:                 # this value goes unsampled
            node.emit(value)
        return
    if node is None:
        probe_wiring.timer(probe)
    else:
        probe_wiring.run(probe, node, value, origin)
    forget(probe_wiring)


def once(probe, node, emit):
    """A one-shot emit for `node` (an entry in probe[8]; emit: its own): its next value is
    processed sampled. With node None: the sample timer's callback."""
    # default arguments rather than a closure: a third of the heap on MicroPython (a closure
    # keeps a cell per variable), and there are a few of these alive at any time
    return lambda value=None, probe=probe, node=node, emit=emit: run(probe, node, value, None, emit)
