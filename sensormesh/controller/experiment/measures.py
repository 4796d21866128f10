"""What one run measured, from the rows the store wrote while it ran (pure: tested without
devices). Only what happened after the warm-up and within the duration counts: a counter's
increase runs from its first sample at or after the warm-up's end to its last sample before the
duration's end; rates divide the run's totals by the measured window, the longest of those
spans (a device that was down for part of it lowers them). (A poll answered late, by a device on a loaded
machine, takes its sample when it answers: one stamped after the duration's end belongs to the
stop, and counting it stretched the window past the duration.)

Counters are monotonic; one that goes down was reset (a restarted device) and counts from zero
again, as the store does (observe/store.py).
"""
from __future__ import annotations

from sensormesh.controller.observe.store import percentile

COUNTERS = {"device": ("busy_us", "wall_us", "cpu_s"), "step": ("in", "out", "time_us", "timed"),
            "pipe": ("values", "frames", "bytes", "reconnects")}


def series(samples, start, end=None):
    """{(kind, device, entity, metric): [(t, value), ...]} of the samples at or after `start`
    (and at or before `end`, if given)."""
    out = {}
    for t, kind, dev, entity, metric, value in samples:
        if t is None or value is None or t < start or (end is not None and t > end):
            continue
        out.setdefault((kind, dev, entity, metric), []).append((t, value))
    for pts in out.values():
        pts.sort()
    return out


def increase(points):
    """(increase, span in s) of a counter's points in time order; resets count from zero."""
    if len(points) < 2:
        return 0.0, 0.0
    inc = 0.0
    for (_, a), (_, b) in zip(points, points[1:]):
        inc += b if b < a else b - a
    return inc, points[-1][0] - points[0][0]


def latency_ms(values_s):
    """{"n", "p50", "p95", "p99"} in ms of latency samples in seconds (None without samples)."""
    xs = sorted(v * 1000.0 for v in values_s)
    return {"n": len(xs), "p50": percentile(xs, 50), "p95": percentile(xs, 95), "p99": percentile(xs, 99)}


def measure(samples, latencies, start, sources, sinks, pipes, interp, end=None):
    """The run's numbers after `start` (Unix s, the end of the warm-up) and, for counters,
    until `end` (Unix s, the end of the duration; None: every later sample).

    samples: (t, kind, device, entity, metric, value) rows; latencies: (t, sink, latency_s,
    bound_s) rows; sources, sinks: step ids; pipes: {(device, edge): {"dir", "peer"}} as the
    store knows them; interp: {device: "cpython"|"micropython"}. Bytes over the network count
    each inter-device pipe once, at its sending end."""
    ser = series(samples, start, end)
    spans = []

    def counter(kind, dev, entity, metric):
        inc, span = increase(ser.get((kind, dev, entity, metric), ()))
        if span > 0:
            spans.append(span)
        return inc, span

    m = {"values_in": 0, "values_out": 0, "values_in_per_s": 0.0, "values_out_per_s": 0.0,
         "bytes": 0, "bytes_per_s": 0.0, "links": {}, "devices": {}}
    step_dev = {}
    for (kind, dev, entity, metric) in ser:
        if kind == "step":
            step_dev.setdefault(entity, set()).add(dev)
    # Totals over the measured window. A step that ran on two devices in turn (moved while one
    # was down, and back) or a device that stopped answering has series shorter than the
    # window: their values count once, and the rates divide the totals by the window, so an
    # outage lowers them instead of being hidden (or counted twice) by per-series rates.
    for sid in sources:
        for dev in sorted(step_dev.get(sid, ())):
            m["values_in"] += counter("step", dev, sid, "out")[0]
    for sid in sinks:
        for dev in sorted(step_dev.get(sid, ())):
            m["values_out"] += counter("step", dev, sid, "in")[0]
    for (dev, edge), p in sorted(pipes.items()):
        if p.get("dir") != "out":
            continue
        inc = counter("pipe", dev, edge, "bytes")[0]
        link = "%s->%s" % (dev, p.get("peer") or "?")
        got = m["links"].setdefault(link, {"bytes": 0, "bytes_per_s": 0.0})
        got["bytes"] += inc
        m["bytes"] += inc
    for dev in sorted(interp):
        busy, _ = counter("device", dev, dev, "busy_us")
        wall, _ = counter("device", dev, dev, "wall_us")
        cpu, span = counter("device", dev, dev, "cpu_s")
        heap = [v for _, v in ser.get(("device", dev, dev, "heap_free_bytes"), ())]
        rss = [v for _, v in ser.get(("device", dev, dev, "rss_bytes"), ())]
        m["devices"][dev] = {"interp": interp[dev], "busy": busy / wall if wall > 0 else None,
                             "cpu": cpu / span if span > 0 else None,
                             "heap_free_min": min(heap) if heap else None, "rss_max": max(rss) if rss else None}
    m["window_s"] = window = max(spans) if spans else 0.0

    def rate(total):
        return total / window if window > 0 else 0.0
    for key in ("values_in", "values_out", "bytes"):
        m[key + "_per_s"] = rate(m[key])
    for got in m["links"].values():
        got["bytes_per_s"] = rate(got["bytes"])
    m["latency"] = latency_ms([lat for t, sink, lat, bound in latencies if t is not None and t >= start])
    bounds = [b for t, sink, lat, b in latencies if t is not None and t >= start and b is not None]
    m["latency"]["bound_ms"] = max(bounds) * 1000.0 if bounds else None
    # latency samples the devices dropped in the window (not polled in time): the percentiles
    # rest on latency_n samples and miss these
    m["latency"]["dropped"] = sum(increase(ser.get(("device", dev, dev, "latency_dropped"), ()))[0]
                                  for dev in sorted(interp))
    return m
