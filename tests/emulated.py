"""Helpers for the emulated-network tests (loopback in tests/test_emulation.py, namespaces in
tests/netns/test_emulated_network.py): a round-trip pipeline between two devices, runs of
`sensormesh up --network`, and what a run recorded in .sensormesh/."""
import glob
import json
import os
import signal
import statistics
import subprocess
import sys

from procs import Proc
from sensormesh.controller import runner
from sensormesh.controller.pipeline_file import load_model
from sensormesh.netlab import state

# a's clock goes to b and comes back to a, which says how long the trip took (both CPython:
# one monotonic clock on this machine)
RTT_STEPS = ("import time\n"
             "def same(v):\n    return v\n"
             "def age(v):\n    return time.monotonic_ns() // 1000 - v\n")

# a and b in one domain `lan` with the controller; srv in `cloud`, dialed from lan only
NETWORK = {"controller": ["lan"], "domains": {"lan": ["a", "b"], "cloud": ["srv"]},
           "links": [{"from": "lan", "to": "cloud"}]}


def rtt_file(tmp_path, rate=20, with_cloud=False):
    (tmp_path / "rtt_steps.py").write_text(RTT_STEPS)
    devices = {"a": {"interpreter": "cpython", "sensors": ["clock@%d" % rate], "local": True},
               "b": {"interpreter": "cpython", "local": True}}
    network = dict(NETWORK)
    if with_cloud:
        devices["srv"] = {"interpreter": "cpython", "sensors": ["counter@5"], "local": True}
    else:
        network = {"controller": ["lan"], "domains": {"lan": ["a", "b"]}}
    doc = {"pipeline": "rtt", "devices": devices, "network": network,
           "steps": {"t": {"type": "source", "sensor": "clock", "on": "a"},
                     "there": {"type": "map", "fn": "rtt_steps.py:same", "input": "t", "on": "b"},
                     "back": {"type": "map", "fn": "rtt_steps.py:age", "input": "there", "on": "a"}},
           "sinks": {"rtt": {"type": "callback", "input": "back", "on": "a"}}}
    if with_cloud:
        doc["steps"]["n"] = {"type": "source", "sensor": "counter", "on": "srv"}
        doc["sinks"]["far"] = {"type": "callback", "input": "n", "on": "b"}
    path = tmp_path / "rtt.yaml"
    path.write_text(json.dumps(doc))
    return str(path)


def measure_rtt(tmp_path, specs, mode, count=30, insecure=True, during=None):
    """Run the round-trip pipeline under `specs`; returns (round trips in seconds without the
    first 5, events, what the run recorded while it ran)."""
    model = load_model(rtt_file(tmp_path))
    got, events, seen = [], [], {}

    def deliver(device, step, values):
        got.extend(values)

    def deployed(placement, asg):
        seen.update(recorded(str(tmp_path)))
        if during:
            during(model)
    runner.up(model, "optimal", count=count, on_deliver=deliver, on_event=events.append,
              on_deployed=deployed, insecure=insecure, network=specs, network_mode=mode, timeout=10.0)
    assert len(got) >= count, events
    return [v / 1e6 for v in got[5:]], events, seen


def recorded(workdir):
    """{"namespaces": [...], "processes": [...], "files": [...]} of every run recorded in workdir."""
    out = {"namespaces": [], "processes": [], "files": []}
    for path in glob.glob(os.path.join(workdir, state.STATE_DIR, state.PATTERN)):
        with open(path) as f:
            data = json.load(f)
        for k in out:
            out[k] += data.get(k) or []
    return out


def gone(rec):
    """What of a record still exists: [description, ...] (empty: everything was removed)."""
    left = ["process %d (%s)" % (p["pid"], p["what"]) for p in rec["processes"] if state.same_process(p)]
    left += ["file " + f for f in rec["files"] if os.path.exists(f)]
    if rec["namespaces"]:
        names = set(subprocess.run(["ip", "netns", "list"], capture_output=True,
                                   text=True).stdout.split())
        left += ["namespace " + n for n in rec["namespaces"] if n in names]
    return left


def start_up(tmp_path, file, *args):
    """`sensormesh up FILE ARGS...` as a process in tmp_path, returned once it runs."""
    p = Proc([sys.executable, "-m", "sensormesh.cli", "up", file, "--insecure", "--quiet-devices"]
             + list(args), cwd=str(tmp_path))
    p.wait_line("running", timeout=60)
    return p


NOTHING = {"namespaces": [], "processes": [], "files": []}


def stop_with(tmp_path, mode, sig):
    """Start `sensormesh up --network` in mode, send it `sig` once it runs; returns what the
    run had recorded (read while it ran)."""
    run = start_up(tmp_path, rtt_file(tmp_path), "--network", "lan:delay=5ms", "--network-mode", mode)
    try:
        rec = recorded(str(tmp_path))
        run.wait_line("rtt  ")           # values flow: the controller is watching
        os.kill(run.p.pid, sig)
        code = run.p.wait(60)
    finally:
        run.stop()
    assert code == (0 if sig == signal.SIGINT else -sig)
    return rec


def next_run_cleans(tmp_path, mode, rec):
    """A second run in the same directory removes what the first one left; nothing remains."""
    second = start_up(tmp_path, rtt_file(tmp_path), "--network", "lan:delay=5ms", "--network-mode",
                      mode, "--duration", "1")
    try:
        second.wait_line("removed what an earlier run left behind")
        assert second.p.wait(60) == 0
    finally:
        second.stop()
    assert gone(rec) == []
    assert recorded(str(tmp_path)) == NOTHING


def median(xs):
    return statistics.median(xs)

