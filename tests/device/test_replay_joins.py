# A device joining several inputs (merge, zip) in the middle of a chain is restarted: its outgoing
# pipe tags every value with the input value it came from, so the receiver drops what it had
# whatever order the replays interleave in; a zip's inputs are acknowledged at the same cut and,
# after a restart, replayed from the latest cut any of them names. Real runtimes on the simulated
# network (pipekit.py), on both interpreters.
from pipekit import Net, restart

B0 = 1000000      # b's counter starts here: a's and b's values stay apart after the join


def joined(net, join, tf=10, rate=1000):
    """a and b (counter sources) -> pipes e1, e2 -> m: `join` of both -> pipe e3 -> callback on c."""
    net.device("a", counter=True, rate=rate)
    net.device("b", counter=True, rate=rate, start=B0)
    net.device("m")
    net.device("c")
    asg = {}
    for name, edge in (("a", "e1"), ("b", "e2")):
        asg[name] = {"pipeline": "p", "epoch": 1, "steps": [
            {"id": "s", "type": "source", "params": {"sensor": "counter"}},
            {"id": "o", "type": "pipe_out", "params": {"edge": edge, "to": "m", "time-frame": tf}, "inputs": ["s"]}]}
    asg["m"] = {"pipeline": "p", "epoch": 1, "steps": [
        {"id": "i1", "type": "pipe_in", "params": {"edge": "e1"}},
        {"id": "i2", "type": "pipe_in", "params": {"edge": "e2"}},
        {"id": "j", "type": join, "params": {}, "inputs": ["i1", "i2"]},
        {"id": "o3", "type": "pipe_out", "params": {"edge": "e3", "to": "c", "time-frame": tf}, "inputs": ["j"]}]}
    asg["c"] = {"pipeline": "p", "epoch": 1, "steps": [
        {"id": "i3", "type": "pipe_in", "params": {"edge": "e3"}},
        {"id": "k", "type": "callback", "params": {}, "inputs": ["i3"]}]}
    for name in ("c", "m", "a", "b"):
        net.devices[name].deploy(asg[name])
    for name in ("c", "m", "a", "b"):
        net.devices[name].start()
    return asg


def _in_order_once(vals, lo, n):
    assert len(vals) >= n, (len(vals), vals[-3:])
    want = list(range(lo, lo + len(vals)))
    if vals != want:
        for i in range(len(vals)):
            if vals[i] != want[i]:
                raise AssertionError("value %d is %r, want %r (around: %r)" % (i, vals[i], want[i], vals[max(0, i - 3):i + 4]))


def test_merge_on_a_restarted_device_repeats_and_loses_nothing():
    for when in (300, 517, 1201):
        net = Net()
        asg = joined(net, "merge")
        c = net.devices["c"]

        def split():
            v = c.control.values()
            return [x for x in v if x < B0], [x - B0 for x in v if x >= B0]
        assert net.run(5000, lambda: len(c.control.values()) >= when)
        restart(net, "m", asg["m"])
        net.run(23)
        net.cut("c")            # acknowledgements from c stop for a while, then m dies again
        net.run(150)
        restart(net, "m", asg["m"])
        net.heal("c")
        assert net.run(30000, lambda: min(len(x) for x in split()) >= 3000)
        a_vals, b_vals = split()
        _in_order_once(a_vals, 0, 3000)
        _in_order_once(b_vals, 0, 3000)
        st = c.status()["i3"]
        assert st["lost"] == 0 and st["duplicates"] > 0, st     # the tags dropped the repeats


def test_zip_on_a_restarted_device_pairs_as_before_and_repeats_nothing():
    for when in (300, 777):
        net = Net()
        asg = joined(net, "zip")
        c = net.devices["c"]
        assert net.run(5000, lambda: len(c.control.values()) >= when)
        restart(net, "m", asg["m"])
        assert net.run(30000, lambda: len(c.control.values()) >= 3000)
        pairs = c.control.values()
        _in_order_once([p[0] for p in pairs], 0, 3000)
        assert all(p[1] == p[0] + B0 for p in pairs), [p for p in pairs if p[1] != p[0] + B0][:3]


def test_zip_replays_from_the_same_cut_when_one_input_heard_fewer_acknowledgements():
    # m's acknowledgements to a are lost for a while (b's arrive): then m dies. a replays from an
    # older cut than b: the restarted m skips what b's cut says was paired already, so the pairs
    # stay the pairs the dead process made
    net = Net()
    asg = joined(net, "zip")
    c = net.devices["c"]
    assert net.run(5000, lambda: len(c.control.values()) >= 400)
    conn = net.devices["m"].runtime.pipe_ins["e1"].conn
    send = conn.send

    def no_acks(msg):
        if "ack" not in msg:
            send(msg)
    conn.send = no_acks
    net.run(300)
    a_out = net.devices["a"].status()["o"]
    b_out = net.devices["b"].status()["o"]
    assert a_out["acked"] + 100 < b_out["acked"], (a_out, b_out)     # the cuts differ
    restart(net, "m", asg["m"])
    assert net.run(30000, lambda: len(c.control.values()) >= 3000)
    pairs = c.control.values()
    _in_order_once([p[0] for p in pairs], 0, 3000)
    assert all(p[1] == p[0] + B0 for p in pairs), [p for p in pairs if p[1] != p[0] + B0][:3]
