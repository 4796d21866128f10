# Local devices bind a free TCP port themselves and report it; `up` reads the port from the
# device's listening line, so no other process can take a port between a choice and its bind.
import json
import shutil
import socket
import textwrap

import pytest

from sensormesh.client import Client
from sensormesh.controller.local import LocalCluster
from sensormesh.controller.pipeline_file import load_model


@pytest.mark.parametrize("interp", ["cpython", "micropython"])
def test_devices_bind_port_zero_and_report_it(tmp_path, monkeypatch, interp):
    if interp == "micropython" and shutil.which("micropython") is None:
        pytest.skip("the micropython unix port is not installed")
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "ports.yaml"
    path.write_text(textwrap.dedent("""\
        pipeline: ports
        devices:
          a: {interpreter: %s, sensors: [counter], local: true}
          b: {interpreter: %s, sensors: [counter], local: true}
        steps:
          n: {type: source, sensor: counter, on: a}
        sinks:
          out: {type: print, input: n, on: b}
        """) % (interp, interp))
    cl = LocalCluster(load_model(str(path)))
    try:
        cl.start(timeout=60)
        ports = set()
        for name in ("a", "b"):
            host, _, port = cl.tcp[name].rpartition(":")
            assert host == "127.0.0.1" and int(port) > 0, cl.tcp
            ports.add(int(port))
            # the reported port is the device's: it answers a data request there
            c = Client("%s:%s" % (host, port), timeout=10)
            try:
                c.request_data("counter", 0)
                assert c.recv() is not None
            finally:
                c.close()
        assert len(ports) == 2
        with socket.socket() as s:         # the port is really taken
            with pytest.raises(OSError):
                s.bind(("127.0.0.1", ports.pop()))
    finally:
        cl.stop()


def test_a_local_cpython_device_takes_a_connection_from_every_device_of_a_large_fleet(tmp_path):
    # a PC merging 500 boards takes one pipe from each: its listeners must not stop at 256
    from sensormesh.controller.local import LocalCluster
    from sensormesh.controller.pipeline_file import load_model
    lines = ["pipeline: wide", "devices:"] + ["  b%03d: {interpreter: micropython, local: true}" % i
                                              for i in range(500)]
    lines += ["  pc: {interpreter: cpython, sensors: [\"counter@0\"], local: true}", "steps:", "  s: {type: source, sensor: counter, on: pc}",
              "sinks:", "  k: {type: callback, input: s, on: pc}"]
    f = tmp_path / "wide.yaml"
    f.write_text("\n".join(lines) + "\n")
    cluster = LocalCluster(load_model(str(f)))
    cluster.workdir = str(tmp_path)
    cluster._tmp = str(tmp_path)
    cfg = {}

    class Stop(Exception):
        pass

    def capture(name, argv, env, cwd, interp, on_line, **kw):
        cfg.update(json.load(open(argv[argv.index("--config") + 1])))
        raise Stop
    import sensormesh.controller.local as local
    real = local.LocalProcess
    local.LocalProcess = capture
    try:
        try:
            cluster._start_one(cluster.model.devices["pc"])
        except Stop:
            pass
    finally:
        local.LocalProcess = real
        cluster.stop()
    assert cfg["max_conns"] >= 501, cfg
