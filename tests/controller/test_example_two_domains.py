"""examples/pipelines/two_domains.yaml: plan shows each cross-device pipe's route (who dials
each hop, the relays on the gateway, data against a one-way link) and the control routes; `up`
runs it on this machine, with keys, control of the field board forwarded through the gateway."""
import os
import subprocess
import sys

from click.testing import CliRunner

from procs import ROOT, need_micropython
from sensormesh.controller.model import DEFAULT_HEAP
from sensormesh.controller.pipeline_file import load_model
from sensormesh.controller.plan_cli import plan

EXAMPLE = os.path.join(ROOT, "examples", "pipelines", "two_domains.yaml")


def test_plan_shows_routes_relays_and_control():
    r = CliRunner().invoke(plan, [EXAMPLE, "--strategy", "optimal"])
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()

    def row(pipe):
        found = [ln for ln in lines if ln.startswith(pipe + " ")]
        assert found, "no route row for %s in:\n%s" % (pipe, r.output)
        return " ".join(found[0].split())
    assert row("smooth->pc") == ("smooth->pc esp-1 -> gw -> pc esp-1 dials gw (domain field); "
                                 "gw dials pc (domain office) gw")
    assert row("smooth->srv") == ("smooth->srv esp-1 -> gw -> srv esp-1 dials gw (domain field); "
                                  "gw dials srv (link office->cloud) gw")
    # srv may not dial into the office: pc dials it and the data flows back on that connection
    assert row("outside->pc") == "outside->pc srv -> pc pc dials srv (link office->cloud), data flows back -"
    assert "gateways: gw (field, office)" in r.output
    assert "esp-1: forwarded: controller -> gw -> esp-1" in r.output


def test_assignments_put_the_relays_on_the_gateway():
    model = load_model(EXAMPLE)
    asg = model.place("optimal").assignments(epoch=1)
    gw = {s["id"]: s for s in asg["gw"]["steps"]}
    assert set(gw) == {"in:smooth->pc@1", "out:smooth->pc@2", "in:smooth->srv@1", "out:smooth->srv@2"}
    assert gw["out:smooth->pc@2"]["inputs"] == ["in:smooth->pc@1"]
    # local devices on one host: the dialing ends use the listeners' Unix sockets
    assert gw["out:smooth->srv@2"]["params"]["to"].startswith("unix:")
    pin = [s for s in asg["pc"]["steps"] if s["id"] == "in:outside->pc"][0]
    assert pin["params"]["from"].startswith("unix:") and "to" not in \
        [s for s in asg["srv"]["steps"] if s["id"] == "out:outside->pc"][0]["params"]


def test_up_runs_the_example_on_this_machine():
    need_micropython()
    env = dict(os.environ, PYTHONPATH=ROOT, PYTHONUNBUFFERED="1")
    r = subprocess.run([sys.executable, "-m", "sensormesh.cli", "up", EXAMPLE, "--count", "3", "--quiet-devices"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "esp-1 (micropython, heap %s), gw (cpython), pc (cpython), srv (cpython)" % DEFAULT_HEAP in r.stdout
    # secure by default, also for esp-1, whose control is forwarded through gw (end to end)
    assert "secure: the local devices use keys" in r.stdout and "running without keys" not in r.stdout
    values = [ln for ln in r.stdout.splitlines() if ln.startswith("climate ")]
    assert len(values) >= 3 and '"warmer"' in values[0]
    relay = [ln for ln in r.stdout.splitlines() if ln.strip().startswith("gw:")][0]
    assert "out:smooth->pc@2" in relay
