# Large inventories: the start and placement lines of `up` give counts, -v lists everything.
import types

from sensormesh.controller.deploy_cli import _device_list, _show_plan


def dev(name, interp, heap=None):
    return types.SimpleNamespace(name=name, interpreter=interp, heap=heap)


def test_start_line_counts_a_large_inventory():
    local = [dev("b%d" % i, "micropython", "96K") for i in range(200)] + [dev("pc", "cpython")]
    assert _device_list(local, None, False) == "200 micropython, heap 96K, 1 cpython (-v lists them)"
    full = _device_list(local, None, True)
    assert full.count("micropython") == 200 and "b199 (micropython, heap 96K)" in full
    small = [dev("a", "cpython"), dev("b", "micropython", "128K")]
    assert _device_list(small, None, False) == "a (cpython), b (micropython, heap 128K)"


def test_placement_line_groups_devices_by_what_they_run():
    asg = {"b%d" % i: {"steps": [{"id": "t%d" % i, "type": "source"}, {"id": "w%d" % i, "type": "window"},
                                 {"id": "out:w%d" % i, "type": "pipe_out"}]} for i in range(100)}
    asg["pc"] = {"steps": [{"id": "in", "type": "pipe_in"}, {"id": "m", "type": "merge"},
                           {"id": "out", "type": "callback"}]}
    lines = []
    _show_plan(types.SimpleNamespace(strategy="edge"), asg, lines.append)
    assert lines == ["placement (edge), 101 devices: 100 devices run source, window (b0: t0, w0); "
                     "pc runs m, out (-v lists every device)"], lines
    lines = []
    _show_plan(types.SimpleNamespace(strategy="edge"), asg, lines.append, verbose=True)
    assert "b99 runs t99, w99" in lines[0] and len(lines[0].split("; ")) == 101


def fleet_status():
    run = {"assignment": {"state": "running", "pipeline": "f", "epoch": 3, "steps": {"t": {"in": 5, "out": 5}}}}
    st = {"b%03d" % i: run for i in range(198)}
    st["b198"] = {"error": "b198 is down: it does not answer over direct: controller -> b198"}
    st["b199"] = {"assignment": {"state": "deployed", "pipeline": "f", "epoch": 3, "steps": {}}}
    st["gw"] = run
    st["pc"] = dict(run, errors=2)
    domains = {n: {"boards"} for n in st}
    domains["gw"] = {"boards", "office"}
    domains["pc"] = {"office"}
    return st, domains


def test_status_of_many_devices_counts_per_domain_and_state():
    from sensormesh.controller.deploy_cli import status_counts
    st, domains = fleet_status()
    assert status_counts(st, domains.__getitem__) == [
        "202 devices: 200 running, 1 deployed, 1 down",
        "  boards: 199 running, 1 deployed, 1 down",
        "  office: 2 running"]


def test_status_of_many_devices_shows_counts_and_what_is_not_running(capsys):
    from sensormesh.controller.deploy_cli import _show_status
    st, domains = fleet_status()
    assert _show_status(st, ["b198 is down"], False, False, domains.__getitem__) is True
    out = capsys.readouterr().out.splitlines()
    assert out[:4] == ["202 devices: 200 running, 1 deployed, 1 down", "  boards: 199 running, 1 deployed, 1 down",
                       "  office: 2 running", "(-v lists every device with its steps)"]
    assert out[4:] == ["b198: UNREACHABLE (b198 is down: it does not answer over direct: controller -> b198)",
                       "b199: deployed pipeline f epoch 3", "pc: running pipeline f epoch 3, 2 error(s)",
                       "affected area:", "  b198 is down"], out
    # -v: every device with its steps
    _show_status(st, [], False, True, domains.__getitem__)
    out = capsys.readouterr().out.splitlines()
    assert "b000: running pipeline f epoch 3" in out and out.count("    t: in 5, out 5") == 200
