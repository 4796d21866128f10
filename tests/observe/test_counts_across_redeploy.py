"""The metrics of a run keep every value across a re-route: a redeployment resets the counts of
the devices it stops (the new epoch counts from zero), so what they counted between their last
poll and the stop must reach the store before that (their metrics asked just before the stop,
the stop's final counts after it). Before, an experiment whose relay failed and was re-routed
reported fewer values in and out than the sinks had received (about 10% at two polls a second).

Loopback, CPython devices: a source behind two gateways, the relaying one killed by PID."""
import textwrap

from procs import Recorder, free_port
from sensormesh.controller.experiment.measures import increase
from sensormesh.controller.observe.run import Observation
from sensormesh.controller.pipeline_file import load_model
from sensormesh.controller.supervisor import Supervisor

PIPELINE = """
pipeline: rc
devices:
  esp: {sensors: [counter], address: "127.0.0.1:%(esp)d"}
  gwa: {address: "127.0.0.1:%(gwa)d"}
  gwb: {address: "127.0.0.1:%(gwb)d"}
  pc:  {address: "127.0.0.1:%(pc)d"}
network:
  controller: [office]
  domains:
    field: [esp, gwa, gwb]
    office: [gwa, gwb, pc]
steps:
  s: {type: source, sensor: counter, rate: 300, on: esp}
sinks:
  k: {type: callback, input: s, on: pc, name: out}
"""


class Samples:
    """A store writer that keeps every counter sample: (t, value) per (kind, device, entity, metric)."""

    def __init__(self):
        self.points = {}

    def sample(self, t, kind, dev, entity, metric, value):
        self.points.setdefault((kind, dev, entity, metric), []).append((t, value))

    def latency(self, *a):
        pass

    def event(self, *a):
        pass

    def close(self):
        pass


def counted(points, final):
    """All a step counted over the run, from its samples (the first one counts from zero: the
    deployment's counts start there) and its count when the last deployment stopped."""
    pts = sorted(points)
    return pts[0][1] + increase(pts)[0] + (final - pts[-1][1])


def test_a_reroute_loses_no_count_of_the_devices_it_redeploys(devices, tmp_path):
    ports = {n: free_port() for n in ("esp", "gwa", "gwb", "pc")}
    procs = {n: devices("cpython", ["--port", str(p), "--name", n, "--sensors", "counter@0"])
             for n, p in ports.items()}
    f = tmp_path / "p.yaml"
    f.write_text(textwrap.dedent(PIPELINE % ports))
    model = load_model(str(f))
    sup = Supervisor(model, "optimal", timeout=3.0, interval=0.3, epoch=1)
    obs = Observation(model, out=False)
    samples = obs.store.writer = Samples()
    rec = Recorder()
    try:
        sup.deploy()
        obs.attach(sup)
        obs.poller.every = 1.0            # one poll a second: a redeploy falls between two polls
        used = sup.placement.pipes[0].route[1]
        state = {}

        def until():
            obs.tick()
            got = rec.got("k")
            if "killed" not in state and len(got) >= 300:
                procs[used].p.kill()
                procs[used].p.wait(10)
                state["killed"] = got[-1]
            # on after the re-route until the new epoch has been polled a few times
            return "killed" in state and sup.reroutes >= 1 and got[-1] >= state["killed"] + 900
        sup.watch(rec.deliver, until, timeout=40, on_event=rec.event)
        assert sup.reroutes == 1 and sup.epoch == 2, rec.events
        redeployed = [e for e in rec.events if e.startswith("redeployed")]
        assert redeployed and "esp" in redeployed[0] and "pc" in redeployed[0], rec.events
        obs.detach()
        final = sup.stop()
        for name, m in sup.pending:          # deliveries that came with the stop replies
            from sensormesh.controller.deploy import dispatch
            dispatch(name, m, rec.deliver, rec.event)
        got = rec.got("k")
        assert got == list(range(len(got))), "lost, repeated or out of order"
        # the source's reads and the sink's values over both epochs, as the metrics counted them
        read = counted(samples.points[("step", "esp", "s", "out")], final["esp"]["steps"]["s"]["out"])
        taken = counted(samples.points[("step", "pc", "k", "in")], final["pc"]["steps"]["k"]["in"])
        assert taken == len(got), (taken, len(got))
        assert read == len(got), (read, len(got))
    finally:
        obs.close()
        sup.close()
