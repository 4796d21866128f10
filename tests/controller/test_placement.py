# Placement: each strategy on hand-made inventories, infeasible inventories, pluggable links,
# and the optimal strategy against brute force on small random graphs.
import itertools
import random

import pytest

import shipping_samples as S
from sensormesh.api import Pipeline, PlacementError
from sensormesh.controller.model import Device, Model, Step
from sensormesh.controller.placement import CPU_HEADROOM, default_link, device_loads, evaluate, place


def greenhouse(esp_cpu=1, heavy_cpu=None):
    """esp-1 (dht11, gyro) and esp-2 (temperature), a pi and a laptop."""
    p = Pipeline("g")
    p.device("esp-1", interpreter="micropython", cpu=esp_cpu, sensors=["dht11", "gyro"], address="10.0.0.1:7000")
    p.device("esp-2", interpreter="micropython", cpu=esp_cpu, sensors=["temperature"], address="10.0.0.2:7000")
    p.device("pi", cpu=4, memory=10**8, address="10.0.0.3:7000")
    p.device("laptop", cpu=20, address="127.0.0.1:7001", local=True)
    g = p.source("gyro").field("accel", id="acc")
    g = g.map(S.norm, id="norm", **({"cpu": heavy_cpu} if heavy_cpu else {}))
    g.window(values=100, agg="max", id="w").print(on="laptop", id="out")
    return p


def test_sources_and_pinned_steps_have_reasons():
    pl = greenhouse().plan("optimal")
    assert pl.device_of["gyro"] == "esp-1" and pl.reasons["gyro"] == "has sensor gyro"
    assert pl.device_of["out"] == "laptop" and pl.reasons["out"] == "pinned (on: laptop)"


def test_central_puts_free_steps_on_the_strongest_device():
    pl = greenhouse().plan("central")
    for sid in ("acc", "norm", "w"):
        assert pl.device_of[sid] == "laptop" and pl.reasons[sid].startswith("central: strongest device")
    assert set(pl.traffic) == {("esp-1", "laptop")}
    assert pl.traffic[("esp-1", "laptop")] == pytest.approx(pl.model.flows["gyro"].traffic)


def test_central_overload_names_the_device():
    # two maps of 100,000 units/s each; the laptop can give 160,000
    p = greenhouse()
    p.source("dht11").map(S.norm, cpu=100000, id="heavy1").map(S.norm, cpu=100000, id="heavy2").print()
    with pytest.raises(PlacementError) as e:
        p.plan("central")
    assert e.value.device == "laptop" and "step 'heavy2'" in str(e.value) and "CPU" in str(e.value)


def test_edge_stays_next_to_the_source():
    pl = greenhouse().plan("edge")
    for sid in ("acc", "norm", "w"):
        assert pl.device_of[sid] == "esp-1"
    assert pl.reasons["norm"] == "edge: with its input acc"
    assert set(pl.traffic) == {("esp-1", "laptop")}


def test_edge_moves_on_when_the_device_is_full():
    pl = greenhouse(heavy_cpu=80).plan("edge")   # 8,000 units/s: no room left on an ESP32
    assert pl.device_of["acc"] == "esp-1"
    assert pl.device_of["norm"] in ("pi", "laptop")
    assert "nearest device with room (esp-1 full)" in pl.reasons["norm"]


def test_optimal_cuts_the_cheapest_edge():
    pl = greenhouse().plan("optimal")
    assert [pl.device_of[s] for s in ("acc", "norm", "w")] == ["esp-1"] * 3
    assert pl.objective == pytest.approx(pl.model.flows["w"].traffic)
    assert pl.solver["gap"] == pytest.approx(0, abs=1e-6)
    assert pl.reasons["w"].startswith("optimal: with norm; sends")


def test_optimal_respects_cpu_then_minimises_traffic():
    pl = greenhouse(heavy_cpu=80).plan("optimal")
    assert pl.device_of["norm"] != "esp-1"
    # the cut moves to the smaller of the two edges around the heavy map
    m = pl.model
    w_cut = pl.device_of["w"] != "laptop"
    assert pl.objective == pytest.approx(m.flows["acc"].traffic + m.flows["w"].traffic * w_cut)


