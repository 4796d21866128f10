"""The device test modules (tests/device) run on the MicroPython unix port too."""
import os
import re
import subprocess

from procs import ROOT, need_micropython

CORE = ["test_codec", "test_datarequest", "test_loop", "test_assignment", "test_assignment_parts", "test_schedule",
        "test_metrics"]


def run_mp(modules, heap=None):
    argv = [need_micropython()]
    if heap:
        argv += ["-X", "heapsize=" + heap]
    r = subprocess.run(argv + [os.path.join(ROOT, "tests", "mprun.py")] + modules, cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    m = re.search(r"^(\d+) passed, (\d+) failed$", r.stdout, re.M)
    assert m, r.stdout + r.stderr
    return int(m.group(1)), int(m.group(2)), r


def test_core_device_tests_pass_on_micropython():
    passed, failed, r = run_mp(CORE)
    assert failed == 0 and r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert passed >= 20
    assert "ok   test_metrics.test_a_stopped_device_answers_metrics" in r.stdout   # (a stopped device's metrics)

