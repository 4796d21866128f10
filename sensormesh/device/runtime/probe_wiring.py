# The metrics probe's code that runs now and then (probe.py keeps the entry points): a turn of
# the sample timer, the processing of one sampled value, the origin stamps a pipe_out sends
# before an array that carries sampled values (stamps_for), and the emit of a pipe_in's array
# whose values were sampled upstream (stamped). A board running from .mpy files loads this
# module for each and forgets it after (probe.run, pipes.py, pipe_in.py), so between samples it
# costs no heap.
from sensormesh.device.compat import MICROPYTHON, ticks_diff, ticks_us
from sensormesh.device.runtime import probe

# A board samples less often than CPython: each sample loads this module there (probe.py).
SAMPLE_MS = 1000 if MICROPYTHON else 100   # each source's next value is sampled after this long
RTT_EVERY = 1 if MICROPYTHON else 10         # pipe round-trip probes every RTT_EVERY samples (1 s)
MAX_LATENCY = 8 if MICROPYTHON else 4096     # latency samples kept between two metrics polls

# The probe list's items (probe.py). MicroPython's compiler puts the numbers in place of these
# names (const() of a name starting with _ costs nothing at run time); CPython runs them.
if not MICROPYTHON:
    const = int
_RT = const(0)
_PLAN = const(1)
_N = const(2)
_LATENCY = const(3)
_DROPPED = const(4)
_ACTIVE = const(5)
_ORIGIN = const(6)
_CHILD = const(7)
_HELD = const(8)
_TIMER = const(9)
_COUNTS = const(10)


def timer(p):
    """A turn of the sample timer (p: the probe list, probe.py): marks the next value of every
    source to be sampled, probes the pipes' round trips every RTT_EVERY turns, and comes again
    SAMPLE_MS later (until the runtime's teardown stops it: probe.run(p, None, False)). The
    next turn is set first, so a turn that finds no heap free comes again all the same; a
    round-trip probe with no heap to be sealed is left out (that pipe's next one is RTT_EVERY
    turns later)."""
    rt = p[_RT]
    p[_TIMER] = rt.loop.call_later(SAMPLE_MS, probe.once(p, None, None))
    for s in rt.sources:
        if s not in p[_HELD]:     # its next value is processed sampled, read now and here
            s.emit = probe.once(p, s, s.wired)   # (made first: one with no heap is not marked)
            p[_HELD][s] = None
    p[_N] += 1
    if p[_N] % RTT_EVERY == 0:
        for o in rt.pipe_outs.values():
            conn = o.conn
            if conn is not None and not conn.connecting and not conn.closed:
                try:
                    conn.send({"rtt": ticks_us()})   # a round-trip probe (pipes.py)
                except MemoryError:
                    pass


def run(p, node, value, origin):
    """Process one value that `node` emits, sampled (p: the probe list, probe.py): every edge
    timed, `origin` carried (None: the value was read now, here)."""
    if p[_ACTIVE]:          # already inside a sampled value: the wrappers are on
        node.emit(value)
        return
    if origin is None:
        origin = [p[_RT].device.name, ticks_us()]
    p[_ACTIVE] = True
    p[_CHILD] = 0
    p[_ORIGIN] = origin
    plan = p[_PLAN]
    held = p[_HELD]
    i = 0
    c = _COUNTS        # where the counters of the node's first output are
    while i < len(plan):

        def emit(value, i=i, c=c):
            # the node's emit while armed: each output called and timed in turn
            up = plan[i]
            was = p[_ORIGIN]
            # a step that held a sampled value passes its origin on (and holds it no more)
            o = p[_ORIGIN] = held.pop(up, was) or was
            for fn in up.outputs:
                down = plan[i + 2]
                kind = plan[i + 3]
                i += 2
                if not o:
                    pass
                elif kind == 1:
                    lat = p[_LATENCY]
                    if len(lat) >= 4 * MAX_LATENCY:
                        del lat[0:4]
                        p[_DROPPED] += 1
                    name = o[0]
                    if lat and lat[-3] == name:
                        name = lat[-3]       # one string per origin device, not per sample
                    lat += (down.id, name, o[1], ticks_us())
                elif kind == 2:
                    # into a pipe_out: the value it takes next was read at o, and its receiver
                    # is told just before the array that carries it (pipes.py)
                    if len(down.stamps) < probe.MAX_STAMPS:
                        down.stamps.append([down.tx.next_seq(), o[0], o[1]])
                elif kind == 3 and down not in held:
                    held[down] = o
                outer = p[_CHILD]
                p[_CHILD] = 0
                t0 = ticks_us()
                fn(value)
                took = ticks_diff(ticks_us(), t0)
                p[c] += took - p[_CHILD]
                p[c + 1] += 1
                c += 2
                p[_CHILD] = outer + took
            p[_ORIGIN] = was
        n = len(plan[i].outputs)
        plan[i].emit = emit
        i += 2 + 2 * n
        c += 2 * n
    try:
        node.emit(value)
    finally:
        p[_ORIGIN] = None
        p[_ACTIVE] = False
        # the nodes' own emits back, but a one-shot emit for each one that holds a sampled value
        # (its next output is processed sampled) or is a source to sample (timer)
        i = 0
        while i < len(plan):
            n = plan[i]
            n.emit = probe.once(p, n, plan[i + 1]) if n in held else plan[i + 1]
            i += 2 + 2 * len(n.outputs)


def stamped(pi, stamps, start, emit):
    """An emit for the next array of pipe_in `pi` (its values from index `start` on; emit: the
    pipe_in's own) that processes the values stamped upstream ({"ts": stamps}: [k, device,
    tick_us] each) sampled, with their origin (probe.run)."""
    marks = {}
    for m in stamps:
        if type(m) is list and len(m) == 3 and type(m[0]) is int:
            marks[m[0]] = [m[1], m[2]]
    p = pi.rt.probe
    at = [start]
    run = probe.run

    def each(value):
        i = at[0]
        at[0] = i + 1
        o = marks.get(i)
        if o is None or p is None:
            emit(value)
        else:
            run(p, pi, value, o)
    return each


def stamps_for(po, first, n):
    """{"ts": ...} for pipe_out po's values first..first+n-1 about to leave, or None: the origin
    stamps of the sampled ones among them (their index in the array, device, tick_us); the
    stamps of values already sent are dropped."""
    out = None
    keep = []
    for st in po.stamps:
        k = st[0] - first
        if 0 <= k < n:
            if out is None:
                out = []
            out.append([k, st[1], st[2]])
        elif k >= n:
            keep.append(st)
    po.stamps = keep
    return None if out is None else {"ts": out}