def test_memory_limits():
    p = Pipeline("m")
    p.device("esp", interpreter="micropython", sensors=["gyro"], address="10.0.0.1:7000")
    p.device("pc", address="10.0.0.2:7000")
    p.source("gyro").sliding(700, agg="list", id="big").print(on="pc")
    for strategy in ("edge", "optimal"):
        assert p.plan(strategy).device_of["big"] == "pc"


def knob_to_pc():
    """A board's knob, windowed on the board and piped to a PC that needs it; `cb` takes the
    windowed values too (a callback sink: its values go to the controller from wherever it runs)."""
    p = Pipeline("k")
    p.device("esp", interpreter="micropython", sensors=["rotary@50"], address="10.0.0.1:7000")
    p.device("pc", address="10.0.0.2:7000")
    w = p.source("rotary").window(values=5, agg="mean", id="w")
    w.print(on="pc", id="shown")
    return p, w


def noop(v):
    pass


def test_a_callback_sink_goes_where_its_values_already_arrive_with_the_most_room():
    p, w = knob_to_pc()
    w.callback(noop, id="cb")
    for strategy in ("edge", "optimal"):
        pl = p.plan(strategy)
        # the board does not send the window's values twice (to the PC and to the controller)
        assert pl.device_of["w"] == "esp" and pl.device_of["cb"] == "pc", strategy
        assert pl.reasons["cb"] == "%s: w's values arrive here; most memory to spare" % strategy, pl.reasons["cb"]
        assert [(x.producer, x.dst) for x in pl.pipes] == [("w", "pc")]
    # no traffic added: the same as with the sink pinned to the PC, less than pinned to the board
    pinned_pc, pw = knob_to_pc()
    pw.callback(noop, id="cb", on="pc")
    assert p.plan().objective == pytest.approx(pinned_pc.plan().objective)


def test_a_callback_sink_stays_where_moving_it_would_add_traffic_or_where_it_is_pinned():
    p = Pipeline("k")
    p.device("esp", interpreter="micropython", sensors=["rotary@50"], address="10.0.0.1:7000")
    p.device("pc", address="10.0.0.2:7000")
    p.source("rotary").window(values=5, agg="mean", id="w").callback(noop, id="cb")
    for strategy in ("edge", "optimal"):     # its values reach no other device: it stays with them
        pl = p.plan(strategy)
        assert pl.device_of["cb"] == pl.device_of["w"] == "esp" and not pl.pipes, strategy
    q, w = knob_to_pc()
    w.callback(noop, id="cb", on="esp")
    assert q.plan().device_of["cb"] == "esp" and q.plan().reasons["cb"] == "pinned (on: esp)"


def test_a_callback_sink_moves_only_to_a_device_with_room_for_it():
    for pc_memory, where in ((4000, "esp"), (10**6, "pc")):
        p = Pipeline("k")
        p.device("esp", interpreter="micropython", sensors=["rotary@50"], address="10.0.0.1:7000")
        p.device("pc", memory=pc_memory, address="10.0.0.2:7000")
        w = p.source("rotary").window(values=5, agg="mean", id="w")
        w.print(on="pc", id="shown")
        w.callback(noop, id="cb", memory=5000)
        pl = p.plan("optimal")
        assert pl.device_of["w"] == "esp" and pl.device_of["cb"] == where, (pc_memory, pl.device_of)
        for d, (cpu, mem) in pl.loads.items():
            assert mem <= pl.model.devices[d].memory


def test_infeasible_memory_everywhere_names_the_step():
    p = Pipeline("m")
    p.device("esp", interpreter="micropython", sensors=["gyro"], address="10.0.0.1:7000")
    p.device("esp2", interpreter="micropython", address="10.0.0.2:7000")
    p.source("gyro").sliding(700, agg="list", id="big").print()
    for strategy in ("central", "edge", "optimal"):
        with pytest.raises(PlacementError, match="step 'big'.*more than any device"):
            p.plan(strategy)


def test_infeasible_total_capacity():
    p = Pipeline("m")
    p.device("esp", interpreter="micropython", sensors=["gyro"], address="10.0.0.1:7000")
    p.device("esp2", interpreter="micropython", address="10.0.0.2:7000")
    g = p.source("gyro")
    for i in range(3):                          # 3 x 6,000 units/s; 2 devices x 8,000 at most
        g.map(S.norm, cpu=60, id="n%d" % i).print()
    with pytest.raises(PlacementError, match="no placement fits the CPU and memory limits"):
        p.plan("optimal")
    with pytest.raises(PlacementError, match="edge: no device with room"):
        p.plan("edge")


