"""status and stop place the pipeline only to know where its steps run (what a down device
takes with it): they place it with the strategy it was deployed with, given as --strategy (deploy
names it in the commands it suggests), else the default one, as up and deploy do."""
import socket

from click.testing import CliRunner

from sensormesh.cli import main
from sensormesh.controller import placement as placement_mod
from sensormesh.controller import runner


def closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def pipeline(tmp_path):
    a, b, c = closed_port(), closed_port(), closed_port()
    path = tmp_path / "p.yaml"
    path.write_text(f"""\
pipeline: two
devices:
  esp-1: {{interpreter: micropython, cpu: 1, memory: 96000, sensors: ["t=temperature@10"], address: "127.0.0.1:{a}"}}
  pi: {{interpreter: cpython, cpu: 4, address: "127.0.0.1:{b}"}}
  pc: {{interpreter: cpython, cpu: 8, address: "127.0.0.1:{c}"}}
steps:
  t: {{type: source, sensor: t}}
  w: {{type: window, time-frame: 1000, agg: mean, input: t}}
sinks:
  out: {{type: print, input: w, on: pc}}
""")
    return str(path)


def placed_with(monkeypatch):
    used = []
    real = placement_mod.place

    def place(model, strategy=None, **kw):
        pl = real(model, strategy, **kw)
        used.append((strategy, pl.strategy))
        return pl
    monkeypatch.setattr(placement_mod, "place", place)
    return used


def test_status_places_with_the_strategy_it_is_given(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = pipeline(tmp_path)
    used = placed_with(monkeypatch)
    r = CliRunner().invoke(main, ["status", path, "--insecure", "--timeout", "1", "--strategy", "edge"])
    assert r.exit_code == 1, r.output           # every device down
    assert used == [("edge", "edge")], used
    assert "esp-1 is down" in r.output and "affected area" in r.output, r.output


def test_status_and_stop_default_to_the_default_strategy(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = pipeline(tmp_path)
    used = placed_with(monkeypatch)
    r = CliRunner().invoke(main, ["status", path, "--insecure", "--timeout", "1"])
    assert r.exit_code == 1, r.output
    assert used == [(None, "optimal")], used
    del used[:]
    CliRunner().invoke(main, ["stop", path, "--insecure", "--timeout", "1", "-s", "central"])
    assert all(u == ("central", "central") for u in used), used


def test_deploy_names_its_strategy_in_the_status_and_stop_it_suggests(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = pipeline(tmp_path)

    class Dep:
        def close(self):
            pass

    def deploy(model, strategy, **kw):
        pl = model.place(strategy)
        return pl, pl.assignments(), Dep()
    monkeypatch.setattr(runner, "deploy", deploy)
    r = CliRunner().invoke(main, ["deploy", path, "--insecure", "--strategy", "edge"])
    assert r.exit_code == 0, r.output
    assert "`sensormesh status %s --strategy edge --insecure`" % path in r.output, r.output
    assert "`sensormesh stop %s --strategy edge --insecure`" % path in r.output, r.output
    r = CliRunner().invoke(main, ["deploy", path, "--insecure"])
    assert "`sensormesh status %s --insecure`" % path in r.output, r.output
