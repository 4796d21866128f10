# A re-route through another gateway at a new epoch after the sender's replay buffer overflowed
# while the first gateway was gone, on the simulated network of pipekit.py: the relay on the
# new gateway continues the numbering the sink counts in, so the sink drops what it already
# had and counts exactly what it never had. Runs under pytest and micropython tests/mprun.py.
from pipekit import Net, chain


def _cut_at_a_lag(net, lag):
    """Run until the sink has values the source has not seen acknowledged yet (at least lag of
    them), then kill the gateway m. Returns (acknowledged at the source, expected at the sink)."""
    a = net.devices["a"]
    c = net.devices["c"]

    def behind():
        return len(c.control.values()) >= 300 and c.status()["i2"]["seq"] - a.status()["o1"]["acked"] >= lag
    assert net.run(5000, behind), (a.status()["o1"], c.status()["i2"])
    acked, expect = a.status()["o1"]["acked"], c.status()["i2"]["seq"]
    net.kill("m")
    return acked, expect


def _reroute_through(net, asg, via):
    """What the Supervisor does: the edges go through `via` at epoch 2, the devices deployed
    downstream first (a keeps its replay buffer and numbering, c its receiver), then started."""
    new = {"c": dict(asg["c"]), via: dict(asg["m"]), "a": dict(asg["a"])}
    steps = []
    for st in asg["a"]["steps"]:
        st = dict(st)
        if st["type"] == "pipe_out":
            st["params"] = dict(st["params"], to=via)
        steps.append(st)
    new["a"]["steps"] = steps
    net.device(via)
    for name in ("c", via, "a"):
        new[name]["epoch"] = 2
        net.devices[name].deploy(new[name])
    for name in ("c", via, "a"):
        net.devices[name].start()


def _overflow_then_reroute(evict):
    """Kill the gateway with the sink ahead of the source's acknowledgements, let the source's
    buffer drop evict(lag) of its oldest values, re-route; returns the counts to check."""
    net = Net()
    asg = chain(net, tf=10, buffer=200, rate=1000)
    acked, expect = _cut_at_a_lag(net, 20)
    want = evict(expect - acked)
    a = net.devices["a"]
    assert net.run(5000, lambda: a.status()["o1"]["evicted"] >= want), a.status()["o1"]
    _reroute_through(net, asg, "m2")
    c = net.devices["c"]
    assert net.run(20000, lambda: len(c.control.values()) >= expect + 1000)
    # the source goes on reading while it moves to m2: the oldest value it still held when the
    # new connection's first array left is where m2's relay continued the sink's numbering
    # (checked after the values at the sink by the tests)
    said = [t for t in net.devices["m2"].logs if "continues at value" in t]
    first = int(said[0].split("continues at value ")[1].split()[0]) if len(said) == 1 else None
    assert first is None or first >= acked + want, (first, acked, want)
    return c.control.values(), c.status()["i2"], first, expect, net


def test_reroute_after_an_overflow_behind_the_sink_repeats_nothing():
    # the evicted values had all reached the sink: it must drop what the source replays of the
    # rest (the duplicates a callback sink on pc once delivered twice)
    vals, st, first, expect, net = _overflow_then_reroute(lambda lag: lag // 2)
    assert vals == list(range(len(vals))), [v for i, v in enumerate(vals) if v != i][:5]
    assert first is not None and first < expect, net.devices["m2"].logs   # the replay began behind the sink
    assert net.devices["m2"].status()["i1"]["lost"] == 0
    # (m2 skips what c says it has, or c drops it as duplicates: either way it reaches k once)
    assert st["lost"] == 0, st


def test_reroute_after_an_overflow_beyond_the_sink_counts_the_loss_exactly():
    vals, st, first, expect, net = _overflow_then_reroute(lambda lag: lag + 30)
    assert vals == sorted(vals) and len(set(vals)) == len(vals), "in order, each value once"
    assert first is not None and first > expect, net.devices["m2"].logs
    missing = vals[-1] + 1 - len(vals)
    assert missing == first - expect and st["lost"] == missing and st["duplicates"] == 0, (missing, st)
    assert vals[expect - 1] == expect - 1 and vals[expect] == first


def test_a_mark_announced_after_an_eviction_says_how_far_it_lies_behind():
    from sensormesh.device.runtime.replay import Sender
    tx = Sender(5, 3)
    for v in range(5):
        tx.add(v)
    tx.take(5)
    assert tx.ack(2, {"e2": [40, 9]}) == 2
    assert tx.restart() == 2 and tx.announce() == [2, 3, {"e2": [40, 9]}, 5]
    for v in range(5, 9):
        tx.add(v)             # 7 held in a buffer of 5: values 2 and 3 leave unacknowledged
    assert tx.base == 4 and tx.evicted == 2
    assert tx.restart() == 4 and tx.announce() == [4, 3, {"e2": [40, 9, 2]}, 5]
