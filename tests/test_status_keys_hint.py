"""`sensormesh status FILE` without --keys asks a device elsewhere in plaintext; a device that runs
with keys refuses that, and the answer says what to give (before: only the refusal's words)."""
import json
import os
import subprocess
import sys

from click.testing import CliRunner

from procs import ROOT, Proc, free_port
from sensormesh.controller.deploy_cli import status


def keys_cli(cwd, *args):
    r = subprocess.run([sys.executable, "-m", "sensormesh.cli", "keys"] + list(args), cwd=cwd, capture_output=True,
                       text=True, timeout=60, env=dict(os.environ, PYTHONPATH=ROOT))
    assert r.returncode == 0, r.stderr


def test_status_without_keys_names_the_option_a_keyed_device_needs(tmp_path):
    keys_cli(tmp_path, "init")
    keys_cli(tmp_path, "issue", "dev-a", "--role", "device")
    keys_cli(tmp_path, "export", "dev-a", "prov")
    port = free_port()
    path = tmp_path / "p.yaml"
    path.write_text(json.dumps({"pipeline": "p", "devices": {"dev-a": {"address": "127.0.0.1:%d" % port,
                                                                       "sensors": ["counter"]}},
                                "steps": {"n": {"type": "source", "sensor": "counter"}},
                                "sinks": {"o": {"type": "print", "input": "n"}}}))
    w = Proc([sys.executable, "-m", "sensormesh.cli", "worker", "--port", str(port), "--sensors", "counter",
              "--identity", str(tmp_path / "prov" / "identity.json"), "--trust", str(tmp_path / "prov" / "trust.json")])
    try:
        w.wait_line("listening on")
        r = CliRunner().invoke(status, [str(path), "--timeout", "10"])
        assert r.exit_code == 1, r.output
        assert "plaintext-refused" in r.output, r.output
        assert "dev-a runs with keys: give the controller's key store (--keys DIR)" in r.output, r.output
        r = CliRunner().invoke(status, [str(path), "--timeout", "10", "--keys", str(tmp_path / ".sensormesh" / "keys")])
        assert r.exit_code == 0 and "--keys DIR" not in r.output, r.output
    finally:
        w.stop()
