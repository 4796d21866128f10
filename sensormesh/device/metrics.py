# The device's answer to {"metrics": {}} (docs/observability.md); core.py answers {"clock"}.
# Loaded for a reply and unloaded after it on MicroPython (core.Device.dispatch, through control.py).
#
# Everything here is read when the controller asks, so it costs nothing between polls: the
# counters it reports are kept by the loop (time waiting in poll), the steps and pipes (values,
# frames, bytes) and the runtime's probe (sampled step times, latency samples). All counters are
# monotonic; the latency samples are a bounded list handed out (and emptied) by each poll.
import gc
import time

from sensormesh.device.compat import MICROPYTHON, TICK_PERIOD, implementation, ticks_us

# Latency samples per metrics reply at most (the rest wait for the next poll): a reply is a control
# message, which must fit a keyed link's wrap limit (runtime DELIVER_MAX) on MicroPython.
REPLY_LATENCY = 16 if MICROPYTHON else 4096


def report(device):
    """The metrics message M of this device (its format: docs/observability.md)."""
    loop = device.loop
    wall = loop.now() * 1000
    idle = loop.idle_s * 1000000 + loop.idle_us   # time waiting in poll()
    m = {"device": device.name, "interp": implementation(), "tick_us": ticks_us(), "tick_period": TICK_PERIOD,
         "enabled": getattr(device, "metrics", True),
         "loop": {"busy_us": wall - idle if wall > idle else 0, "wall_us": wall}, "mem": memory(device)}
    steps = {}
    pipes = {}
    rt = device.runtime
    latency = []
    dropped = 0
    if rt is not None:
        probe = rt.probe
        times = step_times(probe) if probe is not None else {}
        for sid in rt.order:
            node = rt.nodes[sid]
            try:
                st = node.stats()
            except Exception:
                st = {}
            s = {"in": st.get("in", 0), "out": st.get("out", 0)}
            if probe is not None:     # steps without timed inputs (sources, pipe_in) report 0
                t = times.get(sid) or (0, 0)
                s["time_us"] = t[0]
                s["timed"] = t[1]
            steps[sid] = s
            pm = getattr(node, "pipe_metrics", None)
            if pm is not None:
                pipes[node.edge] = pm()
        if probe is not None:
            latency = drain_latency(probe)
            dropped = probe[4]
            m["latency_waiting"] = len(probe[3]) // 4
        m["pipeline"] = rt.pipeline
        m["epoch"] = rt.epoch
    m["steps"] = steps
    m["pipes"] = pipes
    m["latency"] = latency
    m["latency_dropped"] = dropped
    return m


def step_times(probe):
    """{step id: [own time_us, calls timed]}, summed over each step's timed inputs (the probe
    counts per edge: probe.py, its list's PLAN and COUNTS)."""
    times = {}
    plan = probe[1]
    c = probe[2]
    i = 0
    while i < len(plan):
        e = plan[i + 2]
        for j in range(len(plan[i].outputs)):
            sid = plan[i + 3 + 2 * j].id
            t = times.get(sid)
            if t is None:
                t = times[sid] = [0, 0]
            t[0] += c[e]
            t[1] += c[e + 1]
            e += 2
        i += 3 + 2 * len(plan[i].outputs)
    return times


def drain_latency(probe):
    """The probe's latency samples to report now, [[sink, origin, origin tick, sink tick], ...]
    (at most REPLY_LATENCY, oldest first); the rest wait for the next poll."""
    lat = probe[3]
    n = len(lat) // 4
    if n > REPLY_LATENCY:
        n = REPLY_LATENCY
    out = [lat[4 * i:4 * i + 4] for i in range(n)]
    del lat[0:4 * n]
    return out


def memory(device):
    if MICROPYTHON:
        return {"heap_free": gc.mem_free(), "heap_alloc": gc.mem_alloc(), "heap_largest": largest_block(device)}
    out = {"cpu_s": time.process_time()}
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        import os
        out["rss"] = pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        import resource    # not Linux: the peak instead
        out["rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return out


# The largest free heap block (MicroPython): found by allocating. micropython.mem_info() knows
# it but only prints it. The search starts from the last answer, so a steady heap takes two or
# three allocations: one that fits and one 1/8 larger that does not (a failed allocation runs one
# garbage collection, which also frees the block that fitted).
def largest_block(device, tries=8):
    free = gc.mem_free()
    guess = getattr(device, "_largest", 0) or free // 2
    lo = 0                # fits
    hi = free + 16        # does not fit
    n = guess
    for _ in range(tries):
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
    device._largest = lo
    return lo
