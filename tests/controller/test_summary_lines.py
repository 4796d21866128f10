# Large inventories: the start and placement lines of `up` give counts, -v lists everything.
import os
import types

from sensormesh.controller.deploy_cli import _device_list, _show_plan


def dev(name, interp, heap=None, romfs=None):
    return types.SimpleNamespace(name=name, interpreter=interp, heap=heap,
                                 romfs=True if romfs is None and interp == "micropython" else romfs)


def test_start_line_counts_a_large_inventory():
    local = [dev("b%d" % i, "micropython", "96K") for i in range(200)] + [dev("pc", "cpython")]
    assert _device_list(local, None, False) == "200 micropython, heap 96K, 1 cpython (-v lists them)"
    full = _device_list(local, None, True)
    assert full.count("micropython") == 200 and "b199 (micropython, heap 96K)" in full
    small = [dev("a", "cpython"), dev("b", "micropython", "128K")]
    assert _device_list(small, None, False) == "a (cpython), b (micropython, heap 128K)"
    # a board running the package from files, not ROMFS, says so (--no-romfs: all of them)
    mixed = [dev("a", "micropython", "96K"), dev("b", "micropython", "112K", romfs=False)]
    assert _device_list(mixed, None, False) == "a (micropython, heap 96K), b (micropython, heap 112K, package in files)"
    assert _device_list(mixed, None, False, False) == ("a (micropython, heap 96K, package in files), "
                                                       "b (micropython, heap 112K, package in files)")


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


def fleet_final():
    final = {"b%03d" % i: {"steps": {"t%03d" % i: {"in": 10, "out": 10}, "w%03d" % i: {"in": 10, "out": 5},
                                     "out:w%03d" % i: {"in": 5, "out": 5, "dropped": 0}}} for i in range(200)}
    final["b007"]["steps"]["w007"]["dropped"] = 2
    final["b009"] = {"error": "not stopped: it failed"}
    pc = {"in:w%03d" % i: {"in": 4 if i == 3 else 5, "out": 4 if i == 3 else 5} for i in range(200)}
    pc.update({"all": {"in": 999, "out": 999}, "out": {"in": 999, "out": 0}})
    final["pc"] = {"steps": pc}
    return final


def test_stop_summary_of_many_devices_groups_alike_devices_and_folds_many_inputs():
    from sensormesh.controller.runner import summary
    lines = summary(fleet_final())
    assert lines == [
        "198 devices b000 .. b199: t# 1980>1980, w# 1980>990, out:w# 990>990 in all",
        "b007: t007 10>10, w007 10>5 (2 dropped), out:w007 5>5",
        "b009: not stopped: it failed",
        "pc: 200 x in:w# 999>999 (4-5 each), all 999>999, out 999>0",
        "(-v lists every device and step)"], lines
    assert max(len(ln) for ln in lines) < 100
    full = summary(fleet_final(), verbose=True)
    assert len(full) == 201 and "in:w199 5>5" in full[-1] and full[0] == "b000: t000 10>10, w000 10>5, out:w000 5>5"
    # a few devices: one line each, a sink's many inputs still counted together
    few = summary({d: fleet_final()[d] for d in ("b001", "pc")})
    assert few == ["b001: t001 10>10, w001 10>5, out:w001 5>5",
                   "pc: 200 x in:w# 999>999 (4-5 each), all 999>999, out 999>0"], few


def test_stop_summary_names_why_callback_values_were_not_delivered():
    from sensormesh.controller.runner import summary, undelivered
    steps = {"out": {"in": 30, "out": 30}}
    # the device's own total, the controller saw it leave 10 out while it listened (NaN)
    final = undelivered({"pc": {"steps": dict(steps), "lost_deliveries": 10}}, {"pc": 10})
    assert summary(final) == ["pc: out 30>30, 10 callback values not delivered: JSON cannot carry them "
                              "(NaN or infinity) or they were too large to send"]
    # values dropped while no controller listened keep their words
    final = undelivered({"pc": {"steps": dict(steps), "lost_deliveries": 5}}, {})
    assert "while no controller listened" in summary(final)[0] and "JSON" in summary(final)[0]
    final = undelivered({"pc": {"steps": dict(steps), "lost_deliveries": 5, "undeliverable": 0}}, {})
    assert summary(final) == ["pc: out 30>30, 5 callback values lost while no controller listened"]
    final = undelivered({"pc": {"steps": dict(steps), "lost_deliveries": 5}}, {"pc": 1})
    assert summary(final) == ["pc: out 30>30, 1 callback value not delivered: JSON cannot carry it (NaN or "
                              "infinity) or it was too large to send, 4 callback values lost while no "
                              "controller listened"]


