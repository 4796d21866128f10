"""A stand-in device beside a real one, for the controller's tests of odd answers: the stand-in
`a` (a protocol class of the test's, listening on loopback) and the CPython device `b` (a
counter sensor) share one loop, run in a thread; the pipeline file names both."""
import contextlib
import threading

import pytest

from sensormesh.controller.pipeline_file import load_model
from sensormesh.device import boot, transport
from sensormesh.device.core import Device

FILE = """
pipeline: %(name)s
devices:
  a: {address: "%(a)s"}
  b: {sensors: ["counter@0"], address: "%(b)s"}
steps:
  s: {type: source, sensor: counter, rate: 50, on: b}
sinks:
  k: {type: callback, input: s, on: b, name: out}
"""


@contextlib.contextmanager
def standin_and_b(tmp_path, protocol, name):
    """The pipeline model of `a` (answering with `protocol`) and `b`, both serving meanwhile."""
    loop = transport.Loop()
    standin = transport.listen_tcp(loop, "127.0.0.1", 0, protocol)
    b = Device("b", ["counter@0"], loop=loop)
    lst = boot.listen_tcp(b, "127.0.0.1", 0)

    def tick():               # the loop turns at least every 50 ms, so that loop.stop() takes effect
        loop.call_later(50, tick)
    tick()
    t = threading.Thread(target=loop.run, daemon=True)
    t.start()
    f = tmp_path / (name + ".yaml")
    f.write_text(FILE % {"name": name, "a": "127.0.0.1:%d" % standin.sock.getsockname()[1],
                         "b": "127.0.0.1:%d" % lst.sock.getsockname()[1]})
    try:
        yield load_model(str(f))
    finally:
        loop.stop()
        t.join(10)
        standin.close()
        b.close()


def standin_fixture(protocol, name):
    """A pytest fixture giving the model of standin_and_b(protocol) while both serve."""
    @pytest.fixture
    def model(tmp_path):
        with standin_and_b(tmp_path, protocol, name) as m:
            yield m
    return model
