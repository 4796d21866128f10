"""Downstream-first ordering works from edge ids alone, for TCP and Unix pipe addresses."""
from sensormesh.controller.deploy import device_order


def pipe(kind, edge, **params):
    return {"id": kind + ":" + edge, "type": kind, "params": dict(params, edge=edge)}


def test_unix_addresses_and_relays_order_receivers_first():
    asg = {
        "esp": {"steps": [pipe("pipe_out", "s->pc@1", to="unix:/tmp/sensormesh-gw.sock")]},
        "gw": {"steps": [pipe("pipe_in", "s->pc@1"), pipe("pipe_out", "s->pc@2", to="unix:/tmp/sensormesh-pc.sock")]},
        "pc": {"steps": [pipe("pipe_in", "s->pc@2")]},
    }
    assert device_order(asg) == ["pc", "gw", "esp"]


def test_receiver_that_dials_its_sender_still_comes_first():
    # one-way link: the receiver pulls (pipe_in with from), the sender listens (pipe_out without to)
    asg = {
        "srv": {"steps": [pipe("pipe_out", "e")]},
        "pc": {"steps": [pipe("pipe_in", "e", **{"from": "198.18.0.9:7000"})]},
    }
    assert device_order(asg) == ["pc", "srv"]


def test_devices_without_pipes_in_name_order():
    assert device_order({"b": {"steps": []}, "a": {"steps": []}}) == ["a", "b"]


def test_start_waves_start_receivers_before_their_senders_and_the_rest_together():
    from sensormesh.controller.deploy import start_waves
    asg = {"pc": {"steps": [pipe("pipe_in", "r->pc")]},
           "relay": {"steps": [pipe("pipe_out", "r->pc")] + [pipe("pipe_in", "b%d->r" % i) for i in range(3)]},
           "lone": {"steps": []}}
    for i in range(3):
        asg["b%d" % i] = {"steps": [pipe("pipe_out", "b%d->r" % i)]}
    assert start_waves(asg) == [["lone", "pc"], ["relay"], ["b0", "b1", "b2"]]
    # a cycle: one device per wave, in name order
    cyc = {"x": {"steps": [pipe("pipe_out", "e1"), pipe("pipe_in", "e2")]},
           "y": {"steps": [pipe("pipe_in", "e1"), pipe("pipe_out", "e2")]}}
    assert start_waves(cyc) == [["x"], ["y"]]
