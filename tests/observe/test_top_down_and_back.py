"""What `top` and `status --watch` (poll_rounds) show while a watched device goes down and comes
back: real device processes on loopback, a Supervisor that deployed nothing, as `top` makes one."""
import textwrap
import time

from procs import free_port, restart_on_port
from sensormesh.controller.observe.cli import poll_rounds
from sensormesh.controller.observe.run import Observation
from sensormesh.controller.observe.top import render_text
from sensormesh.controller.pipeline_file import load_model
from sensormesh.controller.supervisor import Supervisor


def test_top_marks_a_device_down_and_watches_it_again_when_it_answers(devices, tmp_path, monkeypatch):
    import sensormesh.controller.observe.cli as cli
    monkeypatch.setattr(cli, "LOOK_AGAIN", 0.2)
    ports = {"a": free_port(), "b": free_port()}
    f = tmp_path / "p.yaml"
    f.write_text(textwrap.dedent("""
        pipeline: back
        devices:
          a: {address: "127.0.0.1:%(a)d", sensors: [counter]}
          b: {address: "127.0.0.1:%(b)d"}
        steps:
          s: {type: source, sensor: counter, rate: 20, on: a}
        sinks:
          k: {type: print, input: s, on: b}
        """ % ports))
    model = load_model(str(f))
    args = lambda n: ["--port", str(ports[n]), "--name", n, "--sensors", "counter"]   # noqa: E731
    dev_a = devices("cpython", args("a"))
    devices("cpython", args("b"))
    obs = Observation(model, out=False)
    sup = Supervisor(model, "optimal", timeout=2.0)
    seen = {"down": None, "back": None}

    def state():
        return obs.store.view()["devices"].get("a", {})

    def round_(st, areas):
        a = state()
        if seen["down"] is None and a.get("busy") is not None:
            dev_a.p.kill()                                    # a goes down while watched
            dev_a.p.wait(10)
            seen["down"] = False
        elif seen["down"] is False and a.get("down"):
            seen["down"] = render_text(obs.store.view())
            restart_on_port(devices, "cpython", args("a"), ports["a"])     # and comes back
        elif seen["down"] and not a.get("down") and a.get("busy") is not None:
            seen["back"] = render_text(obs.store.view())
            raise KeyboardInterrupt                           # as Ctrl-C ends `top`
    try:
        assert poll_rounds(sup, obs, 0.2, 40, round_) == "interrupted", seen
    finally:
        sup.close()
        obs.close()
    row = lambda text: next(l for l in text.splitlines() if l.split() and l.split()[0] == "a")  # noqa: E731
    assert "DOWN" in row(seen["down"]) and "a is down: no answer to a status request" in seen["down"]
    assert "DOWN" not in row(seen["back"]) and "a is down" not in seen["back"]
    assert "%" in row(seen["back"])