def test_sources_alone_overload_their_device():
    p = Pipeline("m")
    p.device("esp", interpreter="micropython", sensors=["dht11@100"], address="10.0.0.1:7000")
    p.source("dht11").print(on="esp")           # 100 reads/s x 200 units: more than an ESP32
    with pytest.raises(PlacementError) as e:
        p.plan("edge")
    assert e.value.device == "esp" and "sources and pinned steps (dht11, print) alone need CPU" in str(e.value)


def test_pinned_step_on_wrong_interpreter():
    p = Pipeline("m")
    p.device("esp", interpreter="micropython", sensors=["temperature"], address="10.0.0.1:7000")
    p.source("temperature").map(S.uses_statistics, on="esp", id="st").print()
    with pytest.raises(PlacementError, match="step 'st'.*must run on esp \\(micropython\\) but needs cpython"):
        p.plan()


def test_unknown_strategy():
    with pytest.raises(PlacementError, match="unknown strategy"):
        greenhouse().plan("fastest")


def test_link_function_routes_and_unreachable_pairs():
    # esp-1 and esp-2 reach the laptop only through the pi (a gateway)
    def via_pi(a, b):
        if a == b:
            return 0, [a]
        if {a, b} in ({"esp-1", "laptop"}, {"esp-2", "laptop"}):
            return 2, [a, "pi", b]
        return 1, [a, b]

    p = greenhouse()
    p.source("temperature").window(values=10, id="tw").print(on="pi", id="tout")
    pl = p.plan("central", link=via_pi)
    gyro = pl.model.flows["gyro"].traffic
    assert pl.traffic[("esp-1", "pi")] == pytest.approx(gyro)
    assert pl.traffic[("pi", "laptop")] == pytest.approx(gyro + pl.model.flows["temperature"].traffic)
    assert pl.objective == pytest.approx(pl.total_traffic)
    a = pl.assignments()
    # the pi relays: the pipe_in of hop 1 feeds the pipe_out of hop 2
    relays = {s["id"]: s for s in a["pi"]["steps"] if s["type"] == "pipe_out"}
    assert set(relays) == {"out:gyro->laptop@2", "out:temperature->laptop@2"}
    assert relays["out:gyro->laptop@2"]["inputs"] == ["in:gyro->laptop@1"]
    assert all(r["params"]["to"] == "127.0.0.1:7001" for r in relays.values())   # pi is not local
    out = [s for s in a["esp-1"]["steps"] if s["type"] == "pipe_out"][0]
    assert out["params"] == {"edge": "gyro->laptop@1", "to": "10.0.0.3:7000", "time-frame": out["params"]["time-frame"]}
    # relaying counts against the pi's capacity
    assert pl.loads["pi"][0] >= pl.model.flows["gyro"].rate

    # esp-2 can reach nobody but the pi
    def cut_off(a, b):
        if "esp-2" in (a, b) and a != b and "pi" not in (a, b):
            return None
        return via_pi(a, b)

    with pytest.raises(PlacementError, match="cannot reach"):
        p.plan("central", link=cut_off)     # central sends temperature to the laptop
    for strategy in ("edge", "optimal"):
        pl = p.plan(strategy, link=cut_off)
        assert pl.device_of["tw"] in ("esp-2", "pi")
        evaluate(pl.model, pl.device_of, cut_off)      # every pipe has a route


def test_reduction_keeps_the_optimum():
    rng = random.Random(7)
    for case in range(5):
        p = Pipeline("r")
        for i in range(6):
            p.device("esp-%d" % i, interpreter="micropython", cpu=0.5, sensors=["gyro", "temperature"],
                     address="10.0.0.%d:7000" % (i + 1))
        for i in range(12):
            p.device("pc-%d" % i, cpu=2 if i % 2 else 1, address="10.0.1.%d:7000" % (i + 1))
        for i in range(4):
            g = p.source("gyro", on="esp-%d" % rng.randrange(6), id="g%d" % i)
            g.map(S.norm, cpu=rng.choice((10, 30, 60)), id="n%d" % i).window(values=10, id="w%d" % i) \
                .print(on="pc-%d" % rng.randrange(12))
        m = p.model()
        full = place(m, "optimal", reduce=False)
        red = place(m, "optimal", reduce=True)
        assert red.objective == pytest.approx(full.objective, rel=1e-6)
        assert red.solver["devices_in_model"] < full.solver["devices_in_model"]


