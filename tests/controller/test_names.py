# Device names in messages (controller/names.py): fleets in short, the domain of a file without
# `network:` and a device without an address said in words.
import pytest

from sensormesh.controller import names
from sensormesh.controller.routing import RoutingError, dial_address
from sensormesh.controller.supervisor import unreachable_text
from sensormesh.controller.topology import Topology


def test_numbered_names_are_given_as_ranges_and_long_lists_in_short():
    fleet = ["board-%d" % i for i in range(40, 0, -1)] + ["pc"]
    assert names.name_list(fleet) == "board-1..board-40, pc"
    assert names.name_list(["b", "a", "c"], last=" and ") == "a, b and c"
    assert names.name_list(["n1", "n2", "n4", "n5", "n6"]) == "n1, n2, n4..n6"
    many = names.name_list(["s%d" % i for i in range(0, 400, 2)])
    assert many == "200 devices: s0, s2, s4, s6, s8, ... and 195 more"
    assert len(many) < 60
    assert names.name_list([]) == "none"


def test_a_device_in_a_file_without_network_is_in_no_named_domain():
    topo = Topology.single_domain(["a", "b"])
    route = topo.control_route("a")
    assert "controller dials a (in no named domain)" in route.explain(), route.explain()
    assert "default" not in route.explain()
    assert names.named_domains_of(topo)("a") == set()
    from sensormesh.controller.deploy_cli import status_counts
    st = {n: {"error": "down"} for n in ("a", "b")}
    assert status_counts(st, names.named_domains_of(topo)) == ["2 devices: 2 down",
                                                               "  (in no named domain): 2 down"]
    # a domain the user named "default" is shown by its name
    named = Topology.from_dict({"controller": ["default"], "domains": {"default": {"devices": ["a"]}}}, ["a"])
    assert "(domain default)" in named.control_route("a").explain()


def test_a_device_without_an_address_is_said_so():
    with pytest.raises(RoutingError, match="device b has no address at all: give it `address: host:port`"):
        dial_address("b", "lab", {"b": {}})
    with pytest.raises(RoutingError, match=r"device b has no address in domain lab \(it has addresses in "
                                           r"domain office only\)"):
        dial_address("b", "lab", {"b": {"addresses": {"office": "10.0.0.1:7000"}}})


def test_many_unreachable_devices_make_one_short_message():
    errors = {"board-%d" % i: "device board-%d at 127.0.0.1:%d is not reachable: refused" % (i, 21000 + i)
              for i in range(1, 41)}
    text = unreachable_text(errors)
    assert text == ("40 devices cannot be reached: board-1..board-40; the first: device board-1 at "
                    "127.0.0.1:21001 is not reachable: refused")
    two = {k: errors[k] for k in ("board-10", "board-2")}
    assert unreachable_text(two) == errors["board-2"] + "; " + errors["board-10"]


def test_other_messages_list_devices_the_same_short_way():
    from sensormesh.controller import deploy
    from sensormesh.controller.supervisor import brief_names
    fleet = ["board-%d" % i for i in range(1, 201)]
    assert brief_names(fleet) == "board-1..board-200"
    with pytest.raises(deploy.DeployError) as e:
        deploy.deploy({n: {} for n in fleet}, {})
    assert str(e.value) == ("no address for device(s): board-1..board-200; give each `address: host:port` "
                            "or mark it `local: true`")


def test_a_device_with_addresses_only_for_named_domains_in_a_file_without_network():
    from sensormesh.controller.routing import hop_address
    topo = Topology.single_domain(["a", "b"])
    hop = topo.route("a", "b").hops[0]
    with pytest.raises(RoutingError) as e:
        hop_address("b", hop, {"b": {"addresses": {"lab": "10.0.0.1:7000"}}})
    assert str(e.value) == ("device b has no address outside named domains: give it `address: host:port` "
                            "(it has addresses only in domain lab)")
