"""`/metrics`: the store in the Prometheus text format (or OpenMetrics when the scraper asks for
it), through prometheus_client with a custom collector, so Grafana users can scrape a running
`sensormesh up --dashboard`. Counters are the store's reset-corrected totals since the controller
began watching (a device restart does not make them go down); names carry their units
(_seconds, _bytes, _total, _ratio). docs/observability.md lists every name."""
from prometheus_client.core import CollectorRegistry, CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder

PREFIX = "sensormesh_"

# (store counter, metric name without _total, help, scale to the metric's unit)
DEVICE_COUNTERS = (("busy_us", "device_loop_busy_seconds", "Time the device's loop spent working, not waiting in poll", 1e-6),
                   ("wall_us", "device_loop_seconds", "Time the device's loop ran (busy or waiting)", 1e-6),
                   ("cpu_s", "device_cpu_seconds", "CPU time of the device process (CPython devices)", 1.0),
                   ("latency_dropped", "device_latency_samples_dropped",
                    "End-to-end latency samples the device dropped because they were not polled in time", 1.0))
DEVICE_GAUGES = (("busy", "device_busy_ratio", "Share of the last poll interval the device's loop was busy (0..1)"),
                 ("cpu", "device_cpu_ratio", "CPU seconds per second over the last poll interval"),
                 ("heap_free_bytes", "device_heap_free_bytes", "Free heap (MicroPython devices)"),
                 ("heap_largest_bytes", "device_heap_largest_free_bytes", "Largest free heap block (MicroPython devices)"),
                 ("rss_bytes", "device_rss_bytes", "Resident memory of the device process (CPython devices)"),
                 ("offset_s", "device_clock_offset_seconds", "Estimated offset of the device's clock from the controller's"),
                 ("offset_bound_s", "device_clock_offset_bound_seconds", "Error bound of that estimate"))
STEP_COUNTERS = (("in", "step_values_in", "Values that entered the step", 1.0),
                 ("out", "step_values_out", "Values the step emitted", 1.0),
                 ("time_us", "step_time_seconds", "Time spent inside the step, in the calls timed (sampled)", 1e-6),
                 ("timed", "step_timed_calls", "Calls of the step that were timed (time per value = time / calls)", 1.0))
PIPE_COUNTERS = (("values", "pipe_values", "Values that crossed the pipe at this end", 1.0),
                 ("frames", "pipe_frames", "Time frames that crossed the pipe at this end", 1.0),
                 ("bytes", "pipe_bytes", "Bytes that crossed the pipe at this end", 1.0),
                 ("reconnects", "pipe_reconnects", "Times the pipe's connection was made again", 1.0))
PIPE_GAUGES = (("queue", "pipe_queue_values", "Values waiting to be sent"),
               ("rtt_s", "pipe_rtt_seconds", "Round-trip time of the pipe's connection"))


class StoreCollector:

    def __init__(self, store):
        self.store = store

    def collect(self):
        s = self.store
        with s.lock:
            totals = dict(s.totals)
            now = dict(s.now)
            pipes = dict(s.pipes)
            lat_count = dict(s.latency_count)
            lat_sum = dict(s.latency_sum)
            down = set(getattr(s, "down", {}))
        # a device that is down has no current gauges: its last ones would be scraped as if it ran
        now = {k: v for k, v in now.items() if k[1] not in down}
        yield from self._families(totals, now, pipes)
        stats = s.latency_stats()
        m = Metric(PREFIX + "e2e_latency_seconds", "Latency from sensor read to sink, clock offsets corrected "
                   "(quantiles over the last minute)", "summary")
        for sink in sorted(set(lat_count) | set(stats)):
            st = stats.get(sink) or {}
            for q, key in (("0.5", "p50"), ("0.99", "p99")):
                if st.get(key) is not None:
                    m.add_sample(m.name, {"sink": sink, "quantile": q}, st[key])
            m.add_sample(m.name + "_count", {"sink": sink}, lat_count.get(sink, 0))
            m.add_sample(m.name + "_sum", {"sink": sink}, lat_sum.get(sink, 0.0))
        yield m

    def _families(self, totals, now, pipes):
        for key, name, doc, scale in DEVICE_COUNTERS:
            f = CounterMetricFamily(PREFIX + name, doc, labels=["device"])
            for (kind, dev, ent, c), v in sorted(totals.items()):
                if kind == "device" and c == key:
                    f.add_metric([dev], v * scale)
            yield f
        for key, name, doc in DEVICE_GAUGES:
            f = GaugeMetricFamily(PREFIX + name, doc, labels=["device"])
            for (kind, dev, ent, metric), v in sorted(now.items()):
                if kind == "device" and metric == key:
                    f.add_metric([dev], v)
            yield f
        for key, name, doc, scale in STEP_COUNTERS:
            f = CounterMetricFamily(PREFIX + name, doc, labels=["device", "step"])
            for (kind, dev, ent, c), v in sorted(totals.items()):
                if kind == "step" and c == key:
                    f.add_metric([dev, ent], v * scale)
            yield f
        for key, name, doc, scale in PIPE_COUNTERS:
            f = CounterMetricFamily(PREFIX + name, doc, labels=["device", "pipe", "dir", "peer"])
            for (kind, dev, ent, c), v in sorted(totals.items()):
                if kind == "pipe" and c == key:
                    p = pipes.get((dev, ent)) or {}
                    f.add_metric([dev, ent, p.get("dir") or "", p.get("peer") or ""], v * scale)
            yield f
        for key, name, doc in PIPE_GAUGES:
            f = GaugeMetricFamily(PREFIX + name, doc, labels=["device", "pipe", "dir", "peer"])
            for (kind, dev, ent, metric), v in sorted(now.items()):
                if kind == "pipe" and metric == key:
                    p = pipes.get((dev, ent)) or {}
                    f.add_metric([dev, ent, p.get("dir") or "", p.get("peer") or ""], v)
            yield f


def exposition(store, accept=""):
    """(body bytes, content type) of the store's metrics for a scraper sending `accept`."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(store))
    encoder, ctype = choose_encoder(accept)
    return encoder(registry), ctype
