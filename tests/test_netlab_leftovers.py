"""What the clean-up of an earlier run says it removed: a process recorded by a controller that
was killed is named only when it still ran and was ended; one that had exited by itself (a
shaping relay exits when its controller is gone) is not reported as removed."""
import json
import os
import subprocess
import sys

from sensormesh.netlab import state


def test_cleanup_names_only_the_processes_it_ended(tmp_path):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone_start = state.start_time(gone.pid)
    gone.wait()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        st = None
        while st is None:          # /proc shows the child from its fork on
            st = state.start_time(alive.pid)
        folder = tmp_path / "tmpfiles"
        folder.mkdir()
        record = {"owner": {"pid": 2 ** 22 + 7, "start": 1},       # a controller that no longer runs
                  "namespaces": [], "files": [str(folder)],
                  "processes": [{"pid": gone.pid, "start": gone_start, "what": "shaping relay in a's namespace"},
                                {"pid": alive.pid, "start": st, "what": "device a"}]}
        (tmp_path / state.STATE_DIR).mkdir()
        (tmp_path / state.STATE_DIR / "netlab-4711.json").write_text(json.dumps(record))
        removed = state.cleanup_leftovers(str(tmp_path))
        assert removed == ["process %d (device a)" % alive.pid, "file %s" % folder]
        assert alive.wait(timeout=10) is not None
        assert not folder.exists()
        assert not os.listdir(tmp_path / state.STATE_DIR)
    finally:
        if alive.poll() is None:
            alive.kill()
            alive.wait()
