"""What `status` and `stop` say of a pipeline that was stopped, and the options that mean
something only with --watch. Before, `status` said "w: empty pipeline P epoch N" of a stopped
pipeline, a second `stop` said "w: nothing ran", and `status --interval 3` without --watch was
taken and ignored."""
import re
import sys

from click.testing import CliRunner

from procs import Proc, free_port
from sensormesh.controller import runner
from sensormesh.controller.deploy_cli import deploy, status, stop

FILE = """\
pipeline: simple
devices:
  w: {interpreter: cpython, sensors: ["counter@20"], address: "127.0.0.1:%d"}
steps:
  n: {type: source, sensor: counter}
sinks:
  got: {type: callback, input: n}
"""


def test_status_and_stop_of_a_stopped_pipeline_say_so(tmp_path):
    port = free_port()
    path = tmp_path / "simple.yaml"
    path.write_text(FILE % port)
    w = Proc([sys.executable, "-m", "sensormesh.cli", "worker", "--port", str(port), "--name", "w",
              "--sensors", "counter@20"])
    try:
        w.wait_line("listening on")
        cli = CliRunner()
        r = cli.invoke(status, [str(path), "--insecure"])
        assert r.exit_code == 0 and r.output.strip() == "w: empty", r.output     # nothing deployed yet
        r = cli.invoke(stop, [str(path), "--insecure"])
        assert r.exit_code == 0 and r.output.strip() == "w: nothing deployed", r.output
        r = cli.invoke(deploy, [str(path), "--insecure"])
        assert r.exit_code == 0, r.output
        epoch = re.search(r"epoch (\d+)", cli.invoke(status, [str(path), "--insecure"]).output).group(1)
        r = cli.invoke(stop, [str(path), "--insecure"])
        assert r.exit_code == 0 and r.output.startswith("w: n "), r.output
        r = cli.invoke(status, [str(path), "--insecure"])
        assert r.exit_code == 0 and r.output.strip() == "w: stopped: pipeline simple epoch %s" % epoch, r.output
        r = cli.invoke(stop, [str(path), "--insecure"])
        assert r.exit_code == 0 and r.output.strip() == "w: already stopped (pipeline simple epoch %s)" % epoch, \
            r.output
    finally:
        w.stop()


def test_summaries_of_many_devices_say_already_stopped_too():
    final = {"d%03d" % i: {"state": "empty", "pipeline": "p", "epoch": 4, "steps": {}} for i in range(30)}
    lines = runner.summary(final)
    assert "d000: already stopped (pipeline p epoch 4)" in lines, lines


def test_watch_only_options_without_watch_are_refused(tmp_path):
    path = tmp_path / "simple.yaml"
    path.write_text(FILE % free_port())
    cli = CliRunner()
    r = cli.invoke(status, [str(path), "--interval", "3"])
    assert r.exit_code == 2 and "--interval works only with --watch" in r.output, r.output
    r = cli.invoke(status, [str(path), "--duration", "3", "--metrics-out", "m.csv"])
    assert r.exit_code == 2 and "--duration, --metrics-out work only with --watch" in r.output, r.output
    r = cli.invoke(deploy, [str(path), "--duration", "3"])
    assert r.exit_code == 2 and "--duration works only with --watch" in r.output, r.output
