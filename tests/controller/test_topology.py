"""Topology model: validation with key paths, who dials whom, data and control routes,
failure analysis."""

import math

import pytest

from sensormesh.controller import topology as T
from sensormesh.controller.topology import CONTROLLER, Topology

# Field devices behind two gateways; the office reaches the cloud over a one-way link.
#
#   field: esp-1 esp-2 [gw-1 gw-2]   office: [gw-1 gw-2] pc (+controller)   cloud: srv
#                                    office ==(one-way, cost 5)==> cloud
TWO_GW = {
    "controller": ["office"],
    "domains": {
        "field": {"devices": ["esp-1", "esp-2", "gw-1", "gw-2"]},
        "office": {"devices": ["gw-1", "gw-2", "pc"]},
        "cloud": {"devices": ["srv"]},
    },
    "links": [{"from": "office", "to": "cloud", "cost": 5}],
}
TWO_GW_DEVICES = ["esp-1", "esp-2", "gw-1", "gw-2", "pc", "srv"]
TWO_GW_DEVICES_TUPLE = tuple(TWO_GW_DEVICES)

# One gateway only.
ONE_GW = {
    "controller": "office",
    "domains": {"field": ["esp-1", "esp-2", "gw-1"], "office": ["gw-1", "pc"]},
}

# The controller is in the cloud; the field device can only dial out to it.
DIAL_OUT = {
    "controller": ["cloud"],
    "domains": {"cloud": ["srv"], "field": ["esp-1"]},
    "links": [{"from": "field", "to": "cloud"}],
}

# A sensor behind a one-way link into the gateway's domain: it registers with the gateway.
BEHIND_GW = {
    "controller": ["office"],
    "domains": {"office": ["pc", "gw"], "plant": ["gw"], "sensors": ["s1"]},
    "links": [{"from": "sensors", "to": "plant"}],
}


def topo(net=TWO_GW, devices=TWO_GW_DEVICES):
    return Topology.from_dict(net, devices)


def error_of(net, devices=None):
    with pytest.raises(T.TopologyError) as info:
        Topology.from_dict(net, devices)
    return info.value


# --- validation -------------------------------------------------------------------------------


def test_valid_network_parses():
    t = topo()
    assert t.devices == ("esp-1", "esp-2", "gw-1", "gw-2", "pc", "srv")
    assert t.gateways == ("gw-1", "gw-2")
    assert t.domains_of("gw-1") == {"field", "office"}
    assert t.domains_of(CONTROLLER) == {"office"}
    assert t.domains["field"].cost == 1
    assert t.links == (T.Link("office", "cloud", 5),)


def test_misspelt_names_in_the_network_section_get_a_suggestion():
    devices = ["esp-1", "pc", "srv"]
    cases = [
        ({"domain": {"a": devices}}, "unknown key 'domain' (did you mean 'domains'?)"),
        ({"domains": {"a": {"device": devices}}}, "unknown key 'device' (did you mean 'devices'?)"),
        ({"domains": {"a": ["esp-1", "pc", "svr"]}}, "unknown device 'svr' (did you mean 'srv'?)"),
        ({"controller": "offce", "domains": {"office": ["esp-1", "pc"], "cloud": ["srv"]}},
         "'offce' is neither a domain nor a device in a domain (did you mean 'office'?)"),
        ({"controller": "office", "domains": {"office": ["esp-1", "pc"], "cloud": ["srv"]},
          "links": [{"form": "office", "to": "cloud"}]}, "unknown key 'form' (did you mean 'from'?)"),
        ({"controller": "office", "domains": {"office": ["esp-1", "pc"], "cloud": ["srv"]},
          "links": [{"from": "office", "to": "clod"}]},
         "unknown domain 'clod' (did you mean 'cloud'?); domains: office, cloud"),
    ]
    for net, words in cases:
        problems = T.Topology.check(net, devices)
        assert any(words in str(p) for p in problems), (words, [str(p) for p in problems])


def test_unknown_device_points_at_the_list_entry():
    net = {"controller": "a", "domains": {"a": {"devices": ["x", "y", "nope"]}}}
    e = error_of(net, ["x", "y"])
    assert isinstance(e, T.UnknownDeviceError)
    assert e.path == ("network", "domains", "a", "devices", 2)
    assert str(e) == "network.domains.a.devices[2]: unknown device 'nope' (not in devices:)"
    # The short form (a bare list) has no "devices" key in the path.
    e = error_of({"domains": {"a": ["x", "nope"]}}, ["x"])
    assert e.path == ("network", "domains", "a", 1)


