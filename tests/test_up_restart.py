"""`sensormesh up` restarts a local device that is killed, and the supervisor gives it its steps back.

A chain src -> mid -> sink of local devices; mid (CPython or MicroPython) holds the pinned step
`smooth`. It is killed with SIGKILL (by its PID) while values flow; up reports the exit with
the signal, starts it again after the backoff, and values flow at the sink again. Waits are
for values and events, never sleeps. Past its restart limit, up says so and the rest runs on.
"""
import os
import signal
import textwrap
import threading

import pytest

from procs import need_micropython
from sensormesh.controller.local import Restarts, exit_status
from sensormesh.controller.pipeline_file import load_model
from sensormesh.controller import runner

CHAIN = """
pipeline: chain-%(interp)s
devices:
  src:  {interpreter: cpython, sensors: ["counter@200"], local: true}
  mid:  {interpreter: %(interp)s, local: true}
  sink: {interpreter: cpython, local: true}
steps:
  s:      {type: source, sensor: counter, on: src}
  smooth: {type: window, values: 4, agg: sum, input: s, on: mid}
sinks:
  out: {type: callback, input: smooth, on: sink}
"""


def children_running(needle):
    """PIDs of our child processes whose command line holds needle (the device's config file)."""
    me = os.getpid()
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % pid) as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError, IndexError):
            continue
        if ppid == me and needle in cmd:
            out.append(int(pid))
    return out


def run_chain(tmp_path, interp, kills, limit=5):
    """up with the chain; `kills` times: once values flow, kill mid by PID with SIGKILL and
    wait until values flow again (or, past the limit, until up says it gives up)."""
    if interp == "micropython":
        need_micropython()
    f = tmp_path / "chain.yaml"
    f.write_text(textwrap.dedent(CHAIN % {"interp": interp}))
    model = load_model(str(f))
    events, values = [], []
    lock = threading.Lock()
    # answered: how many times up reported mid back after a kill; after: values delivered since
    # the last of those reports (values in flight when mid died may still arrive before it)
    # seen: the last values of `after` when the run was told to stop
    state = {"killed": 0, "mark": None, "after": [], "answered": 0, "seen": None}

    def on_event(text):
        with lock:
            events.append(text)
            if "mid answers again" in text:
                state["answered"] += 1
                state["after"] = []

    def on_deliver(device, step, vals):
        with lock:
            values.extend(vals)
            if state["mark"] is not None:
                state["after"].extend(vals)

    def back():
        # mid is back and values newer than the last one before the kill reach the sink (the
        # first ones after a restart may be recomputed from readings the source sent again)
        after = state["after"]
        return (state["answered"] >= state["killed"] and len(after) >= 5
                and after[-1] > values[state["mark"] - 1])

    def until():
        with lock:
            text = "\n".join(events)
            if state["killed"] < kills:
                # values flow (again) after the previous kill: kill mid once more
                if len(values) >= 10 and (state["killed"] == 0 or back()):
                    pids = children_running("/mid.json")
                    if len(pids) != 1:          # restarted but not yet listed: look again next turn
                        return False
                    os.kill(pids[0], signal.SIGKILL)
                    state["killed"] += 1
                    state["mark"] = len(values)
                    state["after"] = []
                return False
            if kills > limit:
                return "not restarting it again" in text
            if back():
                # what the sink had when up was told to stop: stopping flushes mid's open window,
                # a shorter last sum that may be smaller than the last one before the kill
                state["seen"] = list(state["after"][-5:])
                return True
            return False
    lines = []

    def on_line(device, line):
        with lock:
            lines.append("%s| %s" % (device, line))
    runner.up(model, duration=90, until=until, on_event=on_event, on_deliver=on_deliver,
              on_line=on_line, keys_dir=str(tmp_path / "keys"), timeout=5.0, restarts=limit)
    # what the devices said, after the events, for a failing assertion's message
    events.append("-- the devices' last lines:\n" + "\n".join(lines[-60:]))
    return events, values, state


@pytest.mark.parametrize("interp", ["cpython", "micropython"])
def test_killed_middle_device_is_restarted_and_gets_its_steps_back(tmp_path, interp):
    events, values, state = run_chain(tmp_path, interp, kills=1)
    text = "\n".join(events)
    assert state["killed"] == 1, text
    assert "mid exited (killed by SIGKILL); restarting in 0.5 s (restart 1 of 5)" in text, text
    assert "mid listens again" in text, text
    assert "step smooth is pinned to mid: waiting for it" in text, text
    # its own assignment again, at the running epoch: nothing else is stopped for it
    assert "mid answers again" in text and "deployed mid again at epoch" in text, text
    assert "redeployed" not in text, text
    assert "stopping (until)" in text, text
    assert "no placement fits" not in text, text
    # values reach the sink again after the restart: sums of 4 consecutive counter readings
    after = state.get("seen") or []
    assert len(after) == 5 and all(isinstance(v, int) for v in after), state
    assert after[-1] > values[state["mark"] - 1], (values, state)     # newer readings than before the kill


def test_restart_limit_reached_rest_keeps_running(tmp_path):
    events, values, state = run_chain(tmp_path, "cpython", kills=3, limit=2)
    text = "\n".join(events)
    assert "restart 1 of 2" in text and "restart 2 of 2" in text, text
    assert "mid exited (killed by SIGKILL); it restarted 2 times within 60 s: not restarting it again; " \
           "the rest keeps running" in text, text
    assert "stopping (until)" in text, text


def test_restart_backoff_and_limit_decisions():
    r = Restarts(first=0.5, most=4.0, limit=5, window=60.0)
    got = [r.next(t) for t in (0, 1, 2, 3, 4)]
    assert got == [(0.5, 1), (1.0, 2), (2.0, 3), (4.0, 4), (4.0, 5)]
    assert r.next(5) is None                       # the limit within the window
    assert r.next(60.5) == (4.0, 5)                # the first restart left the window
    assert exit_status(-9) == "killed by SIGKILL" and exit_status(3) == "exit code 3"
