"""`deploy`, `status` and `stop` with devices that dial out to the controller (behind a one-way
link): `--listen HOST:PORT` takes their registrations, and `sensormesh worker --register` is such
a device. Before, only `up` and `experiment` (which start their devices) could listen for them:
`deploy` failed with "a has not registered with the controller"."""
import json
import sys

from click.testing import CliRunner

from procs import Proc, free_port
from sensormesh.controller.deploy_cli import deploy, status, stop


def office_to_cloud(tmp_path, port):
    doc = {"pipeline": "reg",
           "devices": {"a": {"interpreter": "cpython", "sensors": ["counter@50"],
                             "address": "127.0.0.1:%d" % port}},
           "network": {"controller": ["cloud"], "domains": {"office": ["a"], "cloud": []},
                       "links": [{"from": "office", "to": "cloud"}]},
           "steps": {"n": {"type": "source", "sensor": "counter", "on": "a"}},
           "sinks": {"got": {"type": "callback", "input": "n", "on": "a"}}}
    path = tmp_path / "reg.yaml"
    path.write_text(json.dumps(doc))
    return str(path)


def test_deploy_status_and_stop_take_the_registration_of_a_worker_that_dials_out(tmp_path):
    listen = "127.0.0.1:%d" % free_port()
    dev_port = free_port()
    path = office_to_cloud(tmp_path, dev_port)
    w = Proc([sys.executable, "-m", "sensormesh.cli", "worker", "--port", str(dev_port), "--name", "a",
              "--sensors", "counter@50", "--register", listen])
    try:
        w.wait_line("listening on")
        cli = CliRunner()
        # without --listen the controller cannot reach it, and says what to give
        r = cli.invoke(deploy, [path, "--insecure", "--timeout", "2"])
        assert r.exit_code == 1 and "give --listen HOST:PORT" in r.output and "not registered" in r.output, r.output
        r = cli.invoke(deploy, [path, "--insecure", "--timeout", "20", "--listen", listen])
        assert r.exit_code == 0, r.output
        assert "deployed and started on 1 device(s)" in r.output, r.output
        # the hint names the options status and stop need, --insecure too (before: left out)
        assert "`sensormesh status %s --listen %s --insecure` shows them" % (path, listen) in r.output, r.output
        assert "`sensormesh stop %s --listen %s --insecure` stops them" % (path, listen) in r.output, r.output
        # a fresh controller waits for the device to register again, then asks it
        r = cli.invoke(status, [path, "--insecure", "--timeout", "20", "--listen", listen])
        assert r.exit_code == 0 and "a: running pipeline reg epoch" in r.output and "n: in" in r.output, r.output
        r = cli.invoke(stop, [path, "--insecure", "--timeout", "20", "--listen", listen])
        assert r.exit_code == 0 and "a: n " in r.output and "got " in r.output, r.output
    finally:
        w.stop()


def test_listen_and_register_addresses_are_checked():
    cli = CliRunner()
    for cmd in (deploy, status, stop):
        r = cli.invoke(cmd, ["/dev/null", "--listen", "unix:/tmp/x"])
        assert r.exit_code == 2 and "TCP HOST:PORT" in r.output, r.output
        r = cli.invoke(cmd, ["/dev/null", "--listen", "127.0.0.1:0"])
        assert r.exit_code == 2 and "port 1..65535" in r.output, r.output
    from sensormesh.cli import main
    r = cli.invoke(main, ["worker", "--register", "nowhere:port"])
    assert r.exit_code == 2 and "bad address 'nowhere:port'" in r.output, r.output


def test_an_address_in_use_for_registrations_is_named(tmp_path):
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    taken = "127.0.0.1:%d" % s.getsockname()[1]
    try:
        path = office_to_cloud(tmp_path, free_port())
        r = CliRunner().invoke(status, [path, "--insecure", "--timeout", "1", "--listen", taken])
        assert r.exit_code == 1 and "cannot listen on %s for registrations: it is in use" % taken in r.output, r.output
    finally:
        s.close()
