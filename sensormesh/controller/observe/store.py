"""The controller's time-series store: what the metrics poller hands out, kept for live views and
written to a file.

Feed it with `store.feed(item)` (the poller's subscribe callback): a snapshot
{"t", "device", "metrics": M, "offset", "offset_bound"} or a latency sample
{"t", "sink", "latency_s", "bound_s"} (docs/observability.md describes M). Devices count with
monotonic counters; the store turns them into rates between two snapshots of one device. A
counter that goes down was reset (the device restarted, or a pipeline was redeployed): the
increase is then the new value itself, as Prometheus does, and `totals` stay monotonic across
resets.

Every series keeps its last RING points in memory (live views); every sample also goes to the
writer (files.py) when there is one. Thread-safe: the poller writes from the controller's
thread, the dashboard reads from its own.
"""
import collections
import math
import threading
import time

RING = 600             # points per series in memory: 10 minutes at one poll per second
LATENCY_RING = 20000   # latency samples in memory
LATENCY_WINDOW = 60.0  # seconds of latency samples the percentiles cover
EVENTS = 200           # events kept in memory

# Counters of a snapshot, as (kind, path in M, metric name). Steps and pipes are per entity.
DEVICE_COUNTERS = (("loop", "busy_us"), ("loop", "wall_us"), ("mem", "cpu_s"))
DEVICE_GAUGES = (("mem", "heap_free"), ("mem", "heap_largest"), ("mem", "rss"))
STEP_COUNTERS = ("in", "out", "time_us", "timed")
PIPE_COUNTERS = ("values", "frames", "bytes", "reconnects")
PIPE_GAUGES = ("queue", "rtt_us")
# figures per second or over the last poll: not shown for a device that is down (set_down)
RATES = ("busy", "cpu", "in_per_s", "out_per_s", "values_per_s", "bytes_per_s", "frames_per_s",
         "reconnects_per_s", "delay_s")


def percentile(sorted_values, q):
    """Nearest-rank percentile (q in 0..100) of an ascending list; None when it is empty."""
    if not sorted_values:
        return None
    k = max(0, min(len(sorted_values) - 1, math.ceil(q / 100.0 * len(sorted_values) - 1e-9) - 1))
    return sorted_values[k]


def _num(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool)


