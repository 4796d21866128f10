"""Local devices that `up` starts again, or gives up on.

A local device that `up` gave up restarting stays gone, and the rest runs on without it: a
device that comes back gets its steps again although a step pinned to the gone one cannot be
placed, and whatever answers at the gone device's address later is not that device. On one
machine a device's Unix socket path follows its name, so another `up` in the same directory may
start a device of the same name there; before, the first run's supervisor found it answering at
its next probe (when any other device came back) and deployed its own steps to it, taking
another run's device over. A device restarted after another process took its TCP port listens
on a free one."""
import json
import os

from sensormesh.controller import runner
from sensormesh.controller.pipeline_file import load_model


def children_running(config_name):
    """PIDs of this process's children whose command line names config_name (up's devices)."""
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % pid) as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                cmd = f.read().decode(errors="replace")
        except (OSError, ValueError, IndexError):
            continue
        if ppid == os.getpid() and config_name in cmd:
            out.append(int(pid))
    return out


def test_a_device_up_gave_up_on_is_not_taken_back_at_its_address(tmp_path, monkeypatch, devices):
    monkeypatch.chdir(tmp_path)
    doc = {"pipeline": "gone",
           "devices": {"a": {"interpreter": "cpython", "sensors": ["counter@50"], "local": True},
                       "b": {"interpreter": "cpython", "local": True},
                       "c": {"interpreter": "cpython", "local": True}},
           "steps": {"n": {"type": "source", "sensor": "counter", "on": "a"}},
           "sinks": {"kb": {"type": "callback", "input": "n", "on": "b"},
                     "kc": {"type": "callback", "input": "n", "on": "c"}}}
    (tmp_path / "gone.yaml").write_text(json.dumps(doc))
    model = load_model(str(tmp_path / "gone.yaml"))
    b_path = model.devices["b"].unix_path
    events, got, state = [], {"kb": [], "kc": []}, {"phase": 0}

    def kill(name):
        pids = children_running("/%s.json" % name)
        assert len(pids) == 1, pids
        os.kill(pids[0], 9)

    def until():
        text = "\n".join(events)
        ph = state["phase"]
        if ph == 0 and got["kb"] and got["kc"]:
            kill("b")
            state["phase"] = 1
        elif ph == 1 and "b listens again" in text:
            kill("b")                         # its second exit: past the restart limit of 1
            state["phase"] = 2
        elif ph == 2 and "not restarting it again" in text:
            # another device named b, where a device named b listens on this machine
            state["impostor"] = devices("cpython", ["--port", "0", "--name", "b", "--unix", b_path,
                                                    "--sensors", "counter@0"])
            state["mark"] = len(events)
            state["kc"] = len(got["kc"])
            kill("c")                         # c comes back: the failed devices are probed
            state["phase"] = 3
        elif ph == 3 and "c answers again" in text and "deployed" in text.rpartition("c answers again")[2]:
            state["phase"] = 4
            state["kc"] = len(got["kc"])
        elif ph == 4 and len(got["kc"]) >= state["kc"] + 50:
            return True                       # c's sink gets values again
        return False
    runner.up(model, duration=60, restarts=1, insecure=True, on_event=events.append, until=until,
              on_deliver=lambda device, step, values: got[step].extend(values), timeout=5.0)
    text = "\n".join(events[state.get("mark", 0):])
    assert state["phase"] == 4, text
    # c, back while b is gone for good with a step pinned to it, gets its own steps again (before,
    # the pipeline "could not be placed again" and c ran nothing from then on) ...
    assert "(c back; steps stay where they are (the pipeline cannot be placed again without b:" in text, text
    kc = got["kc"]
    assert kc == list(range(kc[0], kc[0] + len(kc))), "lost, repeated or out of order"
    # ... and the device that answers at b's address is not taken for b
    assert "b answers again" not in text, text
    assert not any("deployed" in line for line in state["impostor"].lines), state["impostor"].lines


def test_a_device_whose_port_was_taken_while_it_was_down_comes_back_on_another(tmp_path, monkeypatch):
    """A local device restarted listens on the port it had, unless another process took it
    meanwhile: then on a free one (the controller and its local peers reach it by its Unix
    socket). Before, it failed to start on every restart ("Address already in use") until up
    gave up on it, and its steps stayed down."""
    import re
    import socket
    from procs import wait_port_bindable
    monkeypatch.chdir(tmp_path)
    doc = {"pipeline": "port",
           "devices": {"a": {"interpreter": "cpython", "sensors": ["counter@50"], "local": True},
                       "b": {"interpreter": "cpython", "local": True}},
           "steps": {"n": {"type": "source", "sensor": "counter", "on": "a"}},
           "sinks": {"k": {"type": "callback", "input": "n", "on": "b"}}}
    (tmp_path / "port.yaml").write_text(json.dumps(doc))
    model = load_model(str(tmp_path / "port.yaml"))
    events, lines, got, state = [], [], [], {"phase": 0}
    squatter = socket.socket()

    def until():
        text = "\n".join(events)
        if state["phase"] == 0 and len(got) >= 20:
            port = int(re.findall(r"device b listening on tcp 127\.0\.0\.1:(\d+)", "\n".join(lines))[-1])
            pids = children_running("/b.json")
            assert len(pids) == 1, pids
            os.kill(pids[0], 9)
            wait_port_bindable(port)          # its socket closes with the process
            squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            squatter.bind(("127.0.0.1", port))
            squatter.listen(1)                # another process listens there now
            state.update(phase=1, port=port, n=len(got))
        elif state["phase"] == 1 and "b listens again" in text and len(got) >= state["n"] + 50:
            return True
        return False
    try:
        runner.up(model, duration=60, insecure=True, on_event=events.append, until=until,
                  on_line=lambda device, line: lines.append(line),
                  on_deliver=lambda device, step, values: got.extend(values), timeout=5.0)
    finally:
        squatter.close()
    text = "\n".join(events)
    assert state["phase"] == 1 and "b listens again" in text, text
    assert "b: its port %d is taken by another process now; it listens on a free one" % state["port"] in text, text
    assert "Address already in use" not in "\n".join(lines)
    assert got == list(range(len(got))), "lost, repeated or out of order"


