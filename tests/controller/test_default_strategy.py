"""The default strategy: optimal, or edge when optimal's problem is too large, said once; a
strategy chosen by name (optimal included) is never replaced. The pair limit is lowered here so a
small gateway fleet stands for a large one (100 boards behind a gateway exceed the real one)."""
import textwrap

import pytest
from click.testing import CliRunner

from sensormesh.cli import main
from sensormesh.controller import placement as placement_mod
from sensormesh.controller import runner
from sensormesh.controller.errors import PlacementError
from sensormesh.controller.pipeline_file import load_model
from sensormesh.controller.placement import place


def fleet(n):
    """n boards behind a gateway, each with a free map and window, merged on a PC."""
    lines = ["pipeline: gwfleet", "devices:"]
    for i in range(n):
        lines.append('  b%d: {interpreter: micropython, cpu: 1, memory: 96000, sensors: ["temperature@2"], '
                     'address: "127.0.0.1:%d"}' % (i, 7100 + i))
    lines.append('  gw: {interpreter: cpython, cpu: 4, address: "127.0.0.1:7001"}')
    lines.append('  pc: {interpreter: cpython, cpu: 8, address: "127.0.0.1:7002"}')
    lines.append("network:\n  controller: [office]\n  domains:\n    field: [%s, gw]\n    office: [gw, pc]"
                 % ", ".join("b%d" % i for i in range(n)))
    lines.append("steps:")
    for i in range(n):
        lines.append("  t%d: {type: source, sensor: temperature, on: b%d}" % (i, i))
        lines.append("  m%d: {type: map, fn: 'fns.py:double', input: t%d}" % (i, i))
        lines.append("  w%d: {type: window, values: 2, agg: mean, input: m%d}" % (i, i))
    lines.append("  all: {type: merge, inputs: [%s], on: pc}" % ", ".join("w%d" % i for i in range(n)))
    lines.append("sinks:\n  out: {type: print, input: all, on: pc}")
    return "\n".join(lines) + "\n"


@pytest.fixture
def small_limit(monkeypatch):
    monkeypatch.setattr(placement_mod, "PAIR_LIMIT", 50)


@pytest.fixture
def fleet_file(tmp_path):
    (tmp_path / "fns.py").write_text("def double(x):\n    return x * 2\n")
    path = tmp_path / "fleet.yaml"
    path.write_text(fleet(4))
    return str(path)


def test_no_strategy_falls_back_to_edge_and_says_why(small_limit, fleet_file):
    m = load_model(fleet_file)
    pl = place(m)
    assert pl.strategy == "edge"
    assert pl.fallback.startswith("placed with the edge strategy: the default, optimal, would need ")
    assert "device-pair variables here, more than its limit of 50" in pl.fallback
    assert "--strategy" in pl.fallback
    # the same placement edge gives when asked by name, which says nothing of a fallback
    by_name = place(m, "edge")
    assert by_name.device_of == pl.device_of and by_name.fallback is None
    assert m.place().strategy == "edge"          # the model's place() has the same default


def test_optimal_by_name_still_refuses(small_limit, fleet_file):
    m = load_model(fleet_file)
    with pytest.raises(PlacementError) as e:
        place(m, "optimal")
    text = str(e.value)
    assert "optimal with this link function needs more than 50 device-pair variables" in text
    assert "use --strategy edge" in text
    assert text.startswith(fleet_file + ":")      # where the step is defined


def test_small_enough_stays_optimal_without_a_warning(fleet_file):
    pl = place(load_model(fleet_file))
    assert pl.strategy == "optimal" and pl.fallback is None


def test_plan_warns_once_and_optimal_by_name_is_refused(small_limit, fleet_file, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(main, ["plan", fleet_file])
    assert r.exit_code == 0, r.output
    warnings = [ln for ln in r.output.splitlines() if ln.startswith("warning: placed with")]
    assert len(warnings) == 1 and "edge" in warnings[0], r.output
    assert "strategy edge:" in r.output
    r = CliRunner().invoke(main, ["plan", fleet_file, "--strategy", "optimal"])
    assert r.exit_code == 1 and "device-pair variables" in r.output, r.output
    assert "placed with" not in r.output


def test_up_says_the_fallback_once_before_it_starts_a_device(small_limit, fleet_file, monkeypatch):
    from sensormesh.controller import local

    class Stop(Exception):
        pass

    def no_cluster(*a, **kw):
        raise Stop()
    monkeypatch.setattr(local, "LocalCluster", no_cluster)
    events = []
    with pytest.raises(Stop):
        runner.up(load_model(fleet_file), on_event=events.append, insecure=True)
    assert [e for e in events if "placed with the edge strategy" in e] == [
        next(e for e in events if e.startswith("warning: placed with the edge strategy: the default, optimal"))]


def test_the_supervisor_defaults_to_the_same_strategy(small_limit, fleet_file):
    from sensormesh.controller.supervisor import Supervisor
    sup = Supervisor(load_model(fleet_file), timeout=0.5)
    try:
        assert sup.place().strategy == "edge" and sup.place().fallback
    finally:
        sup.close()


def test_the_fallback_does_not_search_for_a_route_cause(small_limit, fleet_file, monkeypatch):
    # optimal being too large is not a route problem: the search for one takes seconds in a fleet
    def no_search(*a):
        raise AssertionError("searched for a route cause")
    monkeypatch.setattr(placement_mod, "_route_cause", no_search)
    assert place(load_model(fleet_file)).strategy == "edge"
    with pytest.raises(PlacementError):
        place(load_model(fleet_file), "optimal")


# -- large fleets place in well under a second ---------------------------------------------------

def test_direct_routes_skip_the_path_search_and_equal_it(fleet_file, monkeypatch):
    import networkx as nx
    from sensormesh.controller import topology as topo
    m = load_model(fleet_file)
    devices = list(m.devices)
    full = {}
    for a in devices:
        for b in devices:
            view = nx.subgraph_view(m.topology._graph, filter_node=lambda n: n != topo.CONTROLLER)
            full[(a, b)] = m.topology._route_from_nodes(nx.shortest_path(view, a, b, weight="w"))
    searched = []
    real = nx.shortest_path

    def counted(*a, **kw):
        searched.append(a[1:3])
        return real(*a, **kw)
    monkeypatch.setattr(topo.nx, "shortest_path", counted)
    fresh = load_model(fleet_file).topology
    for (a, b), r in full.items():
        if a != b:
            assert fresh.route(a, b) == r, (a, b)
    # only a board and the PC (through the gateway) need a search; every other pair shares a domain
    assert searched and all({a, b} & {"pc"} and {a, b} - {"pc", "gw"} for a, b in searched), searched


def test_edge_asks_the_route_of_each_pair_once_and_skips_the_search_where_all_inputs_are(
        fleet_file, monkeypatch):
    m = load_model(fleet_file)
    asked = []
    real = type(m.topology).link

    def link(self, a, b):
        asked.append((a, b))
        return real(self, a, b)
    monkeypatch.setattr(type(m.topology), "link", link)
    before = len(asked)
    pl = place(m, "edge")
    edge_calls = len(asked) - before
    assert pl.device_of["m0"] == "b0"      # with its input, as before
    # 4 boards' maps and windows sit with their inputs: they ask one pair each, not all 6 devices
    assert edge_calls < 4 * 2 * len(m.devices), edge_calls
