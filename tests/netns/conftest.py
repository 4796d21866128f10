"""Fixtures for the network-namespace tests: `make_lab(topology)` builds a NetLab that is torn
down after the test whatever happens. The tests fail (never skip) where namespaces cannot be
built; see tests/netlab.py."""

import os
import sys

import pytest

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for path in (TESTS, os.path.dirname(TESTS)):
    if path not in sys.path:
        sys.path.insert(0, path)

import netlab  # noqa: E402


@pytest.fixture
def make_lab():
    netlab.require()
    labs = []

    def make(topology, **kw):
        lab = netlab.NetLab(topology, **kw)
        labs.append(lab)
        return lab.start()

    yield make
    errors = []
    for lab in labs:
        try:
            lab.close()
        except Exception as e:  # close every lab even if one fails
            errors.append(e)
    if errors:
        raise errors[0]
