# Two devices in one process and one loop, a controller connection deploying to both: the
# assignment runtime (sources, local chains, pipes, callback deliveries) on both interpreters.
from sensormesh.device import transport
from sensormesh.device.core import Device

from loopkit import Collector, listen

def control(loop, addr):
    c = Collector()
    conn = transport.dial(loop, addr, c)
    conn.send({"hello": {}})
    return c, conn


CODE = {"user": "def double(x):\n    return x * 2\n\nclass Tag:\n    def __init__(self):\n        self.n = 0\n"
                "    def __call__(self, x):\n        self.n += 1\n        return [self.n, x]\n"}


def two_devices():
    loop = transport.Loop()
    a = Device("a", ["counter@0"], loop=loop)
    b = Device("b", [], loop=loop)
    return loop, a, listen(a), b, listen(b)


def test_pipeline_across_two_devices_exactly_once_in_order():
    loop, a, aaddr, b, baddr = two_devices()
    asg_b = {"pipeline": "p", "epoch": 1, "code": CODE, "steps": [
        {"id": "in", "type": "pipe_in", "params": {"edge": "e1"}},
        {"id": "w", "type": "window", "params": {"values": 10, "agg": "list"}, "inputs": ["in"]},
        {"id": "k", "type": "callback", "params": {"name": "out"}, "inputs": ["w"]}]}
    asg_a = {"pipeline": "p", "epoch": 1, "code": CODE, "steps": [
        {"id": "s", "type": "source", "params": {"sensor": "counter", "count": 500}},
        {"id": "m", "type": "map", "params": {"fn": "user:double"}, "inputs": ["s"]},
        {"id": "o", "type": "pipe_out", "params": {"edge": "e1", "to": baddr, "time-frame": 5}, "inputs": ["m"]}]}
    cb, connb = control(loop, baddr)
    ca, conna = control(loop, aaddr)
    connb.send({"deploy": {"assignment": asg_b}})
    conna.send({"deploy": {"assignment": asg_a}})
    assert loop.run_until(lambda: cb.replies("deployed") and ca.replies("deployed"), 5000), cb.messages + ca.messages
    connb.send({"start": {}})
    assert loop.run_until(lambda: cb.replies("started"), 5000)
    conna.send({"start": {}})

    def got():
        vals = []
        for d in cb.replies("deliver"):
            for w in d["values"]:
                vals += w
        return vals
    assert loop.run_until(lambda: len(got()) >= 500, 10000), got()[-5:]
    assert got() == [2 * i for i in range(500)]
    conna.send({"status": {}})
    assert loop.run_until(lambda: ca.replies("status"), 5000)
    st = ca.replies("status")[0]["assignment"]["steps"]
    assert st["s"]["out"] == 500 and st["o"]["out"] == 500 and st["o"]["dropped"] == 0
    a.close()
    b.close()


def test_stateful_user_class_and_pull_direction():
    # the receiving end dials the sender (pipe_in "from"), data flows against the dial direction
    loop, a, aaddr, b, baddr = two_devices()
    asg_a = {"pipeline": "p", "epoch": 2, "code": CODE, "steps": [
        {"id": "s", "type": "source", "params": {"sensor": "counter", "count": 50}},
        {"id": "o", "type": "pipe_out", "params": {"edge": "e2", "time-frame": 0}, "inputs": ["s"]}]}
    asg_b = {"pipeline": "p", "epoch": 2, "code": CODE, "steps": [
        {"id": "in", "type": "pipe_in", "params": {"edge": "e2", "from": aaddr}},
        {"id": "t", "type": "map", "params": {"fn": "user:Tag"}, "inputs": ["in"]},
        {"id": "k", "type": "callback", "params": {}, "inputs": ["t"]}]}
    ca, conna = control(loop, aaddr)
    cb, connb = control(loop, baddr)
    conna.send({"deploy": {"assignment": asg_a}})
    connb.send({"deploy": {"assignment": asg_b}})
    assert loop.run_until(lambda: cb.replies("deployed") and ca.replies("deployed"), 5000), cb.messages
    connb.send({"start": {}})
    conna.send({"start": {}})

    def got():
        return [v for d in cb.replies("deliver") for v in d["values"]]
    assert loop.run_until(lambda: len(got()) >= 50, 10000), got()
    assert got() == [[i + 1, i] for i in range(50)]
    a.close()
    b.close()


