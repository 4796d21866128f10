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
