"""The ESP32 driver tests (tests/device/test_drivers_*.py) on the MicroPython unix port, with
the simulated hardware of sensormesh/fakehw: the same files pytest runs on CPython."""
import os
import re
import subprocess

import pytest

from procs import ROOT, need_micropython

MODULES = sorted(f[:-3] for f in os.listdir(os.path.join(ROOT, "tests", "device"))
                 if f.startswith("test_drivers_") and f.endswith(".py"))


@pytest.mark.micropython
def test_driver_tests_pass_on_micropython():
    assert len(MODULES) >= 7, MODULES
    r = subprocess.run([need_micropython(), os.path.join(ROOT, "tests", "mprun.py")] + MODULES, cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    m = re.search(r"^(\d+) passed, (\d+) failed$", r.stdout, re.M)
    assert m, r.stdout[-3000:] + r.stderr[-2000:]
    passed, failed = int(m.group(1)), int(m.group(2))
    assert failed == 0 and r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    # every test function of every module ran
    expected = 0
    for mod in MODULES:
        with open(os.path.join(ROOT, "tests", "device", mod + ".py")) as f:
            expected += len(re.findall(r"^def test_", f.read(), re.M))
    assert passed == expected and passed > 0, (passed, expected)
    # the heap-lock proofs really ran under the lock (the unix port has micropython.heap_lock)
    assert "ok   test_drivers_irq.test_co2_handler_allocates_nothing" in r.stdout
    assert "ok   test_drivers_irq.test_rotary_handler_allocates_nothing" in r.stdout