def running(loop, addr):
    """A control session with the device at addr, which runs a counter into a callback sink
    (epoch 1) and has delivered values; returns (collector, connection, assignment)."""
    c, conn = control(loop, addr)
    good = {"pipeline": "p", "epoch": 1, "steps": [
        {"id": "s", "type": "source", "params": {"sensor": "counter", "rate": 200}},
        {"id": "k", "type": "callback", "params": {}, "inputs": ["s"]}]}
    conn.send({"deploy": {"assignment": good}})
    conn.send({"start": {}})
    assert loop.run_until(lambda: c.replies("deliver"), 5000)
    return c, conn, good


def test_bad_assignment_named_and_old_one_keeps_running():
    loop, a, aaddr, b, baddr = two_devices()
    ca, conna, good = running(loop, aaddr)
    bads = [
        ({"steps": [{"id": "s", "type": "source", "params": {"sensor": "radar"}}]}, "no sensor 'radar'"),
        ({"steps": [{"id": "x", "type": "teleport"}]}, "unknown step type"),
        ({"steps": [{"id": "m", "type": "map", "params": {"fn": "user:nope"}, "inputs": []}]}, "m"),
        ({"steps": [{"id": "k", "type": "print", "inputs": ["ghost"]}]}, "'ghost'"),
        ({"code": {"user": "def f(:\n"}, "steps": []}, "user"),
        ({"steps": [{"id": "w", "type": "window", "params": {"values": 3, "size": 2}}]},
         "step 'w': unknown parameter 'size' (window takes: "),
        ({"steps": [{"id": "z", "type": "zip", "inputs": ["s"]}]}, "step 'z': zip takes 2 inputs, got 1"),
        # sizes a device would allocate gigabytes for, from a controller that does not check them
        ({"steps": [{"id": "w", "type": "sliding", "params": {"size": 10 ** 9}}]},
         "step 'w': size must be an integer >= 1 and <= 1000000, got 1000000000"),
        ({"steps": [{"id": "m", "type": "median", "params": {"size": 10 ** 9}}]},
         "step 'm': size must be an integer >= 1 and <= 1000000"),
        ({"steps": [{"id": "q", "type": "quantile", "params": {"size": 1000001, "q": 0.5}}]},
         "step 'q': size must be an integer >= 1 and <= 1000000"),
        ({"steps": [{"id": "w", "type": "window", "params": {"values": 10 ** 9, "agg": "list"}}]},
         "step 'w': values must be an integer >= 0 and <= 1000000"),
    ] + [({"steps": [{"id": "o", "type": "pipe_out", "params": params}]}, "step 'o': " + words) for params, words in (
        ({"to": "127.0.0.1:1", "peer": 7}, "peer must be a device name"),
        ({"to": "127.0.0.1:1", "time-frame": -1}, "time-frame must be a non-negative integer"),
        ({"to": "127.0.0.1:1", "acks": 1}, "acks must be true or false"),
        ({"to": "127.0.0.1:1", "buffer": 0}, "buffer must be a positive number of values, got 0"),
        ({"to": "127.0.0.1:1", "spool": "x"}, "spool must be a number of bytes (0: off), got 'x'"))]
    for asg, words in bads:
        conna.send({"deploy": {"assignment": asg}})
        n = len(ca.replies("error"))
        assert loop.run_until(lambda: len(ca.replies("error")) > n, 5000)
        err = ca.replies("error")[-1]
        assert err["code"] == "bad-assignment" and words in err["message"], (words, err)
    before = len(ca.replies("deliver"))
    assert loop.run_until(lambda: len(ca.replies("deliver")) > before + 2, 5000)
    assert ca.closed is None
    a.close()
    b.close()