def test_summary_header_names_the_devices_redeployed_during_the_run():
    # after a re-placement the devices count from their new deployment: the header says which,
    # so that what the sinks printed (the whole run) and the counts can be compared
    from sensormesh.controller.runner import summary_header
    final = {"src": {"epoch": 7, "steps": {}}, "mid": {"epoch": 9, "steps": {}},
             "snk": {"epoch": 9, "steps": {}}, "gw": {"error": "not stopped: it failed"}}
    assert summary_header(final, 7) == ("stopped; per device (step in>out; mid, snk redeployed during the run: "
                                        "counted since their last deployment):")
    final["snk"]["epoch"] = 7
    assert summary_header(final, 7) == ("stopped; per device (step in>out; mid redeployed during the run: "
                                        "counted since its last deployment):")
    final["mid"]["epoch"] = 7
    assert summary_header(final, 7) == "stopped; per device (step in>out):"


def test_stop_summary_shows_the_values_a_pipe_in_lost():
    # a receiver whose sender's replay buffer overflowed counts the gap as `lost`: the final
    # counts show it (they showed only the sender's dropped, and nothing on the device that lost
    # the values), and a device with a loss keeps a line of its own in a large fleet
    from sensormesh.controller.runner import summary
    final = {"mid": {"steps": {"in:n->mid": {"in": 2369, "out": 2369, "lost": 1520, "duplicates": 0}}}}
    assert summary(final) == ["mid: in:n->mid 2369>2369 (1520 lost)"]
    fleet = fleet_final()
    fleet["b011"]["steps"]["t011"]["lost"] = 3
    assert "b011: t011 10>10 (3 lost), w011 10>5, out:w011 5>5" in summary(fleet)
    from sensormesh.controller.deploy_cli import _step_line
    assert _step_line("in:n->mid", {"in": 5, "out": 5, "lost": 3, "connected": True}) == \
        "in:n->mid: in 5, out 5, lost 3, connected True"


def test_status_of_a_fleet_that_is_down_names_a_few_and_counts_the_rest(capsys):
    """A fleet nobody started: the first few down devices with their reasons, the others in one
    line by name, and an affected area of a few lines, not one per device, edge and step."""
    from sensormesh.controller.deploy_cli import _show_status
    from sensormesh.controller.topology import Topology
    boards = ["b%d" % i for i in range(300)]
    st = {n: {"error": "%s is down: it does not answer" % n} for n in boards + ["pc"]}
    topo = Topology.single_domain(boards + ["pc"])
    impact = topo.affected_by(boards + ["pc"], [("w%d->pc" % i, "b%d" % i, "pc") for i in range(300)],
                              dict([("t%d" % i, "b%d" % i) for i in range(300)] + [("all", "pc")]))
    assert _show_status(st, impact.lines(), False, False, lambda n: set()) is True
    out = capsys.readouterr().out.splitlines()
    assert out[3:9] == ["b0: UNREACHABLE (b0 is down: it does not answer)",
                        "b1: UNREACHABLE (b1 is down: it does not answer)",
                        "b2: UNREACHABLE (b2 is down: it does not answer)",
                        "b3: UNREACHABLE (b3 is down: it does not answer)",
                        "b4: UNREACHABLE (b4 is down: it does not answer)",
                        "and 296 more UNREACHABLE (-v gives each one's reason): b5..b299, pc"], out
    area = out[out.index("affected area:") + 1:]
    assert area[0] == "  b0..b299 and pc are down"
    assert area[1:6] == ["  edge w%d->pc (b%d -> pc): b%d and pc are down; their steps must be placed elsewhere"
                         % (i, i, i) for i in range(5)], area
    assert area[6:] == ["  and 295 more edges to or from the failed devices; their steps must be placed elsewhere",
                        "  steps lost with the failed devices: 301 steps: t0 (b0), t1 (b1), t2 (b2), t3 (b3), "
                        "t4 (b4) and 296 more"], area
    # -v: every one
    _show_status(st, [], False, True, lambda n: set())
    assert len(capsys.readouterr().out.splitlines()) == 301


