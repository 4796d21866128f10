# Malformed control messages against a plain device in one process and one loop (pytest, and:
# micropython tests/mprun.py test_malformed): each is refused with an error naming the problem,
# nothing fails inside the device, and it keeps serving.
from sensormesh.device import transport
from sensormesh.device.core import Device

from loopkit import Collector, listen


def _ask(loop, addr, msg, key):
    c = Collector()
    conn = transport.dial(loop, addr, c)
    conn.send(msg)
    assert loop.run_until(lambda: c.replies(key) or c.replies("error") or c.closed, 5000), msg
    conn.close()
    return c


def test_forward_with_a_timeout_that_is_not_milliseconds_is_refused_by_name():
    loop = transport.Loop()
    d = Device("gw", ["counter@0"], loop=loop)
    addr = listen(d)
    try:
        for bad in ("x", -5, 1.5e300, True, [1], 10 ** 12):
            c = _ask(loop, addr, {"forward": {"to": "127.0.0.1:1", "message": {"ping": 1},
                                              "timeout": bad}}, "forwarded")
            errs = c.replies("error")
            assert errs and errs[0]["code"] == "bad-request", (bad, c.messages, c.closed)
            assert "timeout" in errs[0]["message"] and repr(bad) in errs[0]["message"], errs
        assert d.errors == 0, "a bad forward failed inside the device"
        c = _ask(loop, addr, {"ping": 3}, "pong")
        assert c.replies("pong") == [3], c.messages
    finally:
        d.close()


def test_a_pipe_whose_epoch_is_not_a_number_says_so():
    # {"epoch": "1"} is not epoch 1: the refusal must show the difference, not "belongs to
    # epoch 1; this device runs epoch 1"
    loop = transport.Loop()
    d = Device("rx", [], loop=loop)
    addr = listen(d)
    try:
        asg = {"pipeline": "p", "epoch": 1, "steps": [
            {"id": "i1", "type": "pipe_in", "params": {"edge": "e1"}},
            {"id": "k", "type": "callback", "params": {}, "inputs": ["i1"]}]}
        c = _ask(loop, addr, {"deploy": {"assignment": asg}}, "deployed")
        assert c.replies("deployed"), c.messages
        c = _ask(loop, addr, {"pipe": {"edge": "e1", "epoch": "1", "from": "tx", "seq": 0, "run": 1}}, "seq")
        err = c.replies("error")[0]
        assert err["code"] == "stale-epoch" and "epoch '1'" in err["message"], err
    finally:
        d.close()
