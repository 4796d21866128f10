# Runs the device tests of the steps (filters too) and of shipped code on the MicroPython unix port, so the
# one runtime is checked on both interpreters by one pytest run.
import os
import re
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MICROPYTHON = shutil.which("micropython")


@pytest.mark.micropython
@pytest.mark.skipif(MICROPYTHON is None, reason="the micropython unix port is not installed")
def test_steps_and_shipped_pass_on_micropython():
    proc = subprocess.run(
        [MICROPYTHON, "tests/mprun.py", "test_steps", "test_filters", "test_shipped"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    m = re.search(r"^(\d+) passed, (\d+) failed$", proc.stdout, re.M)
    assert m, out
    passed, failed = int(m.group(1)), int(m.group(2))
    assert failed == 0 and proc.returncode == 0, out
    assert passed > 0, out
    # every test function of both modules ran (none skipped by an import problem)
    names = set(re.findall(r"^ok\s+(\S+)$", proc.stdout, re.M))
    sys.path.insert(0, os.path.join(ROOT, "tests", "device"))
    try:
        import test_filters
        import test_shipped
        import test_steps
    finally:
        sys.path.pop(0)
    for mod in (test_steps, test_filters, test_shipped):
        for attr in dir(mod):
            if attr.startswith("test_"):
                assert mod.__name__ + "." + attr in names, (attr, out)