def test_specs_of_the_wrong_shape_are_refused_by_name_and_the_device_deploys_again():
    # a pipe's edge or address that is no string, params or inputs of the wrong type: refused
    # naming the step and the field before anything is torn down (an edge of another type used
    # to be deployed and then broke every later deployment of the device), and the device takes
    # the next good assignment
    loop, a, aaddr, b, baddr = two_devices()
    ca, conna, good = running(loop, aaddr)
    src = {"id": "s", "type": "source", "params": {"sensor": "counter", "rate": 200}}
    bads = [
        ([{"id": "i", "type": "pipe_in", "params": {"edge": 5}}], "step 'i': edge must be a string"),
        ([src, {"id": "o", "type": "pipe_out", "params": {"edge": ["e"], "to": "127.0.0.1:1"}, "inputs": ["s"]}],
         "step 'o': edge must be a string"),
        ([src, {"id": "o", "type": "pipe_out", "params": {"edge": "e", "to": 5}, "inputs": ["s"]}],
         "step 'o': to must be an address string"),
        ([{"id": "i", "type": "pipe_in", "params": {"edge": "e", "from": {"h": 1}}}],
         "step 'i': from must be an address string"),
        ([{"id": "s", "type": "source", "params": "counter"}], "step 's': params must be an object, got 'counter'"),
        ([{"id": "i", "type": "pipe_in", "params": [1]}], "step 'i': params must be an object"),
        ([src, {"id": "k", "type": "print", "inputs": "s"}], "step 'k': inputs must be a list of step ids, got 's'"),
        ([src, {"id": "k", "type": "print", "inputs": {"s": 0}}], "step 'k': inputs must be a list of step ids"),
        ([src, {"id": "k", "type": "print", "inputs": [{"s": 0}]}], "step 'k'"),
    ]
    for steps, words in bads:
        n = len(ca.replies("error"))
        conna.send({"deploy": {"assignment": {"pipeline": "p", "epoch": 5, "steps": steps}}})
        assert loop.run_until(lambda: len(ca.replies("error")) > n, 5000), (words, ca.messages[-3:])
        err = ca.replies("error")[-1]
        assert err["code"] == "bad-assignment" and words in err["message"], (words, err)
    # the old assignment ran on through every refusal
    before = len(ca.replies("deliver"))
    assert loop.run_until(lambda: len(ca.replies("deliver")) > before + 2, 5000)
    # and the device deploys again
    good2 = {"pipeline": "p", "epoch": 2, "steps": good["steps"]}
    conna.send({"deploy": {"assignment": good2}})
    assert loop.run_until(lambda: [d for d in ca.replies("deployed") if d["epoch"] == 2], 5000), ca.messages[-3:]
    assert ca.closed is None
    a.close()
    b.close()


def test_an_epoch_or_pipeline_of_the_wrong_type_is_refused_naming_the_field():
    # a deployment from another controller: a string epoch or a list pipeline used to be deployed
    # and carried into every status and stop reply; now refused, the running assignment runs on
    loop, a, aaddr, b, baddr = two_devices()
    ca, conna, good = running(loop, aaddr)
    bads = [({"pipeline": "p", "epoch": "7"}, "epoch must be an integer, not str"),
            ({"pipeline": "p", "epoch": 1.5}, "epoch must be an integer, not float"),
            ({"pipeline": "p", "epoch": True}, "epoch must be an integer, not bool"),
            ({"pipeline": ["p"], "epoch": 3}, "pipeline must be a string, not list"),
            ({"pipeline": {"p": 1}, "epoch": 3}, "pipeline must be a string, not dict")]
    for fields, words in bads:
        asg = dict(fields, steps=good["steps"])
        n = len(ca.replies("error"))
        conna.send({"deploy": {"assignment": asg}})
        assert loop.run_until(lambda: len(ca.replies("error")) > n, 5000), (words, ca.messages[-3:])
        err = ca.replies("error")[-1]
        assert err["code"] == "bad-assignment" and words in err["message"], (words, err)
    before = len(ca.replies("deliver"))
    assert loop.run_until(lambda: len(ca.replies("deliver")) > before + 2, 5000)
    conna.send({"status": {}})
    assert loop.run_until(lambda: ca.replies("status"), 5000)
    assert ca.replies("status")[-1]["assignment"]["epoch"] == good.get("epoch", 0)
    assert ca.closed is None
    a.close()
    b.close()


def test_values_that_cannot_travel_leave_a_pipe_as_null_and_the_others_follow():
    # NaN and infinity (JSON cannot carry them) and a value larger than any frame: each leaves as
    # null in its place, counted in the pipe's "nulled" and logged; the values around it arrive
    # with their numbering intact (before, the first such value stalled the pipe for good)
    for acks in (True, False):
        nulled_through_a_pipe(acks)