# -- optimal == brute force on small random graphs ------------------------------------------------

def random_case(rng):
    n_dev = rng.randint(2, 4)
    devices = []
    for i in range(n_dev):
        interp = rng.choice(("cpython", "micropython"))
        devices.append(Device("d%d" % i, interpreter=interp, cpu=rng.choice((0.05, 0.1, 0.3)),
                              memory=rng.choice((3000, 5000, 20000)),
                              sensors=["temperature", "hall"] if i < 2 else [], address="10.0.0.%d:7000" % (i + 1)))
    steps = [Step("s0", "source", {"sensor": "temperature", "rate": rng.choice((10, 50))}, on="d0"),
             Step("s1", "source", {"sensor": "hall", "rate": rng.choice((10, 50))}, on="d1")]
    outputs = ["s0", "s1"]
    n = rng.randint(2, 6)
    for i in range(n - 2):
        sid = "t%d" % i
        kind = rng.choice(("map", "map", "zip", "merge", "window", "sink"))
        hints = {"bytes": rng.choice((4, 8, 20, 50)), "cpu": rng.choice((0.5, 2, 5, 10)),
                 "memory": rng.choice((500, 1500, 3000))}
        if kind == "map":
            st = Step(sid, "map", dict(hints, fn="math:sqrt"), [rng.choice(outputs)],
                      requires=rng.choice((None, None, "cpython", "micropython")))
        elif kind == "zip":
            st = Step(sid, "zip", hints, rng.sample(outputs, 2))
        elif kind == "merge":
            st = Step(sid, "merge", hints, rng.sample(outputs, rng.randint(1, min(3, len(outputs)))))
        elif kind == "window":
            st = Step(sid, "window", dict(hints, values=rng.choice((2, 5))), [rng.choice(outputs)])
        else:
            hints.pop("bytes")
            st = Step(sid, "print", hints, [rng.choice(outputs)], on=rng.choice((None, "d%d" % rng.randrange(n_dev))))
        steps.append(st)
        if kind != "sink":
            outputs.append(sid)
    return Model("r", steps, devices)


def brute_force(m, link=default_link):
    best = None
    fixed = {s: m.fixed_device(s) for s in m.order if m.fixed_device(s)}
    free = [s for s in m.order if s not in fixed]
    cand = {s: [d for d, dev in m.devices.items() if dev.interpreter in m.interpreters[s]] for s in free}
    for combo in itertools.product(*(cand[s] for s in free)):
        device_of = dict(fixed, **dict(zip(free, combo)))
        if any(m.devices[device_of[s]].interpreter not in m.interpreters[s] for s in m.order):
            continue
        try:
            pipes, obj = evaluate(m, device_of, link)
        except PlacementError:
            continue
        loads = device_loads(m, device_of, pipes)       # steps and relays
        if any(cpu > m.devices[d].cpu_units * CPU_HEADROOM + 1e-9 or mem > m.devices[d].memory + 1e-9
               for d, (cpu, mem) in loads.items()):
            continue
        if best is None or obj < best - 1e-12:
            best = obj
    return best


def hop_link(a, b):
    """d3 sits behind gateway d2 (d1 cannot send to it at all); other pairs cost 1 or 2."""
    if a == b:
        return 0, [a]
    if "d3" in (a, b) and "d2" not in (a, b):
        if (a, b) == ("d1", "d3"):
            return None
        return 2, [a, "d2", b]
    cost = 1 + (int(a[1:]) + int(b[1:])) % 2
    return cost, [a, b]


@pytest.mark.parametrize("seed", range(30))
def test_optimal_matches_brute_force(seed):
    rng = random.Random(seed)
    m = random_case(rng)
    for link in (default_link, hop_link):
        best = brute_force(m, link)
        if best is None:
            with pytest.raises(PlacementError):
                place(m, "optimal", link=link, mip_rel_gap=0)
            continue
        pl = place(m, "optimal", link=link, mip_rel_gap=0)
        assert pl.objective == pytest.approx(best, rel=1e-6, abs=1e-6), (seed, link.__name__)
        # and the placement it returns respects every limit
        for d, (cpu, mem) in pl.loads.items():
            assert cpu <= m.devices[d].cpu_units * CPU_HEADROOM + 1e-6 and mem <= m.devices[d].memory + 1e-6
