"""Local devices start in parallel, a bounded number at once: a device slow to start holds up
only its own slot, and one that cannot start stops everything started and is named.

The devices run through a stand-in for the Python interpreter that holds one device back
("slow", until the test lets it go) or fails one ("broken") before running the real one."""
import os
import stat
import sys
import textwrap
import threading
import time

import pytest

from sensormesh.controller import local
from sensormesh.controller.local import LocalCluster, LocalError
from sensormesh.controller.pipeline_file import load_model



def cluster(tmp_path, names):
    wrapper = tmp_path / "python-standin"
    wrapper.write_text(textwrap.dedent("""\
        #!/bin/sh
        # the device's configuration file is named after it
        case "$*" in
          */slow.json*) i=0; while [ ! -e %s ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done ;;
          */broken.json*) echo "broken: cannot start (on purpose)"; exit 3 ;;
        esac
        exec %s "$@"
        """) % (tmp_path / "release", sys.executable))
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    lines = ["pipeline: many", "devices:"]
    lines += ["  %s: {interpreter: cpython, sensors: [counter], local: true}" % n for n in names]
    lines += ["steps:", "  s: {type: source, sensor: counter, on: %s}" % names[0],
              "sinks:", "  out: {type: print, input: s, on: %s}" % names[-1]]
    path = tmp_path / "many.yaml"
    path.write_text("\n".join(lines) + "\n")
    return LocalCluster(load_model(str(path)), python=str(wrapper))


def test_a_slow_device_holds_up_only_its_own_slot(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(local, "PROGRESS_FROM", 1)    # progress lines for these few devices too
    names = ["slow"] + ["d%d" % i for i in range(7)]
    cl = cluster(tmp_path, names)
    progress = []
    out = {}

    def start():
        try:
            out["addresses"] = cl.start(timeout=120, workers=2, progress=progress.append)
        except Exception as e:       # reported by the asserts below
            out["error"] = e
    t = threading.Thread(target=start)
    t.start()
    try:
        # the seven others start through the other slot while the slow one is held in its own
        deadline = time.monotonic() + 90
        while not all(n in cl.procs and cl.procs[n].listening.is_set() for n in names[1:]):
            assert time.monotonic() < deadline and "error" not in out, out
            time.sleep(0.05)     # waits for the devices' listening lines, bounded
        assert not cl.procs["slow"].listening.is_set() and t.is_alive()
        (tmp_path / "release").write_text("go")
        t.join(90)
        assert not t.is_alive() and "error" not in out, out
        assert sorted(cl.tcp) == sorted(names)
        assert max(cl.procs[n].t_listening for n in names[1:]) < cl.procs["slow"].t_listening
        assert progress[-1] == "started 8/8", progress
    finally:
        (tmp_path / "release").write_text("go")
        t.join(90)
        codes = cl.stop()
    assert all(c is not None for c in codes.values()), codes


def test_a_device_that_cannot_start_stops_all_and_is_named(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    names = ["d%d" % i for i in range(4)] + ["broken"] + ["e%d" % i for i in range(4)]
    cl = cluster(tmp_path, names)
    with pytest.raises(LocalError) as e:
        cl.start(timeout=60, workers=3)
    text = str(e.value)
    assert "local device broken" in text and "exited with code 3" in text and "cannot start (on purpose)" in text, text
    # every device started before is stopped (by its PID); the ones after it never started
    assert cl.procs, "nothing was started"
    for name, p in cl.procs.items():
        assert p.proc.poll() is not None, name
    assert set(cl.procs) <= set(names[:5] + names[5:5 + 3])


def test_next_run_removes_the_folder_of_a_killed_controller_only(tmp_path):
    """A controller killed before it stopped leaves its run folder; the next run removes it, and
    nothing else: not a folder without the run's mark, not one whose controller still runs."""
    import subprocess
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()                                   # a process id that no longer runs
    dead = tmp_path / "smdead"
    dead.mkdir()
    (dead / local.RUN_MARK).write_text("%d\n" % gone.pid)
    (dead / "board.json").write_text("{}")
    target = tmp_path / "package"
    target.mkdir()
    (target / "keep.py").write_text("")
    os.symlink(str(target), str(dead / "sensormesh"))
    alive = tmp_path / "smalive"
    alive.mkdir()
    (alive / local.RUN_MARK).write_text("%d\n" % os.getppid())
    unmarked = tmp_path / "smother"
    unmarked.mkdir()
    broken = tmp_path / "smbroken"
    broken.mkdir()
    (broken / local.RUN_MARK).write_text("not a pid")
    assert local.sweep_stale_runs(str(tmp_path)) == [str(dead)]
    assert not dead.exists()
    assert alive.exists() and unmarked.exists() and broken.exists()
    assert (target / "keep.py").exists()          # the link's target stays


def test_a_run_marks_its_folder_and_removes_it_when_stopped(tmp_path):
    cl = cluster(tmp_path, ["a"])
    cl.start(timeout=60)
    try:
        folder = cl._tmp
        with open(os.path.join(folder, local.RUN_MARK)) as f:
            assert int(f.read()) == os.getpid()
    finally:
        cl.stop()
    assert not os.path.exists(folder)


def test_a_micropython_device_stops_through_its_standard_input(tmp_path, monkeypatch):
    """`up` stops a local MicroPython device by closing its standard input: it stops at its next
    loop turn. A SIGINT, the unix port's KeyboardInterrupt, lands wherever the device is, even in
    a garbage collection, which then leaves its heap locked ("MemoryError: ... heap is locked"
    while it stops); that is only the fallback for a device that does not stop in time."""
    from procs import need_micropython
    need_micropython()
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "two.yaml"
    path.write_text(textwrap.dedent("""\
        pipeline: two
        devices:
          board: {interpreter: micropython, sensors: [counter], local: true}
          pc: {interpreter: cpython, sensors: [counter], local: true}
        steps:
          s: {type: source, sensor: counter, on: board}
        sinks:
          out: {type: print, input: s, on: pc}
        """))
    cl = LocalCluster(load_model(str(path)))
    cl.start(timeout=60)
    board = cl.procs["board"]
    t0 = time.monotonic()
    codes = cl.stop(timeout=20)
    took = time.monotonic() - t0
    board._reader.join(5)
    text = "\n".join(board.lines)
    assert codes == {"board": 0, "pc": 0}, (codes, text)
    assert "standard input closed" in text and "stopped" in text, text
    assert "MemoryError" not in text and took < local.LocalProcess.STDIN_STOP_S, (took, text)


def test_stop_names_the_devices_it_had_to_kill(tmp_path):
    """A device that does not stop within the stop's time is killed (SIGKILL): the cluster says
    which, rather than leaving the user an exit code -9 to decode."""
    import signal
    cl = cluster(tmp_path, ["a", "b"])
    notes = []
    cl.on_note = notes.append
    cl.start(timeout=60)
    frozen = cl.procs["a"].proc.pid
    try:
        os.kill(frozen, signal.SIGSTOP)       # it cannot take its SIGTERM
    except BaseException:
        cl.stop()
        raise
    codes = cl.stop(timeout=1)
    assert codes == {"a": -signal.SIGKILL, "b": 0} or codes == {"a": -signal.SIGKILL, "b": -signal.SIGTERM}, codes
    assert cl.killed == ["a"], cl.killed
    said = [n for n in notes if "killed" in n]
    assert said == ["local device a did not stop within 1 s of being asked to: killed (SIGKILL)"], notes