def test_device_in_no_domain():
    e = error_of({"domains": {"a": ["x"]}}, ["x", "lonely"])
    assert isinstance(e, T.DeviceWithoutDomainError)
    assert "'lonely'" in e.message and e.path == ("network", "domains")


def test_domain_nobody_can_reach():
    net = {"controller": ["office"], "domains": {"office": ["pc"], "field": ["esp-1", "esp-2"]}}
    e = error_of(net)
    assert isinstance(e, T.UnreachableDomainError)
    assert e.path == ("network", "domains", "field")
    assert "esp-1, esp-2" in e.message and "gateway" in e.message


def test_domain_reachable_only_against_the_link_direction_is_fine():
    # The field cannot be dialed, but its devices dial out: reachable for control and data.
    t = topo(DIAL_OUT, None)
    assert t.control_route("esp-1").mode == "register"


def test_self_link_unknown_domain_duplicate_link():
    base = {"controller": "a", "domains": {"a": ["x"], "b": ["y"]}}
    e = error_of(dict(base, links=[{"from": "a", "to": "a"}]))
    assert isinstance(e, T.SelfLinkError) and e.path == ("network", "links", 0)
    e = error_of(dict(base, links=[{"from": "a", "to": "b"}, {"from": "a", "to": "zz"}]))
    assert isinstance(e, T.UnknownDomainError) and e.path == ("network", "links", 1, "to")
    e = error_of(dict(base, links=[{"from": "a", "to": "b"}, {"from": "a", "to": "b"}]))
    assert isinstance(e, T.DuplicateLinkError) and e.path == ("network", "links", 1)


@pytest.mark.parametrize("cost", [0, -1, "5", True, None, math.inf, math.nan])
def test_bad_costs(cost):
    e = error_of({"controller": "a", "domains": {"a": ["x"], "b": ["y"]},
                  "links": [{"from": "a", "to": "b", "cost": cost}]})
    assert isinstance(e, T.BadCostError) and e.path == ("network", "links", 0, "cost")
    e = error_of({"domains": {"a": {"devices": ["x"], "cost": cost}}})
    assert isinstance(e, T.BadCostError) and e.path == ("network", "domains", "a", "cost")


def test_duplicates_in_list_form():
    net = {"controller": "a",
           "domains": [{"name": "a", "devices": ["x"]}, {"name": "a", "devices": ["y"]}]}
    e = error_of(net)
    assert isinstance(e, T.DuplicateDomainError) and e.path == ("network", "domains", 1)
    e = error_of({"domains": {"a": ["x", "x"]}})
    assert isinstance(e, T.DuplicateDeviceError) and e.path == ("network", "domains", "a", 1)
    # The list form is otherwise the same as the mapping form.
    t = Topology.from_dict({"controller": "a", "domains": [{"name": "a", "devices": ["x"]},
                                                          {"name": "b", "devices": ["x", "y"]}]})
    assert t.gateways == ("x",)


def test_syntax_errors_are_named():
    cases = [
        (["not", "a", "mapping"], ()),
        ({"domains": {"a": ["x"]}, "domian": 1}, ("domian",)),
        ({"controller": "a"}, ()),                                       # no domains
        ({"domains": {"a": "x"}}, ("domains", "a")),
        ({"domains": {"a": {"devices": ["x"], "cots": 2}}}, ("domains", "a", "cots")),
        ({"domains": {"a": [5]}}, ("domains", "a", 0)),
        ({"domains": {"a": ["x"]}, "links": {"from": "a"}}, ("links",)),
        ({"domains": {"a": ["x"], "b": ["y"]}, "controller": "a", "links": [{"to": "b"}]},
         ("links", 0)),
    ]
    for net, path in cases:
        e = error_of(net)
        assert isinstance(e, T.NetworkSyntaxError), (net, e)
        assert e.path == ("network",) + path, (net, e)


def test_controller_placement_errors():
    two = {"a": ["x"], "b": ["x", "y"]}
    e = error_of({"domains": two})
    assert isinstance(e, T.ControllerPlacementError) and "missing key 'controller'" in str(e)
    e = error_of({"domains": two, "controller": ["a", "mars"]})
    assert isinstance(e, T.UnknownDomainError) and e.path == ("network", "controller", 1)
    e = error_of({"domains": {"a": ["a"], "b": ["a", "y"]}, "controller": "a"})
    assert isinstance(e, T.ControllerPlacementError) and "both a domain and a device" in str(e)
    e = error_of({"domains": two, "controller": ["x", "y"]})
    assert isinstance(e, T.ControllerPlacementError) and e.path == ("network", "controller", 1)
    e = error_of({"domains": {"a": ["controller"]}})
    assert isinstance(e, T.ReservedNameError)