def test_a_sink_board_back_after_a_crash_is_deployed_alone_and_nothing_is_lost_or_repeated(tmp_path, monkeypatch):
    """A MicroPython board that only hosts a sink is killed (SIGKILL) and started again: it gets
    its own assignment back at the running epoch, and nothing else stops. The source's device
    kept every value the board had not acknowledged and sends it again. Before, the source's
    device and every other sink it fed (here c) were stopped and deployed again at a new epoch
    for it."""
    from procs import need_micropython
    need_micropython()
    monkeypatch.chdir(tmp_path)
    doc = {"pipeline": "leaf",
           "devices": {"a": {"interpreter": "cpython", "sensors": ["counter@100"], "local": True},
                       "b": {"interpreter": "micropython", "local": True},
                       "c": {"interpreter": "cpython", "local": True}},
           "steps": {"n": {"type": "source", "sensor": "counter", "on": "a"}},
           "sinks": {"kb": {"type": "callback", "input": "n", "on": "b"},
                     "kc": {"type": "callback", "input": "n", "on": "c"}}}
    (tmp_path / "leaf.yaml").write_text(json.dumps(doc))
    model = load_model(str(tmp_path / "leaf.yaml"))
    events, got, state = [], {"kb": [], "kc": []}, {"phase": 0}
    first = {}

    def until():
        text = "\n".join(events)
        if state["phase"] == 0 and len(got["kb"]) >= 150:
            pids = children_running("/b.json")
            assert len(pids) == 1, pids
            os.kill(pids[0], 9)
            state["phase"] = 1
        elif state["phase"] == 1 and "b answers again" in text and "deployed" in text.rpartition("b answers again")[2]:
            state.update(phase=2, n=len(got["kb"]))
        elif state["phase"] == 2 and len(got["kb"]) >= state["n"] + 200:
            return True
        return False
    final = runner.up(model, duration=60, insecure=True, on_event=events.append, until=until,
                      on_deployed=lambda pl, asg: first.update(epoch=asg["a"]["epoch"]),
                      on_deliver=lambda device, step, values: got[step].extend(values), timeout=5.0)
    text = "\n".join(events)
    assert state["phase"] == 2, text
    assert "deployed b again at epoch %d, its own assignment" % first["epoch"] in text, text
    assert "redeployed" not in text, text
    # a and c ran on: one deployment, their counts cover the whole run
    assert final["a"]["epoch"] == final["c"]["epoch"] == first["epoch"], final
    read = final["a"]["steps"]["n"]["out"]
    assert final["c"]["steps"]["kc"]["in"] == read and final["c"]["steps"]["in:n->c"].get("duplicates", 0) == 0
    # every value read reached both sinks once, in order, the board's across its crash too
    assert got["kc"] == list(range(read)), "c: lost, repeated or out of order"
    assert got["kb"] == list(range(read)), "b: lost, repeated or out of order"


def test_values_a_sender_let_go_while_a_sink_board_was_down_are_reported_and_counted(tmp_path, monkeypatch):
    """The sink board is killed while its sender's replay buffer (20 values, 500 a second)
    cannot hold the outage: when the board is back and given its own assignment again, the
    overflow is reported (the restarted board has no count of what it had), and the values
    missing at the controller are between the sender's `dropped` (never sent) and `evicted`
    (left the buffer unacknowledged: some of those had reached the controller)."""
    from procs import need_micropython
    need_micropython()
    monkeypatch.chdir(tmp_path)
    doc = {"pipeline": "ovf",
           "devices": {"a": {"interpreter": "cpython", "sensors": ["counter@500"], "local": True},
                       "b": {"interpreter": "micropython", "local": True}},
           "steps": {"n": {"type": "source", "sensor": "counter", "on": "a", "buffer": 20}},
           "sinks": {"kb": {"type": "callback", "input": "n", "on": "b"}}}
    (tmp_path / "ovf.yaml").write_text(json.dumps(doc))
    model = load_model(str(tmp_path / "ovf.yaml"))
    events, got, state = [], [], {"phase": 0}

    def until():
        text = "\n".join(events)
        if state["phase"] == 0 and len(got) >= 200:
            pids = children_running("/b.json")
            assert len(pids) == 1, pids
            os.kill(pids[0], 9)
            state["phase"] = 1
        elif state["phase"] == 1 and "deployed b again" in text:
            state.update(phase=2, n=len(got))
        elif state["phase"] == 2 and len(got) >= state["n"] + 300:
            return True
        return False
    final = runner.up(model, duration=60, insecure=True, on_event=events.append, until=until,
                      on_deliver=lambda device, step, values: got.extend(values), timeout=5.0)
    text = "\n".join(events)
    assert state["phase"] == 2, text
    assert "edge n->b (a -> b): the replay buffer of a overflowed while b was down: " in text, text
    out = final["a"]["steps"]["out:n->b"]
    assert len(got) == len(set(got)) and got == sorted(got), "repeated or out of order"
    missing = got[-1] + 1 - len(got)
    assert out["dropped"] <= missing <= out["evicted"], (missing, out)
    assert missing > 0, "the outage did not overflow the buffer: the test proves nothing"
