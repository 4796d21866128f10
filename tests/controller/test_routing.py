"""Routing: one cross-device edge -> pipe steps for every hop of its route, relays on gateways,
the dialing end of each hop holding the listener's address in the right domain."""

import pytest

from sensormesh.controller import routing
from sensormesh.controller.routing import RoutingError, edge_fragments, relay_assignment
from sensormesh.controller.topology import Topology

ONE_GW = {
    "controller": ["office"],
    "domains": {"field": ["esp-1", "gw-1"], "office": ["gw-1", "pc"]},
}
INV_ONE = {
    "esp-1": {"address": "198.18.1.1:7000"},
    "gw-1": {"addresses": {"field": "198.18.1.2:7000", "office": "198.18.2.2:7000"}},
    "pc": {"addresses": {"office": "198.18.2.3:7000"}},
}
# srv in the cloud can only be dialed from the office, never dial into it.
ONE_WAY = {
    "controller": ["office"],
    "domains": {"office": ["pc"], "cloud": ["srv"]},
    "links": [{"from": "office", "to": "cloud"}],
}
INV_WAY = {"pc": "198.18.1.1:7000", "srv": {"addresses": {"cloud": "198.18.2.2:7000"}}}
# Two gateways in a chain: field -> gw-a -> mid -> gw-b -> office; mid reaches office one way.
CHAIN = {
    "domains": {"field": ["esp-1", "gw-a"], "mid": ["gw-a", "gw-b"], "office": ["pc"]},
    "links": [{"from": "office", "to": "mid"}],
    "controller": ["office"],
}
INV_CHAIN = {
    "esp-1": {"addresses": {"field": "198.18.1.1:7000"}},
    "gw-a": {"addresses": {"field": "198.18.1.2:7000", "mid": "198.18.2.2:7000"}},
    "gw-b": {"addresses": {"mid": "198.18.2.3:7000"}},
    "pc": {"addresses": {"office": "198.18.3.4:7000"}},
}


def topo(d, devs):
    return Topology.from_dict(d, devs)


def by_id(steps):
    return {s["id"]: s for s in steps}


def test_direct_edge_sender_dials():
    t = topo(ONE_GW, ["esp-1", "gw-1", "pc"])
    f = edge_fragments("e1", "gw-1", "pc", t, INV_ONE, time_frame=20, inputs=["m"])
    assert f.hop_edges == ["e1"] and f.relays == ()
    assert f.steps["gw-1"] == [{"id": "out:e1", "type": "pipe_out", "inputs": ["m"],
                                "params": {"edge": "e1", "time-frame": 20, "to": "198.18.2.3:7000"}}]
    assert f.steps["pc"] == [{"id": "in:e1", "type": "pipe_in", "params": {"edge": "e1"}}]
    assert (f.out_id, f.in_id) == ("out:e1", "in:e1")


def test_gateway_gets_a_relay_and_addresses_follow_the_hop_domain():
    t = topo(ONE_GW, ["esp-1", "gw-1", "pc"])
    f = edge_fragments("e1", "esp-1", "pc", t, INV_ONE, time_frame=10, inputs=["s"])
    assert f.route.devices == ("esp-1", "gw-1", "pc")
    assert f.hop_edges == ["e1@1", "e1@2"]
    esp = by_id(f.steps["esp-1"])
    assert esp["out:e1@1"]["params"] == {"edge": "e1@1", "time-frame": 10, "to": "198.18.1.2:7000"}
    gw = by_id(f.steps["gw-1"])
    assert set(gw) == {"in:e1@1", "out:e1@2"}
    assert gw["in:e1@1"]["params"] == {"edge": "e1@1"}
    # the relay: pipe_in -> pipe_out, no batching, dialing pc's office address
    assert gw["out:e1@2"]["inputs"] == ["in:e1@1"]
    assert gw["out:e1@2"]["params"] == {"edge": "e1@2", "time-frame": 0, "to": "198.18.2.3:7000"}
    assert f.in_id == "in:e1@2" and by_id(f.steps["pc"])["in:e1@2"]["params"] == {"edge": "e1@2"}
    asg = relay_assignment("p", 3, "gw-1", [f])
    assert asg["epoch"] == 3 and [s["id"] for s in asg["steps"]] == ["in:e1@1", "out:e1@2"]


def test_against_the_dial_direction_receiver_pulls():
    t = topo(ONE_WAY, ["pc", "srv"])
    f = edge_fragments("up", "srv", "pc", t, INV_WAY)
    hop = f.route.hops[0]
    assert hop.dialer == "pc" and hop.against_dial
    out = by_id(f.steps["srv"])["out:up"]
    assert "to" not in out["params"]               # srv waits for the pull
    assert by_id(f.steps["pc"])["in:up"]["params"] == {"edge": "up", "from": "198.18.2.2:7000"}
    # and with the link's direction the sender dials into the cloud
    g = edge_fragments("down", "pc", "srv", t, INV_WAY)
    assert by_id(g.steps["pc"])["out:down"]["params"]["to"] == "198.18.2.2:7000"


def test_two_gateways_mixed_dial_directions():
    t = topo(CHAIN, ["esp-1", "gw-a", "gw-b", "pc"])
    # gw-b is only in mid; pc (office) can dial into mid, not the reverse
    f = edge_fragments("e", "esp-1", "pc", t, INV_CHAIN)
    assert f.route.devices[0] == "esp-1" and f.route.devices[-1] == "pc"
    last = f.route.hops[-1]
    assert last.dialer == "pc"
    pin = by_id(f.steps["pc"])[f.in_id]
    assert pin["params"]["from"] == routing.dial_address(last.src, "mid", INV_CHAIN)
    # every relay is pipe_in -> pipe_out of consecutive hop edges
    for i, dev in enumerate(f.relays):
        steps = by_id(f.steps[dev])
        assert steps["out:" + f.hop_edges[i + 1]]["inputs"] == ["in:" + f.hop_edges[i]]


def test_rerouting_after_a_gateway_fails_uses_the_other_one():
    d = {"controller": ["office"],
         "domains": {"field": ["esp-1", "gw-1", "gw-2"], "office": ["gw-1", "gw-2", "pc"]}}
    devs = ["esp-1", "gw-1", "gw-2", "pc"]
    inv = dict(INV_ONE, **{"gw-2": {"addresses": {"field": "198.18.1.9:7000", "office": "198.18.2.9:7000"}}})
    t = topo(d, devs)
    f = edge_fragments("e", "esp-1", "pc", t, inv)
    used = f.relays[0]
    other = "gw-2" if used == "gw-1" else "gw-1"
    g = edge_fragments("e", "esp-1", "pc", t.without([used]), inv)
    assert g.relays == (other,)
    assert by_id(g.steps["esp-1"])["out:e@1"]["params"]["to"] == routing.dial_address(other, "field", inv)


def test_errors_name_the_problem():
    t = topo(ONE_GW, ["esp-1", "gw-1", "pc"])
    with pytest.raises(RoutingError, match="no address in domain field"):
        edge_fragments("e", "esp-1", "pc", t, dict(INV_ONE, **{"gw-1": {"addresses": {"office": "x:1"}}}))
    with pytest.raises(RoutingError, match="no route from esp-1 to pc"):
        edge_fragments("e", "esp-1", "pc", t.without(["gw-1"]), INV_ONE)
    with pytest.raises(RoutingError, match="no address in the inventory"):
        edge_fragments("e", "esp-1", "gw-1", t, {"esp-1": "a:1"})
