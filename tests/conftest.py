import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "device"))
sys.path.insert(0, os.path.dirname(HERE))

from procs import start_device, free_port  # noqa: E402


@pytest.fixture
def devices():
    """Start device processes; every one is stopped (by its PID) after the test."""
    started = []

    def start(interp, args, heap=None, cwd=None):
        kw = {"heap": heap}
        if cwd:
            kw["cwd"] = cwd
        p = start_device(interp, args, **kw)
        started.append(p)
        return p
    yield start
    for p in started:
        p.stop()


@pytest.fixture
def port():
    return free_port()