def test_empty_domain_needs_the_controller():
    e = error_of({"controller": "a", "domains": {"a": ["x"], "b": []}})
    assert isinstance(e, T.EmptyDomainError) and e.path == ("network", "domains", "b")
    # A domain with only the controller in it is its place in the network.
    t = Topology.from_dict({"controller": "internet",
                            "domains": {"internet": [], "field": ["esp-1"]},
                            "links": [{"from": "field", "to": "internet"}]})
    assert t.control_route("esp-1").mode == "register"


def test_check_returns_every_error():
    errors = Topology.check({"domains": {"a": ["x", "x", "q"], "b": {"devices": ["y"],
                                                                    "cost": -1}},
                             "links": [{"from": "a", "to": "a"}, {"from": "a", "to": "zz"}],
                             "bogus": 1}, ["x", "y", "z"])
    kinds = [type(e).__name__ for e in errors]
    assert kinds == ["NetworkSyntaxError", "DuplicateDeviceError", "UnknownDeviceError",
                     "BadCostError", "SelfLinkError", "UnknownDomainError",
                     "ControllerPlacementError", "DeviceWithoutDomainError"]
    assert Topology.check(TWO_GW, TWO_GW_DEVICES) == []


def test_no_network_section_means_one_domain():
    t = Topology.from_dict(None, ["a", "b"])
    assert t.can_dial("a", "b") and t.can_dial("b", "a")
    assert t.control_route("a").mode == "direct"
    assert t.route("a", "b").devices == ("a", "b")


def test_custom_path_prefix_for_other_file_layouts():
    with pytest.raises(T.UnknownDeviceError) as info:
        Topology.from_dict({"domains": {"a": ["q"]}}, ["x"], path=("pipeline", "net"))
    assert info.value.path == ("pipeline", "net", "domains", "a", 0)


def test_to_dict_round_trips():
    t = topo()
    again = Topology.from_dict(t.to_dict(), TWO_GW_DEVICES)
    assert again.to_dict() == t.to_dict()
    assert again.route("esp-1", "srv") == t.route("esp-1", "srv")


# --- who dials whom ---------------------------------------------------------------------------


def test_can_dial_domains_and_links():
    t = topo()
    assert t.can_dial("esp-1", "esp-2") and t.can_dial("esp-2", "esp-1")
    assert t.can_dial("pc", "srv") and not t.can_dial("srv", "pc")
    assert t.can_dial("gw-1", "srv") and not t.can_dial("esp-1", "srv")
    assert not t.can_dial("esp-1", "pc") and not t.can_dial("pc", "esp-1")
    assert t.can_dial(CONTROLLER, "gw-1") and t.can_dial(CONTROLLER, "srv")
    assert not t.can_dial(CONTROLLER, "esp-1")


def test_dialer_sender_first_else_the_end_that_can():
    t = topo()
    assert t.dialer("pc", "srv") == "pc"
    assert t.dialer("srv", "pc") == "pc"          # data flows against the dial direction
    assert t.dialer("esp-1", "gw-1") == "esp-1"
    assert t.dialer("gw-1", "esp-1") == "gw-1"
    assert t.dialer("esp-1", "pc") is None


# --- data routes ------------------------------------------------------------------------------


def test_route_through_a_gateway_and_a_one_way_link():
    t = topo()
    r = t.route("esp-1", "srv")
    assert r.devices == ("esp-1", "gw-1", "srv")
    assert r.relays == ("gw-1",)
    assert r.dialers() == [("esp-1", "gw-1"), ("gw-1", "srv")]
    assert [h.via for h in r.hops] == ["domain field", "link office->cloud"]
    assert r.cost == 6 and r.hop_count == 2
    assert t.link("esp-1", "srv") == (6, r)
    assert t.link_cost("esp-1", "srv") == (6, r)
    assert r.explain() == ("esp-1 -> gw-1 -> srv (esp-1 dials gw-1 (domain field); gw-1 dials "
                           "srv (link office->cloud); relay on gw-1)")


def test_route_against_the_dial_direction():
    t = topo()
    r = t.route("srv", "esp-2")
    assert r.devices == ("srv", "gw-1", "esp-2")
    first = r.hops[0]
    assert first.dialer == "gw-1" and first.listener == "srv" and first.against_dial
    assert not r.hops[1].against_dial


def test_route_to_self_and_no_route():
    t = topo()
    assert t.link("pc", "pc") == (0, T.Route(("pc",)))
    split = Topology([T.Domain("a", ("x",)), T.Domain("b", ("y",))], (), {"a"})
    assert split.route("x", "y") is None and split.link("x", "y") is None
    with pytest.raises(KeyError):
        t.route("pc", "nope")
    with pytest.raises(ValueError):
        t.route(CONTROLLER, "pc")


