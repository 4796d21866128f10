"""100 boards under `sensormesh up`: every board's values reach the sink, nothing is declared
failed that did not fail, and a board killed with SIGKILL is detected, reported and taken back.

Each board is a MicroPython unix-port process windowing its simulated temperature (one reading
a second, mean of two); one CPython PC merges all 100 into a callback sink. That every board's
values arrive is read from the PC's own counters: each of its 100 pipe inputs has counted
values (its status, which the supervisor polls while watching), before the kill and again after
the killed board was given its steps back. Before the kill the controller stops reading for
longer than a poll's deadline (as on a busy machine): no device may be declared failed for it.
Waits are for values, events and counters, each bounded; the one sleep is that stall.
"""
import os
import re
import signal
import threading
import time

from procs import need_micropython
from sensormesh.controller import runner
from sensormesh.controller.pipeline_file import load_model
from test_up_restart import children_running

N = 100


def fleet_yaml(n, rate=1, window=2):
    """n boards windowing their temperature (rate readings a second, mean of `window`), a PC
    merging them into one callback sink (benchmarks/bench_scale.py runs the same)."""
    lines = ["pipeline: fleet-%d" % n, "devices:"]
    for i in range(n):
        lines.append('  b%03d: {interpreter: micropython, sensors: ["temperature@%s"], local: true}' % (i, rate))
    lines.append("  pc: {interpreter: cpython, local: true}")
    lines.append("steps:")
    for i in range(n):
        lines.append("  t%03d: {type: source, sensor: temperature, on: b%03d}" % (i, i))
        lines.append("  w%03d: {type: window, values: %d, agg: mean, input: t%03d, on: b%03d}" % (i, window, i, i))
    lines.append("  all: {type: merge, inputs: [%s], on: pc}" % ", ".join("w%03d" % i for i in range(n)))
    lines.append("sinks:")
    lines.append("  out: {type: callback, input: all, on: pc}")
    return "\n".join(lines) + "\n"


def pc_inputs(sup):
    """{pipe input on the PC: values it counted}, from the PC's last status reply."""
    st = sup.last_status.get("pc") or {}
    steps = (st.get("assignment") or {}).get("steps") or {}
    return {k: s.get("in", 0) for k, s in steps.items() if k.startswith("in:") and isinstance(s, dict)}


def test_100_boards_under_up_all_values_arrive_and_a_killed_board_is_found(tmp_path, monkeypatch):
    need_micropython()
    f = tmp_path / "fleet.yaml"
    f.write_text(fleet_yaml(N))
    model = load_model(str(f))
    victim = "b%03d" % (N // 2)
    lock = threading.Lock()
    events, values = [], []
    st = {"sup": None, "phase": "flowing", "epoch": None}
    real_deploy = runner.deploy

    def deploy(*a, **kw):                 # the test keeps a handle on up's supervisor
        out = real_deploy(*a, **kw)
        st["sup"] = out[2]
        return out
    monkeypatch.setattr(runner, "deploy", deploy)

    def on_event(text):
        with lock:
            events.append(text)

    def on_deliver(device, step, vals):
        with lock:
            values.extend(vals)

    def all_inputs_counted(sup):
        ins = pc_inputs(sup)
        return len(ins) == N and all(n > 0 for n in ins.values())

    def until():
        sup = st["sup"]
        if sup is None:
            return False
        with lock:
            text = "\n".join(events)
            if st["phase"] == "flowing":
                if all_inputs_counted(sup):
                    st["before"] = dict(pc_inputs(sup))
                    # the controller stops reading for longer than a poll's deadline (a busy
                    # machine, a long pause): that sleep is the scenario, not a wait for something
                    time.sleep(sup.detector.deadline() + 1.0)
                    sup.last_status.pop("pc", None)
                    st["phase"] = "stalled"
                return False
            if st["phase"] == "stalled":
                if all_inputs_counted(sup):              # the PC answered a poll after the stall
                    st["stalls"] = sup.detector.counts["stalls"]
                    pids = children_running("/%s.json" % victim)
                    assert len(pids) == 1, pids
                    os.kill(pids[0], signal.SIGKILL)
                    st["killed_at"] = time.monotonic()
                    st["phase"] = "killed"
                return False
            if st["phase"] == "killed":
                after = text.split("%s failed" % victim, 1)[1] if "%s failed" % victim in text else ""
                # the board alone gets its steps back (the PC runs on), or everything at a new epoch
                if "deployed %s again" % victim in after or "redeployed" in after:
                    st["phase"] = "back"
                    st["epoch"] = sup.epoch
                    # the board's input on the PC must count values again from here
                    st["victim_in"] = {k: n for k, n in pc_inputs(sup).items() if k.startswith("in:w%03d" % (N // 2))
                                       and "deployed %s again" % victim in after}
                    assert st["victim_in"] or "redeployed" in after, pc_inputs(sup)
                    sup.last_status.pop("pc", None)      # counters after the board came back only
                return False
            if st["phase"] == "back":
                pc = sup.last_status.get("pc") or {}
                grew = all(pc_inputs(sup).get(k, 0) > n for k, n in st["victim_in"].items())
                if (pc.get("assignment") or {}).get("epoch") == st["epoch"] and all_inputs_counted(sup) and grew:
                    st["phase"] = "done"
                    return True
        return False

    t0 = time.monotonic()
    final = runner.up(model, duration=240, until=until, on_event=on_event, on_deliver=on_deliver,
                      keys_dir=str(tmp_path / "keys"), timeout=10.0)
    took = time.monotonic() - t0
    text = "\n".join(events)
    assert st["phase"] == "done", (st["phase"], text[-3000:])
    assert "stopping (until)" in text, text[-3000:]
    # the kill is reported by up (the process) and found by the supervisor (its control session)
    assert "%s exited (killed by SIGKILL)" % victim in text, text[-3000:]
    failed = [ln for ln in events if re.match(r"\S+ failed: ", ln)]     # the supervisor's verdicts
    assert failed and all(ln.startswith(victim + " failed: ") for ln in failed), failed
    # nothing else was declared failed; the values came from every board, before and after
    assert len(st["before"]) == N and min(st["before"].values()) > 0
    assert st["stalls"] >= 1                         # the detector saw the controller's stall
    assert len(values) >= N and all(isinstance(v, float) for v in values)
    assert sum(final["pc"]["steps"]["all"].get(k, 0) for k in ("in",)) > 0, final.get("pc")
    print("100 boards: %.1f s in all; %d values at the sink; detector %s" % (
        took, len(values), st["sup"].detector.state()))
