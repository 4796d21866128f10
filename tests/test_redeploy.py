"""Redeploying a changed pipeline replaces the old assignment on every device cleanly."""
import json

from procs import free_port
from test_up import N, cli, counting_file


def status(path):
    r = cli("status", path, "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(r.stdout)


def test_redeploy_replaces_every_assignment(tmp_path, devices):
    ports = {n: free_port() for n in "abc"}
    devices("micropython", ["--port", str(ports["a"]), "--name", "a", "--sensors", "counter@1000"])
    devices("cpython", ["--port", str(ports["b"]), "--name", "b", "--sensors", "counter@1000"])
    devices("cpython", ["--port", str(ports["c"]), "--name", "c", "--sensors", ""])
    path = counting_file(tmp_path, local=False, ports=ports)
    assert cli("deploy", path).returncode == 0
    first = status(path)
    # the same file with windows of 20 instead of 10, deployed over the running pipeline
    text = open(path).read().replace("values: 10", "values: 20").replace("w:  {", "w20: {") \
        .replace("input: w,", "input: w20,")
    open(path, "w").write(text)
    r = cli("deploy", path)
    assert r.returncode == 0, r.stdout + r.stderr
    second = status(path)
    for d in "abc":
        assert second[d]["assignment"]["state"] == "running"
        assert second[d]["assignment"]["epoch"] > first[d]["assignment"]["epoch"]
    assert "w20" in second["c"]["assignment"]["steps"] and "w" not in second["c"]["assignment"]["steps"]
    # the new pipeline runs from a fresh start: its sources count to N again and the zip pairs them
    for _ in range(200):
        st = status(path)
        if st["c"]["assignment"]["steps"]["z"]["out"] == N:
            break
    assert st["c"]["assignment"]["steps"]["w20"]["out"] == N // 20
    assert st["c"]["assignment"]["steps"]["z"]["dropped"] == 0
    assert cli("stop", path).returncode == 0