def test_commands_name_the_local_devices_nothing_serves_in_one_line(tmp_path, monkeypatch, capsys):
    from sensormesh.controller.cli_files import note_unstarted_local
    from sensormesh.controller.pipeline_file import load_model
    lines = ["pipeline: fleet-%d" % os.getpid(), "devices:"]
    lines += ["  s%d: {sensors: [temperature], local: true}" % i for i in range(200)]
    lines += ["  pc: {local: true}", "steps:", "  t: {type: source, sensor: temperature, on: s0}",
              "sinks:", "  o: {type: print, input: t, on: pc}"]
    (tmp_path / "fleet.yaml").write_text("\n".join(lines) + "\n")
    monkeypatch.chdir(tmp_path)
    model = load_model("fleet.yaml")
    note_unstarted_local(model, "fleet.yaml")
    err = capsys.readouterr().err.splitlines()
    assert err == ["! pc and s0..s199 are local: true without an address: commands reach them at their unix "
                   "sockets in %s/, the sockets `sensormesh up` makes for the directory it runs in, and nothing "
                   "listens there; run this command in the directory where `sensormesh up fleet.yaml` runs "
                   "(this is %s)" % (os.path.dirname(model.devices["pc"].unix_path), os.getcwd())], err


def test_a_group_of_numbered_devices_is_named_by_its_first_and_last_in_number_order():
    # "200 devices s0 .. s99" (text order) named the group wrongly
    from sensormesh.controller.runner import summary
    final = {"s%d" % i: {"steps": {"t%d" % i: {"in": 3, "out": 3}}} for i in range(200)}
    final["s10"] = {"error": "not stopped: it failed"}
    final["s9"]["steps"]["t9"]["dropped"] = 1
    assert summary(final) == ["198 devices s0 .. s199: t# 594>594 in all", "s9: t9 3>3 (1 dropped)",
                              "s10: not stopped: it failed", "(-v lists every device and step)"]


def test_stop_of_a_fleet_that_is_down_names_a_few_errors_and_the_rest_by_name():
    # each of 300 unreachable devices had a line of its own
    from sensormesh.controller.runner import summary
    final = {"s%d" % i: {"error": "cannot reach s%d" % i} for i in range(300)}
    final["pc"] = {"steps": {"m": {"in": 3, "out": 3}}}
    assert summary(final) == ["pc: m 3>3"] + ["s%d: cannot reach s%d" % (i, i) for i in range(5)] + [
        "and 295 more devices with errors (-v gives each one's): s5..s299", "(-v lists every device and step)"]
    assert len(summary(final, verbose=True)) == 301


def test_plan_of_a_fleet_behind_a_gateway_keeps_its_tables_narrow(tmp_path):
    # the traffic table listed the gateway's 100 pipes in one cell (a row of ~1000 characters,
    # and every column as wide), the domains every board
    from sensormesh.controller.pipeline_file import load_model
    n = 100
    lines = ["pipeline: fleet", "devices:"]
    lines += ['  s%d: {interpreter: micropython, sensors: ["temperature@1"], local: true}' % i for i in range(n)]
    lines += ["  gw: {local: true}", "  pc: {local: true}", "network:", "  controller: [office]", "  domains:",
              "    field: [%s, gw]" % ", ".join("s%d" % i for i in range(n)), "    office: [gw, pc]", "steps:"]
    lines += ["  t%d: {type: source, sensor: temperature, on: s%d}" % (i, i) for i in range(n)]
    lines += ["  m: {type: merge, inputs: [%s], on: pc}" % ", ".join("t%d" % i for i in range(n)),
              "sinks:", "  o: {type: callback, input: m, on: pc}"]
    (tmp_path / "fleet.yaml").write_text("\n".join(lines) + "\n")
    model = load_model(str(tmp_path / "fleet.yaml"))
    text = model.place("edge").table()
    row = next(ln for ln in text.splitlines() if ln.startswith("gw "))
    assert row.split(None, 4)[4] == "100 pipes: t0->pc, t1->pc, t2->pc, t3->pc, t4->pc, ... and 95 more", row
    assert max(len(ln) for ln in text.splitlines()) < 200
    described = model.topology.describe()
    assert "  field:  gw, s0..s99" in described and "  office: gw, pc  [controller]" in described, described
