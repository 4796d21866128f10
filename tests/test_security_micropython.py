"""The device-side security tests (Fernet, handshake) run on the MicroPython unix port."""
import re
import subprocess

import pytest

from procs import ROOT, need_micropython

pytestmark = pytest.mark.micropython


def test_security_device_tests_pass_on_micropython():
    r = subprocess.run([need_micropython(), "tests/mprun.py", "test_fernet", "test_session"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    m = re.search(r"^(\d+) passed, (\d+) failed$", r.stdout, re.M)
    assert m, r.stdout + r.stderr
    passed, failed = int(m.group(1)), int(m.group(2))
    assert failed == 0 and r.returncode == 0, r.stdout + r.stderr
    assert passed >= 25, r.stdout


def test_secure_device_tests_pass_on_micropython():
    """Devices with keys in one loop (tests/device/test_secure_device.py, and the bounds on
    accepted connections of test_secure_accept.py) on the unix port."""
    r = subprocess.run([need_micropython(), "tests/mprun.py", "test_secure_device", "test_secure_accept"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    m = re.search(r"^(\d+) passed, (\d+) failed$", r.stdout, re.M)
    assert m, r.stdout + r.stderr
    assert int(m.group(2)) == 0 and r.returncode == 0, r.stdout + r.stderr
    assert int(m.group(1)) >= 30, r.stdout