def nulled_through_a_pipe(acks):
    loop, a, aaddr, b, baddr = two_devices()
    code = {"odd": "def f(x):\n    if x % 10 == 2:\n        return float('nan')\n"
                   "    if x % 10 == 3:\n        return float('-inf')\n"
                   "    if x == 7:\n        return 'x' * 20000\n    return [x, {'v': x}]\n"}
    asg_b = {"pipeline": "p", "epoch": 1, "steps": [
        {"id": "in", "type": "pipe_in", "params": {"edge": "e1"}},
        {"id": "k", "type": "callback", "params": {}, "inputs": ["in"]}]}
    asg_a = {"pipeline": "p", "epoch": 1, "code": code, "steps": [
        {"id": "s", "type": "source", "params": {"sensor": "counter", "count": 40}},
        {"id": "m", "type": "map", "params": {"fn": "odd:f"}, "inputs": ["s"]},
        {"id": "o", "type": "pipe_out", "params": {"edge": "e1", "to": baddr, "time-frame": 5, "acks": acks},
         "inputs": ["m"]}]}
    cb, connb = control(loop, baddr)
    ca, conna = control(loop, aaddr)
    connb.send({"deploy": {"assignment": asg_b}})
    conna.send({"deploy": {"assignment": asg_a}})
    assert loop.run_until(lambda: cb.replies("deployed") and ca.replies("deployed"), 5000), cb.messages + ca.messages
    connb.send({"start": {}})
    assert loop.run_until(lambda: cb.replies("started"), 5000)
    conna.send({"start": {}})

    def got():
        return [v for d in cb.replies("deliver") for v in d["values"]]
    assert loop.run_until(lambda: len(got()) >= 40, 10000), (acks, got())
    want = [None if x % 10 in (2, 3) or x == 7 else [x, {"v": x}] for x in range(40)]
    assert got() == want, (acks, got())
    conna.send({"status": {}})
    assert loop.run_until(lambda: ca.replies("status"), 5000)
    o = ca.replies("status")[0]["assignment"]["steps"]["o"]
    assert o["nulled"] == 9 and o["out"] == 40 and o["dropped"] == 0, (acks, o)
    a.close()
    b.close()


def test_pipe_to_unknown_edge_is_refused():
    loop, a, aaddr, b, baddr = two_devices()
    c = Collector()
    conn = transport.dial(loop, baddr, c)
    conn.send({"pipe": {"edge": "nowhere", "epoch": 1}})
    assert loop.run_until(lambda: c.closed is not None, 5000)
    assert c.messages[0]["error"]["code"] == "unknown-edge"
    a.close()
    b.close()


def test_pipe_or_pull_naming_an_edge_that_is_no_string_is_refused_and_the_pipeline_runs_on():
    loop, a, aaddr, b, baddr = two_devices()
    ca, conna, good = running(loop, aaddr)
    for msg in ({"pipe": {"edge": ["e1"], "epoch": 1}}, {"pull": {"edge": {"e": 1}, "epoch": 1}},
                {"pipe": {"edge": 5}}, {"pull": ["k"]}):
        c = Collector()
        conn = transport.dial(loop, aaddr, c)
        conn.send(msg)
        assert loop.run_until(lambda: c.closed is not None, 5000), (msg, c.messages)
        assert c.messages and c.messages[0]["error"]["code"] == "unknown-edge", (msg, c.messages)
    before = len(ca.replies("deliver"))
    assert loop.run_until(lambda: len(ca.replies("deliver")) > before + 2, 5000)
    conna.send({"status": {}})
    assert loop.run_until(lambda: ca.replies("status"), 5000)
    assert ca.replies("status")[0]["errors"] == 0, ca.replies("status")[0]     # nothing raised inside
    a.close()
    b.close()


def test_a_burst_of_callback_values_leaves_in_messages_that_fit_any_link():
    # A source that gives all its values at once: they wait DELIVER_MS, then leave as several
    # deliver messages, each within DELIVER_MAX bytes (a keyed link or a gateway's relay could
    # not carry one message with all of them), in order, none lost.
    from sensormesh.device import codec
    from sensormesh.device.runtime.delivery import DELIVER_MAX
    loop = transport.Loop()
    a = Device("a", ["counter@0"], loop=loop)
    addr = listen(a)
    from sensormesh.device.compat import MICROPYTHON
    n = 800 if MICROPYTHON else 3000      # within what a device keeps for the controller (MAX_UNDELIVERED)
    asg = {"pipeline": "p", "epoch": 1, "steps": [
        {"id": "s", "type": "source", "params": {"sensor": "counter", "count": n}},
        {"id": "k", "type": "callback", "params": {"name": "out"}, "inputs": ["s"]}]}
    c, conn = control(loop, addr)
    conn.send({"deploy": {"assignment": asg}})
    assert loop.run_until(lambda: c.replies("deployed"), 5000), c.messages
    conn.send({"start": {}})

    def got():
        return [v for d in c.replies("deliver") for v in d["values"]]
    assert loop.run_until(lambda: len(got()) >= n, 10000), len(got())
    assert got() == list(range(n))
    sizes = [len(codec.dumps({"deliver": d})) for d in c.replies("deliver")]
    assert len(sizes) > 1 and max(sizes) <= DELIVER_MAX, sizes
    conn.close()
    a.close()


