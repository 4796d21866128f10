# The device's answer to {"metrics": {}} (docs/observability.md; core.py answers {"clock"}; the
# metrics probe of a deployment is made by runtime/probe_plan.py). Loaded for each and unloaded
# after it on MicroPython (core.Device.dispatch).
#
# Everything here is read when the controller asks, so it costs nothing between polls: the
# counters it reports are kept by the loop (time waiting in poll), the steps and pipes (values,
# frames, bytes) and the runtime's probe (runtime/probe.py: sampled step times, latency samples).
# All counters are monotonic; the latency samples are a bounded list handed out (and emptied) by
# each poll.
#
# What a board keeps of this module between two polls is the names it interns when it loads
# (every identifier, and string constants of up to 10 characters, stay for good): hence one
# function, and the reply's own names cut out of one longer string when a reply is made.
import gc
import sys

from sensormesh.device.compat import MICROPYTHON, TICK_PERIOD, ticks_us


def report(device):
    """The metrics message M of this device (its format: docs/observability.md)."""
    interp, enabled, busy_us, wall_us, heap_free, heap_alloc, time_us, timed, latency = \
        "interp enabled busy_us wall_us heap_free heap_alloc time_us timed latency".split()
    loop = device.loop
    wall = loop.now() * 1000
    idle = loop.idle_s * 1000000 + loop.idle_us   # time waiting in poll()
    if MICROPYTHON:
        mem = {heap_free: gc.mem_free(), heap_alloc: gc.mem_alloc(), "heap_largest": largest(device)}
    else:
        from sensormesh.device import cpython_usage
        mem = cpython_usage.usage()
    m = {"device": device.name, interp: sys.implementation.name, "tick_us": ticks_us(), "tick_period": TICK_PERIOD,
         enabled: getattr(device, "metrics", True),
         "loop": {busy_us: wall - idle if wall > idle else 0, wall_us: wall}, "mem": mem,
         "steps": {}, "pipes": {}, latency: [], "latency_dropped": 0}
    rt = device.runtime
    if rt is None:
        return m
    probe = rt.probe
    for sid in rt.order:
        node = rt.nodes[sid]
        try:
            st = node.stats()
        except Exception:
            st = {}
        s = m["steps"][sid] = {"in": st.get("in", 0), "out": st.get("out", 0)}
        if probe is not None:      # steps without timed inputs (sources, pipe_in) report 0
            s[time_us] = 0
            s[timed] = 0
        pm = getattr(node, "pipe_metrics", None)
        if pm is not None:
            m["pipes"][node.edge] = pm()
    if probe is not None:
        # the probe (a list, runtime/probe.py's order): 1 its plan, 3 latency samples, 4 how
        # many were dropped, from 10 on two counters per output in the plan (in its order).
        # Each step's time is summed over its timed inputs.
        plan = probe[1]
        i = 0
        c = 10
        while i < len(plan):
            for j in range(len(plan[i].outputs)):
                # (a stopped assignment's steps are gone: its latency samples are still handed out)
                s = m["steps"].get(plan[i + 2 + 2 * j].id)
                if s is not None:
                    s[time_us] += probe[c]
                    s[timed] += probe[c + 1]
                c += 2
            i += 2 + 2 * len(plan[i].outputs)
        # The latency samples [[sink, origin, origin tick, sink tick], ...], oldest first: at
        # most 16 a reply on MicroPython, where a control message must fit a keyed link's wrap
        # limit (runtime DELIVER_MAX); the rest wait for the next poll.
        lat = probe[3]
        n = len(lat) // 4
        if n > (16 if MICROPYTHON else 4096):
            n = 16 if MICROPYTHON else 4096
        m[latency] = [lat[4 * i:4 * i + 4] for i in range(n)]
        probe[3] = lat = lat[4 * n:]     # a new list: the old one's room goes too
        m["latency_waiting"] = len(lat) // 4
        m["latency_dropped"] = probe[4]
    m["pipeline"] = rt.pipeline
    m["epoch"] = rt.epoch
    return m


# The largest free heap block (MicroPython): found by allocating. micropython.mem_info() knows
# it but only prints it. The search starts from the last answer, so a steady heap takes two or
# three allocations: one that fits and one 1/8 larger that does not (a failed allocation runs one
# garbage collection, which also frees the block that fitted).
def largest(device):
    free = gc.mem_free()
    guess = getattr(device, "largest", 0) or free // 2
    lo = 0                # fits
    hi = free + 16        # does not fit
    n = guess
    for _ in range(8):
        if n <= lo or n >= hi:
            n = (lo + hi) // 2
        try:
            b = bytearray(n)
            b = None
            lo = n
            n = n + (n >> 3) + 16
        except MemoryError:
            hi = n
            n = lo + (hi - lo) // 2
        if hi - lo <= (lo >> 3) + 16:
            break
    device.largest = lo      # where the next search starts
    return lo