def test_fewest_hops_first_then_cost():
    # x -> y directly over an expensive domain (1 hop, cost 10) beats two cheap hops.
    net = {"controller": "a", "domains": {"a": ["x", "g"], "b": ["g", "y"],
                                          "slow": {"devices": ["x", "y"], "cost": 10}}}
    t = Topology.from_dict(net)
    r = t.route("x", "y")
    assert r.devices == ("x", "y") and r.cost == 10 and r.hops[0].via == "domain slow"
    # Same hop count: the cheaper gateway wins.
    net = {"controller": "a", "domains": {"a": ["x", "g1", "g2"],
                                          "b": {"devices": ["g1", "y"], "cost": 5},
                                          "c": {"devices": ["g2", "y"], "cost": 1}}}
    r = Topology.from_dict(net).route("x", "y")
    assert r.devices == ("x", "g2", "y") and r.cost == 2


def test_chain_of_gateways():
    net = {"controller": "a", "domains": {"a": ["x", "g1"], "b": ["g1", "g2"], "c": ["g2", "y"]}}
    t = Topology.from_dict(net)
    r = t.route("y", "x")
    assert r.devices == ("y", "g2", "g1", "x") and r.relays == ("g2", "g1")
    assert t.control_route("y").forwarders == ("g1", "g2")


def test_links_do_not_chain_without_a_device():
    # a -> b -> c links, b empty of devices except the controller: x cannot reach z.
    net = {"controller": "b", "domains": {"a": ["x"], "b": [], "c": ["z"]},
           "links": [{"from": "a", "to": "b"}, {"from": "b", "to": "c"}]}
    t = Topology.from_dict(net)
    assert t.control_route("x").mode == "register" and t.control_route("z").mode == "direct"
    assert t.route("x", "z") is None                     # the controller relays no data
    assert t.data_islands() == [("x",), ("z",)]
    assert t.explain_no_route("x", "z") == (
        "no route from x (domain a) to z (domain c): no gateway (a device in two domains) or "
        "link joins their domains, directly or through other domains; the controller does not "
        "relay data")
    assert "data islands (no data route between them): x; z" in t.describe()
    assert topo().data_islands() == [TWO_GW_DEVICES_TUPLE]
    assert topo().explain_no_route("esp-1", "srv") is None


def test_relay_loads():
    t = topo()
    flows = [(t.route("esp-1", "srv"), 10), (t.route("esp-2", "srv"), 5),
             (t.route("esp-1", "esp-2"), 99)]
    assert T.relay_loads(flows) == {"gw-1": 15}


# --- control routes ---------------------------------------------------------------------------


def test_control_routes_direct_forwarded_over_link():
    t = topo()
    modes = {d: r.mode for d, r in t.control_routes().items()}
    assert modes == {"esp-1": "forwarded", "esp-2": "forwarded", "gw-1": "direct",
                     "gw-2": "direct", "pc": "direct", "srv": "direct"}
    r = t.control_route("esp-1")
    assert r.devices == (CONTROLLER, "gw-1", "esp-1") and r.parent == "gw-1"
    assert r.dialers() == [(CONTROLLER, "gw-1"), ("gw-1", "esp-1")]
    assert t.control_route("srv").hops[0].via == "link office->cloud"
    assert t.registrations() == {}
    assert t.unreachable() == ()


def test_device_only_reachable_by_dialing_out():
    t = topo(DIAL_OUT, None)
    r = t.control_route("esp-1")
    assert r.mode == "register" and r.dialers() == [("esp-1", CONTROLLER)]
    assert t.registrations() == {"esp-1": CONTROLLER}
    assert t.control_route("srv").mode == "direct"
    # Data from the cloud to the field flows on the connection the field device opened.
    d = t.route("srv", "esp-1")
    assert d.devices == ("srv", "esp-1") and d.hops[0].dialer == "esp-1"


def test_device_registers_with_a_gateway():
    t = topo(BEHIND_GW, None)
    r = t.control_route("s1")
    assert r.mode == "forwarded"
    assert r.dialers() == [(CONTROLLER, "gw"), ("s1", "gw")]
    assert t.registrations() == {"s1": "gw"}
    assert "s1: forwarded: controller -> gw -> s1" in "\n".join(t.describe())


def test_controller_on_a_device_host():
    net = dict(TWO_GW, controller="pc")
    t = topo(net)
    assert t.controller_host == "pc" and t.domains_of(CONTROLLER) == {"office"}
    assert t.control_route("pc").mode == "local"
    assert t.control_route("gw-1").mode == "direct"
    assert t.control_route("esp-1").forwarders == ("gw-1",)