class Store:

    def __init__(self, writer=None, ring=RING, clock=time.time):
        self.writer = writer
        self.ring = ring
        self.clock = clock
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.version = 0                  # bumped on every update (live views wait on it)
        self.series = {}                  # (kind, device, entity, metric) -> deque of (t, value)
        self.prev = {}                    # (kind, device, entity, counter) -> (t, raw value)
        self.totals = {}                  # (kind, device, entity, counter) -> increase since start
        self.resets = {}                  # device -> counter resets seen (one per snapshot that had any)
        self._went_down = []
        self.down = {}                    # device -> why the controller counts it as down
        self.now = {}                     # (kind, device, entity, metric) -> latest value
        self.devices = {}                 # device -> {"t", "interp", "offset", "offset_bound", ...}
        self.steps = {}                   # step id -> device
        self.pipes = {}                   # (device, edge) -> {"dir", "peer"}
        self.latencies = collections.deque(maxlen=LATENCY_RING)   # (t, sink, latency_s, bound_s)
        self.latency_count = {}           # sink -> latency samples seen
        self.latency_sum = {}             # sink -> their sum (s)
        self.t_last = None                # the latest time of a snapshot or latency sample fed in
        self.sinks = {}                   # sink -> (t, latest value)
        self.sink_units = {}              # sink -> "temperature [°C]" where the units are known
        self.events = collections.deque(maxlen=EVENTS)
        self.info = {}                    # what the views show about the run (pipeline, placement)

    # -- input -----------------------------------------------------------------------------------

    def feed(self, item):
        """The poller's subscribe callback: a snapshot or a latency sample."""
        if not isinstance(item, dict):
            return
        if "metrics" in item:
            self.snapshot(item)
        elif "latency_s" in item:
            self.latency(item)

    def snapshot(self, snap):
        m = snap.get("metrics")
        dev = snap.get("device") or (m or {}).get("device")
        if not isinstance(m, dict) or not isinstance(dev, str):
            return
        t = snap.get("t")
        t = float(t) if _num(t) else self.clock()
        with self.lock:
            self._now(t)
            self._went_down = []          # counters of this snapshot lower than before (a reset)
            d = self.devices.setdefault(dev, {})
            d["t"] = t
            d["interp"] = m.get("interp", d.get("interp"))
            for k in ("offset", "offset_bound"):
                if _num(snap.get(k)):
                    d[k] = snap[k]
                    self._gauge(t, "device", dev, dev, k + "_s", snap[k])
            loop, mem = m.get("loop") or {}, m.get("mem") or {}
            # a device with its metrics off (--no-metrics) does not time its loop's waits, so its
            # busy_us is its wall time: no figure, rather than a load of 100%
            busy = None if m.get("enabled") is False else \
                self._counter(t, "device", dev, dev, "busy_us", loop.get("busy_us"))
            wall = self._counter(t, "device", dev, dev, "wall_us", loop.get("wall_us"))
            if busy is not None and wall is not None and wall[0] > 0:
                self._gauge(t, "device", dev, dev, "busy", min(1.0, busy[0] / wall[0]))
            # latency samples the device had to drop (its buffer was full between two polls):
            # kept as a counter, so the latency figures say what they are missing
            self._counter(t, "device", dev, dev, "latency_dropped", m.get("latency_dropped"))
            cpu = self._counter(t, "device", dev, dev, "cpu_s", mem.get("cpu_s"))
            if cpu is not None:
                self._gauge(t, "device", dev, dev, "cpu", cpu[1])
            for name in ("heap_free", "heap_largest", "rss"):
                if _num(mem.get(name)):
                    self._gauge(t, "device", dev, dev, name + "_bytes", mem[name])
            for sid, s in (m.get("steps") or {}).items():
                if not isinstance(s, dict):
                    continue
                self.steps[sid] = dev
                inc = {c: self._counter(t, "step", dev, sid, c, s.get(c)) for c in STEP_COUNTERS}
                for c in ("in", "out"):
                    if inc[c] is not None:
                        self._gauge(t, "step", dev, sid, c + "_per_s", inc[c][1])
                if inc["time_us"] is not None:
                    # time_us sums the calls the device timed (a sample): per value = over those
                    # calls; a device that times every call reports no "timed" (then: over "in")
                    per = None
                    if inc["timed"] is not None and inc["timed"][0] > 0:
                        per = inc["time_us"][0] / 1e6 / inc["timed"][0]
                    elif "timed" not in s and inc["in"] is not None and inc["in"][0] > 0:
                        per = inc["time_us"][0] / 1e6 / inc["in"][0]
                    if per is not None:
                        self._gauge(t, "step", dev, sid, "time_per_value_s", per)
                        if inc["in"] is not None:
                            self._gauge(t, "step", dev, sid, "busy", min(1.0, per * inc["in"][1]))
            for edge, p in (m.get("pipes") or {}).items():
                if not isinstance(p, dict):
                    continue
                self.pipes[(dev, edge)] = {"dir": p.get("dir"), "peer": p.get("peer")}
                for c in PIPE_COUNTERS:
                    inc = self._counter(t, "pipe", dev, edge, c, p.get(c))
                    if inc is not None:
                        self._gauge(t, "pipe", dev, edge, c + "_per_s", inc[1])
                if _num(p.get("queue")):
                    self._gauge(t, "pipe", dev, edge, "queue", p["queue"])
                if _num(p.get("rtt_us")):
                    self._gauge(t, "pipe", dev, edge, "rtt_s", p["rtt_us"] / 1e6)
                    self._gauge(t, "pipe", dev, edge, "delay_s", p["rtt_us"] / 2e6)
            if self._went_down:
                # one restart or redeployment resets every counter of the device at once: it is
                # one reset and one event, not one per counter (that would push every other
                # event out of the views)
                self.resets[dev] = self.resets.get(dev, 0) + 1
                shown = ", ".join("%s %s %s -> %s" % x for x in self._went_down[:3])
                more = len(self._went_down) - 3
                self.event("%s: counters reset, counting from zero again (the device restarted or its pipeline was "
                           "redeployed): %s%s"
                           % (dev, shown, " and %d more" % more if more > 0 else ""), t)
            self._bump()

    def latency(self, s):
        lat = s.get("latency_s")
        if not _num(lat):
            return
        t = float(s["t"]) if _num(s.get("t")) else self.clock()
        sink = str(s.get("sink", "?"))
        bound = s.get("bound_s") if _num(s.get("bound_s")) else None
        with self.lock:
            self._now(t)
            self.latencies.append((t, sink, float(lat), bound))
            self.latency_count[sink] = self.latency_count.get(sink, 0) + 1
            self.latency_sum[sink] = self.latency_sum.get(sink, 0.0) + float(lat)
            if self.writer is not None:
                self.writer.latency(t, sink, float(lat), bound)
            self._bump()

    def sink_values(self, sink, values, t=None):
        """The latest values of a callback sink (for the dashboard)."""
        if not values:
            return
        with self.lock:
            self.sinks[sink] = (t if t is not None else self.clock(), values[-1])
            self._bump()

    def event(self, text, t=None):
        t = t if t is not None else self.clock()
        with self.lock:
            self.events.append((t, text))
            if self.writer is not None:
                self.writer.event(t, text)
            self._bump()

    def set_down(self, dev, why):
        """The controller counts dev as down (why: a short sentence) or, with why None, as up
        again. A down device keeps its last counts, but none of its rates: they are not current."""
        with self.lock:
            if self.down.get(dev) == why:
                return
            if why is None:
                self.down.pop(dev, None)
            else:
                self.down[dev] = why
            self._bump()

    def set_info(self, **kv):
        with self.lock:
            self.info.update(kv)
            if self.writer is not None and hasattr(self.writer, "meta"):
                self.writer.meta(**{k: v for k, v in kv.items() if isinstance(v, (str, int, float, list, dict))})
            self._bump()

    def _now(self, t):
        if self.t_last is None or t > self.t_last:
            self.t_last = t

    def _bump(self):
        self.version += 1
        self.changed.notify_all()

    def _counter(self, t, kind, dev, entity, name, raw):
        """Record a monotonic counter; returns (increase, increase per second) since the previous
        snapshot, or None for the first one (or a value that is no number)."""
        if not _num(raw):
            return None
        key = (kind, dev, entity, name)
        if self.writer is not None:
            self.writer.sample(t, kind, dev, entity, name, raw)
        last = self.prev.get(key)
        self.prev[key] = (t, raw)
        if last is None:
            self.totals.setdefault(key, 0)
            return None
        lt, lraw = last
        if raw < lraw:                       # reset: counting started again from zero
            inc = raw
            self._went_down.append((entity, name, lraw, raw))
        else:
            inc = raw - lraw
        self.totals[key] = self.totals.get(key, 0) + inc
        dt = t - lt
        if dt <= 0:
            return None
        return inc, inc / dt

    def _gauge(self, t, kind, dev, entity, name, value):
        key = (kind, dev, entity, name)
        ring = self.series.get(key)
        if ring is None:
            ring = self.series[key] = collections.deque(maxlen=self.ring)
        ring.append((t, value))
        self.now[key] = value
        if self.writer is not None:
            self.writer.sample(t, kind, dev, entity, name, value)

    # -- output ----------------------------------------------------------------------------------

    def wait(self, version, timeout):
        """Block until the store changed after `version` (or timeout s); returns the new version."""
        with self.lock:
            self.changed.wait_for(lambda: self.version != version, timeout)
            return self.version

    def history(self, kind, dev, entity, metric, since=None):
        with self.lock:
            pts = list(self.series.get((kind, dev, entity, metric), ()))
        return [p for p in pts if since is None or p[0] >= since]

    def latency_stats(self, window=LATENCY_WINDOW):
        """{sink: {"p50", "p99", "n", "bound"}} (seconds) over the last `window` s of samples
        (sinks without a sample in that window are absent)."""
        with self.lock:
            if not self.latencies:
                return {}
            # the last `window` seconds up to the latest thing the devices reported (in the time
            # base of the samples): a sink that got no value since is left out, not shown with
            # figures from minutes ago
            end = self.t_last
            per = {}
            for t, sink, lat, bound in self.latencies:
                if t >= end - window:
                    per.setdefault(sink, []).append((lat, bound))
        out = {}
        for sink, vals in per.items():
            lats = sorted(v[0] for v in vals)
            bounds = [v[1] for v in vals if v[1] is not None]
            out[sink] = {"p50": percentile(lats, 50), "p99": percentile(lats, 99), "n": len(lats),
                         "bound": max(bounds) if bounds else None}
        return out

    def latency_history(self, since=None):
        with self.lock:
            return [x for x in self.latencies if since is None or x[0] >= since]

    def view(self):
        """What the live views show, as plain data: devices, steps, pipes, latency, sinks."""
        with self.lock:
            now = self.now

            down = dict(self.down)

            def g(kind, dev, entity, metric):
                if dev in down and metric in RATES:      # a device that is down has no current rate
                    return None
                return now.get((kind, dev, entity, metric))
            devices = {dev: {"t": None, "interp": None, "busy": None, "cpu": None, "heap_free": None,
                             "heap_largest": None, "rss": None, "offset": None, "offset_bound": None,
                             "resets": self.resets.get(dev, 0)} for dev in down}
            for dev, d in self.devices.items():
                devices[dev] = {"t": d.get("t"), "interp": d.get("interp"), "busy": g("device", dev, dev, "busy"),
                                "cpu": g("device", dev, dev, "cpu"),
                                "heap_free": g("device", dev, dev, "heap_free_bytes"),
                                "heap_largest": g("device", dev, dev, "heap_largest_bytes"),
                                "rss": g("device", dev, dev, "rss_bytes"),
                                "offset": d.get("offset"), "offset_bound": d.get("offset_bound"),
                                "resets": self.resets.get(dev, 0),
                                "latency_dropped": self.totals.get(("device", dev, dev, "latency_dropped"))}
            for dev in devices:
                devices[dev]["down"] = down.get(dev)
            steps = {}
            for sid, dev in self.steps.items():
                steps[sid] = {"device": dev, "in_per_s": g("step", dev, sid, "in_per_s"),
                              "out_per_s": g("step", dev, sid, "out_per_s"),
                              "time_per_value_s": g("step", dev, sid, "time_per_value_s"),
                              "busy": g("step", dev, sid, "busy"),
                              "in": self.prev.get(("step", dev, sid, "in"), (0, None))[1],
                              "out": self.prev.get(("step", dev, sid, "out"), (0, None))[1]}
            pipes = []
            for (dev, edge), p in sorted(self.pipes.items(), key=lambda kv: (kv[0][1], kv[0][0])):
                pipes.append({"device": dev, "edge": edge, "dir": p["dir"], "peer": p["peer"],
                              "values_per_s": g("pipe", dev, edge, "values_per_s"),
                              "bytes_per_s": g("pipe", dev, edge, "bytes_per_s"),
                              "frames_per_s": g("pipe", dev, edge, "frames_per_s"),
                              "reconnects": self.totals.get(("pipe", dev, edge, "reconnects")),
                              "queue": g("pipe", dev, edge, "queue"), "delay_s": g("pipe", dev, edge, "delay_s")})
            sinks = {k: {"t": v[0], "value": v[1], "unit": self.sink_units.get(k)} for k, v in self.sinks.items()}
            events = list(self.events)[-20:]
            info = dict(self.info)
            version = self.version
        return {"version": version, "info": info, "devices": devices, "steps": steps, "pipes": pipes,
                "latency": self.latency_stats(), "sinks": sinks, "events": events}

    def close(self):
        with self.lock:
            if self.writer is not None:
                self.writer.close()
                self.writer = None