def test_a_device_short_of_memory_refuses_its_assignment_saying_so_and_keeps_running():
    # the memory runs out while the assignment is built (made to: every allocation of the build fails)
    from sensormesh.device.runtime import deploy
    loop, a, aaddr, b, baddr = two_devices()
    ca, conna, good = running(loop, aaddr)
    build = deploy.build

    def short(rt, asg):
        raise MemoryError("memory allocation failed, allocating 76 bytes")
    deploy.build = short
    try:
        conna.send({"deploy": {"assignment": dict(good, epoch=2)}})
        assert loop.run_until(lambda: ca.replies("error"), 5000), ca.messages[-3:]
    finally:
        deploy.build = build
    err = ca.replies("error")[-1]
    assert err["code"] == "out-of-memory" and "no memory free for its assignment" in err["message"], err
    # the device still answers and runs what it ran; given the memory, it takes the assignment
    conna.send({"status": {}})
    assert loop.run_until(lambda: ca.replies("status"), 5000)
    assert ca.replies("status")[-1]["assignment"]["epoch"] == 1
    before = len(ca.replies("deliver"))
    assert loop.run_until(lambda: len(ca.replies("deliver")) > before + 2, 5000)
    n = len(ca.replies("deployed"))
    conna.send({"deploy": {"assignment": dict(good, epoch=2)}})
    assert loop.run_until(lambda: len(ca.replies("deployed")) > n, 5000), ca.messages[-3:]
    assert ca.replies("deployed")[-1]["epoch"] == 2
    assert ca.closed is None
    a.close()
    b.close()


def test_a_device_refuses_an_assignment_when_even_the_deployment_code_finds_no_memory():
    # the memory runs out before the assignment is looked at (on a board: loading runtime/deploy.py
    # itself); made to: the deployment's entry point fails
    from sensormesh.device.runtime import deploy
    loop, a, aaddr, b, baddr = two_devices()
    ca, conna, good = running(loop, aaddr)
    on_deploy = deploy.on_deploy

    def short(rt, session, body):
        raise MemoryError("memory allocation failed, allocating 1024 bytes")
    deploy.on_deploy = short
    try:
        conna.send({"deploy": {"assignment": dict(good, epoch=2)}})
        assert loop.run_until(lambda: ca.replies("error"), 5000), ca.messages[-3:]
    finally:
        deploy.on_deploy = on_deploy
    err = ca.replies("error")[-1]
    assert err["code"] == "out-of-memory" and "no memory free for its assignment" in err["message"], err
    before = len(ca.replies("deliver"))
    assert loop.run_until(lambda: len(ca.replies("deliver")) > before + 2, 5000)
    conna.send({"status": {}})
    assert loop.run_until(lambda: ca.replies("status"), 5000)
    assert ca.replies("status")[-1]["assignment"]["epoch"] == 1
    assert ca.closed is None
    a.close()
    b.close()


def test_the_counts_are_gathered_without_loading_a_module_per_node():
    # a status reply's counts (a source's, a window's own stats on top of a step's, a callback's)
    # are runtime/report.py's: none of the modules of the nodes' other rare methods loads for them
    import sys
    loop = transport.Loop()
    a = Device("a", ["counter@0"], loop=loop)
    c, conn = control(loop, listen(a))
    asg = {"pipeline": "p", "epoch": 1, "steps": [
        {"id": "s", "type": "source", "params": {"sensor": "counter", "rate": 200}},
        {"id": "w", "type": "window", "params": {"values": 2}, "inputs": ["s"]},
        {"id": "k", "type": "callback", "params": {}, "inputs": ["w"]}]}
    conn.send({"deploy": {"assignment": asg}})
    conn.send({"start": {}})
    assert loop.run_until(lambda: c.replies("deliver"), 5000)
    others = ["sensormesh.device.steps.base", "sensormesh.device.runtime.sources",
              "sensormesh.device.runtime.pipe_counts"]
    for m in others:
        sys.modules.pop(m, None)
    conn.send({"status": {}})
    assert loop.run_until(lambda: c.replies("status"), 5000)
    st = c.replies("status")[0]["assignment"]["steps"]
    assert [m for m in others if m in sys.modules] == []
    assert st["s"]["out"] >= 2 and st["s"]["errors"] == 0 and "missed" in st["s"], st
    assert st["w"]["in"] >= 2 and st["w"]["out"] >= 1 and "open" in st["w"] and st["w"]["dropped"] == 0, st
    assert st["k"]["out"] == st["k"]["in"] >= 1, st
    a.close()
