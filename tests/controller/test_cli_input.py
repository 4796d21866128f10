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