def test_control_routes_form_a_tree():
    t = topo()
    routes = t.control_routes()
    for dev, r in routes.items():
        if r.parent != CONTROLLER:
            assert routes[r.parent].devices == r.devices[:-1]


def test_describe():
    text = "\n".join(topo().describe())
    assert "  office: gw-1, gw-2, pc  [controller]" in text
    assert "  cloud:  srv" in text
    assert "office -> cloud (cost 5)" in text
    assert "gateways: gw-1 (field, office), gw-2 (field, office)" in text
    assert ("esp-1: forwarded: controller -> gw-1 -> esp-1 (controller dials gw-1 (domain "
            "office); gw-1 dials esp-1 (domain field); relay on gw-1)") in text


# --- failures ---------------------------------------------------------------------------------


def test_without_reroutes_through_the_other_gateway():
    t = topo().without(["gw-1"])
    assert t.route("esp-1", "srv").devices == ("esp-1", "gw-2", "srv")
    assert t.control_route("esp-1").devices == (CONTROLLER, "gw-2", "esp-1")
    assert "gw-1" not in t.devices
    with pytest.raises(KeyError):
        topo().without(["nope"])


def test_only_gateway_down_sentence():
    t = topo(ONE_GW, None)
    impact = t.affected_by(["gw-1"], [("t->k", "esp-1", "pc")], {"t": "esp-1", "k": "pc",
                                                                 "r": "gw-1"})
    assert impact.unreachable == ("esp-1", "esp-2")
    area, = impact.areas
    assert area.sentence == ("esp-1, esp-2 in domain field are unreachable from the controller: "
                             "their only gateway gw-1 is down")
    assert area.cut_by == ("gw-1",) and area.domains == ("field",)
    edge, = impact.edges
    assert edge.status == "cut" and not edge.alternative
    assert edge.sentence == ("edge t->k (esp-1 -> pc) went through gw-1, which is down; no "
                             "alternative route: esp-1 can no longer reach pc")
    assert impact.lost_steps == {"r": "gw-1"}
    assert impact.orphaned_steps == {"t": "esp-1"}
    assert not impact.ok
    assert str(impact).splitlines()[0] == "gw-1 is down"


def test_second_gateway_gives_an_alternative():
    t = topo()
    edges = [("a", "esp-1", "srv"), ("b", "pc", "srv"), ("c", "esp-2", "gw-1")]
    impact = t.affected_by(["gw-1"], edges)
    assert impact.areas == [] and impact.unreachable == ()
    a, b, c = impact.edges
    assert a.status == "rerouted" and a.alternative
    assert a.new_route.devices == ("esp-1", "gw-2", "srv")
    assert "alternative route: esp-1 -> gw-2 -> srv" in a.sentence
    assert b.status == "ok"
    assert c.status == "lost" and "gw-1 is down" in c.sentence
    assert set(impact.rerouted_control) == {"esp-1", "esp-2"}
    assert impact.rerouted_control["esp-1"].forwarders == ("gw-2",)


def test_both_gateways_down():
    impact = topo().affected_by(["gw-1", "gw-2"], [("a", "esp-1", "srv")])
    area, = impact.areas
    assert area.sentence == ("esp-1, esp-2 in domain field are unreachable from the controller: "
                             "their gateways gw-1 and gw-2 are down")
    assert impact.edges[0].status == "cut"


def test_single_device_area_and_given_route():
    t = topo(BEHIND_GW, None)
    impact = t.affected_by(["gw"], [("e", "s1", "pc", ["s1", "gw", "pc"])])
    assert impact.areas[0].sentence == ("s1 in domain sensors is unreachable from the "
                                        "controller: its only gateway gw is down")
    assert impact.edges[0].old_route.devices == ("s1", "gw", "pc")
    assert impact.edges[0].status == "cut"


def test_failure_of_an_end_device_affects_nothing_else():
    impact = topo().affected_by(["esp-2"], [("a", "esp-1", "srv")], {"x": "esp-1"})
    assert impact.ok and impact.areas == [] and impact.edges[0].status == "ok"
    assert impact.lines() == ["esp-2 is down"]


def test_graph_grows_with_memberships_not_squares():
    names = ["d%d" % i for i in range(400)]
    t = Topology.from_dict({"domains": {"big": names}}, names)
    assert t._graph.number_of_edges() < 2 * len(names) + 10
    assert t.route("d0", "d399").devices == ("d0", "d399")
    assert len(t.control_routes()) == 400
