# The controller's commands refuse contradicting or bad options before anything starts, with
# the words the other commands use (exit status 2 for a usage error).
import textwrap

from click.testing import CliRunner

from sensormesh.cli import main

LOCAL = textwrap.dedent("""\
    pipeline: loc
    devices:
      a: {sensors: ["counter@5"], local: true}
    steps:
      t: {type: source, sensor: counter}
    sinks:
      o: {type: callback, input: t}
    """)


def test_up_refuses_insecure_with_keys_as_deploy_status_stop_and_top_do(tmp_path, monkeypatch):
    # up used to run the devices in plaintext and leave --keys unused without a word
    monkeypatch.chdir(tmp_path)
    (tmp_path / "loc.yaml").write_text(LOCAL)
    for command in ("up", "deploy", "status", "stop"):
        more = ["--duration", "1"] if command == "up" else []      # (old code: a short run, not one until Ctrl-C)
        r = CliRunner().invoke(main, [command, "loc.yaml", "--insecure", "--keys", "store"] + more)
        assert r.exit_code == 2, (command, r.output)
        assert "give it or --keys, not both" in r.output, (command, r.output)
    assert not (tmp_path / ".sensormesh").exists()      # nothing was started or written


def test_pipeline_up_refuses_insecure_with_keys_dir_before_starting(tmp_path, monkeypatch):
    import pytest
    from sensormesh.api import PipelineError, load
    monkeypatch.chdir(tmp_path)
    (tmp_path / "loc.yaml").write_text(LOCAL)
    with pytest.raises(PipelineError, match="insecure: runs the local devices without keys, so keys_dir 'store' "
                                            "would go unused; give one of them, not both"):
        load("loc.yaml").up(duration=1, insecure=True, keys_dir="store")


REGISTERING = textwrap.dedent("""\
    pipeline: reg
    devices:
      a: {sensors: ["counter@5"], address: "127.0.0.1:1"}
      b: {address: "127.0.0.1:2"}
    network:
      controller: [lan]
      domains:
        lan: [b]
        hidden: [a]
      links:
        - {from: hidden, to: lan}
    steps:
      t: {type: source, sensor: counter}
    sinks:
      o: {type: callback, input: t, on: b}
    """)


def test_a_device_that_must_register_is_not_called_down_when_nothing_takes_registrations(tmp_path, monkeypatch):
    # without --listen, status said "a is down: it does not answer", stop "a has not registered"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "reg.yaml").write_text(REGISTERING)
    said = ("a has not registered with the controller (it dials out to register, and nothing listens for "
            "registrations here: give --listen HOST:PORT, the address it registers at)")
    r = CliRunner().invoke(main, ["status", "reg.yaml", "--insecure", "--timeout", "1"])
    assert r.exit_code == 1
    line = next(ln for ln in r.output.splitlines() if ln.startswith("a: "))
    assert line.startswith("a: UNREACHABLE (cannot reach a (register: controller -> a") and said in line, r.output
    assert "a is down: it does not answer" not in r.output
    r = CliRunner().invoke(main, ["stop", "reg.yaml", "--insecure", "--timeout", "1"])
    assert r.exit_code == 1 and said in r.output, r.output
