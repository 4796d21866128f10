"""A stand-in for the controller's metrics poller: hands out snapshots in the documented shape
(docs/observability.md) built from counters the test advances."""


class FakePoller:

    def __init__(self):
        self.subscribers = []
        self.t = 1000.0

    def subscribe(self, fn):
        self.subscribers.append(fn)

    def send(self, item):
        for fn in self.subscribers:
            fn(item)

    def snapshot(self, device, t, busy_us, wall_us, steps, pipes, interp="cpython", mem=None, offset=0.0002,
                 bound=0.0001):
        m = {"device": device, "interp": interp, "tick_us": int(t * 1e6),
             "loop": {"busy_us": busy_us, "wall_us": wall_us},
             "mem": mem if mem is not None else {"rss": 20_000_000, "cpu_s": busy_us / 1e6},
             "steps": steps, "pipes": pipes, "latency": []}
        self.send({"t": t, "device": device, "metrics": m, "offset": offset, "offset_bound": bound})

    def latency(self, t, sink, latency_s, bound_s=0.0005):
        self.send({"t": t, "sink": sink, "latency_s": latency_s, "bound_s": bound_s})


def pipe(values, nbytes, frames=None, reconnects=0, queue=0, rtt_us=800, direction="out", peer="pc"):
    return {"dir": direction, "peer": peer, "values": values, "frames": frames if frames is not None else values // 10,
            "bytes": nbytes, "reconnects": reconnects, "queue": queue, "rtt_us": rtt_us}


def step(n_in, n_out, time_us=0):
    return {"in": n_in, "out": n_out, "time_us": time_us}
