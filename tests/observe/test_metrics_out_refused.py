"""A --metrics-out that cannot be used (a name without a known ending, a folder that cannot be
made, another program's database) is a usage error: `up`, `top` and `status --watch` refuse it
with exit status 2 naming the option, before any device starts or is asked. Before, they exited
with status 1, as for a failure while running."""
import sqlite3

import pytest
from click.testing import CliRunner

from sensormesh.cli import main

FILE = """\
pipeline: refused
devices:
  a: {interpreter: cpython, sensors: ["counter@20"], local: true, address: "127.0.0.1:9"}
steps:
  n: {type: source, sensor: counter}
sinks:
  got: {type: callback, input: n}
"""


@pytest.mark.parametrize("command", [["up", "--duration", "1", "--insecure"], ["top", "--duration", "1", "--insecure"],
                                     ["status", "--watch", "--duration", "1", "--insecure"]])
def test_an_unusable_metrics_out_is_a_usage_error(tmp_path, command, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.yaml").write_text(FILE)
    (tmp_path / "afile").write_text("x")
    other = tmp_path / "other.db"
    db = sqlite3.connect(str(other))
    db.execute("create table readings (t real)")
    db.commit()
    db.close()
    for out, says in [(str(tmp_path / "afile" / "sub" / "m.sqlite"), "afile is a file, not a folder"),
                      (str(tmp_path / "m.txt"), "use a name ending in .sqlite"),
                      (str(other), "a database with other tables (readings)")]:
        r = CliRunner().invoke(main, [command[0], "p.yaml"] + command[1:] + ["--metrics-out", out])
        assert r.exit_code == 2, (command, out, r.exit_code, r.output)
        assert "Invalid value for --metrics-out" in r.output and says in r.output, r.output
        assert "starting" not in r.output
    assert not (tmp_path / "m.txt").exists()


@pytest.mark.parametrize("command", [["up", "--duration", "1", "--insecure"], ["top", "--duration", "1", "--insecure"],
                                     ["status", "--watch", "--duration", "1", "--insecure"]])
def test_metrics_out_with_no_metrics_file_is_refused(tmp_path, command, monkeypatch):
    """Both options at once contradict each other; before, --metrics-out was silently ignored
    and the run wrote no file."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.yaml").write_text(FILE)
    r = CliRunner().invoke(main, [command[0], "p.yaml"] + command[1:] + ["--metrics-out", "m.csv",
                                                                         "--no-metrics-file"])
    assert r.exit_code == 2, (r.exit_code, r.output)
    assert "--metrics-out" in r.output and "--no-metrics-file asks for none" in r.output, r.output
    assert "starting" not in r.output
