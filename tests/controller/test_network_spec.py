"""The `--network` syntax: conditions per domain or link, clear errors for bad specs, and what
one hop of a route goes through."""
import pytest

from sensormesh.controller.topology import Topology
from sensormesh.netlab.spec import (MSS, RTO_MIN, Condition, NetworkSpecError, hop_condition,
                                    parse, resolve)

NET = {"controller": ["office"],
       "domains": {"boards": ["esp-1", "gw"], "office": ["gw", "pc"], "cloud": ["srv"]},
       "links": [{"from": "office", "to": "cloud"}]}


def topo():
    return Topology.from_dict(NET, ["esp-1", "gw", "pc", "srv"])


def test_a_domain_with_every_condition():
    s = parse("boards:delay=20ms,jitter=5ms,loss=1%,rate=1mbit")
    assert s.target == ("domain", "boards")
    assert s.condition == Condition(delay=0.020, jitter=0.005, loss=0.01, rate=1e6)
    assert s.label == "boards"
    assert str(s.condition) == "delay=20ms,jitter=5ms,loss=1%,rate=1mbit"


def test_a_link_units_and_spaces():
    s = parse(" office -> cloud : delay = 1.5s , rate=250kbit, loss=0.02, rto=50ms ")
    assert s.target == ("link", "office", "cloud")
    assert s.condition == Condition(delay=1.5, loss=0.02, rate=250e3, rto=0.05)
    assert parse("a:delay=500us").condition.delay == pytest.approx(0.0005)
    assert parse("a:rate=2gbit").condition.rate == 2e9


@pytest.mark.parametrize("text, says", [
    ("", "TARGET:KEY=VALUE"),
    ("boards", "expected TARGET:KEY=VALUE"),
    ("boards:", "expected TARGET:KEY=VALUE"),
    ("boards:delay", "KEY=VALUE"),
    ("boards:delay=20", "give a time such as 20ms"),
    ("boards:delay=fast", "give a time"),
    ("boards:delay=20ms,delay=30ms", "delay is given twice"),
    ("boards:latency=20ms", "unknown condition 'latency' (known: delay, jitter, loss, rate, rto)"),
    ("boards:loss=100%", "below 100%"),
    ("boards:loss=-1%", "percentage"),
    ("boards:loss=nan", "percentage"),
    ("boards:rate=1mb/s", "bits per second with a unit"),
    ("boards:rate=10bit", "between 1kbit and 100gbit"),
    ("boards:delay=5ms,jitter=10ms", "jitter (10ms) larger than delay (5ms)"),
    ("boards:delay=90s", "more than 60s"),
    ("boards:loss=1%,rto=0ms", "rto=0ms: a loss stalls the connection for a retransmission timeout longer than 0"),
    ("boards:loss=1%,rto=0.0s", "rto=0.0s: a loss stalls"),
    ("a->:delay=1ms", "a link is written FROM->TO"),
    ("bo ards:delay=1ms", "is not a domain name"),
])
def test_bad_specs_say_what_is_wrong(text, says):
    with pytest.raises(NetworkSpecError) as e:
        parse(text)
    assert says in str(e.value)
    if text:
        assert repr(text) in str(e.value)     # the message names the spec


def test_resolve_checks_targets_against_the_file():
    got = resolve(["boards:delay=20ms", "office->cloud:rate=1mbit"], topo())
    assert got == {("domain", "boards"): Condition(delay=0.02),
                   ("link", "office", "cloud"): Condition(rate=1e6)}
    with pytest.raises(NetworkSpecError, match=r"no domain 'field' \(domains: boards, cloud, office\)"):
        resolve(["field:delay=1ms"], topo())
    with pytest.raises(NetworkSpecError, match=r"no link cloud->office \(links: office->cloud\)"):
        resolve(["cloud->office:delay=1ms"], topo())
    with pytest.raises(NetworkSpecError, match="boards already has conditions"):
        resolve(["boards:delay=1ms", "boards:loss=1%"], topo())


def test_hop_conditions_domains_and_links_add_up():
    conds = resolve(["boards:delay=20ms,loss=1%", "office:delay=2ms,rate=10mbit",
                     "office->cloud:delay=30ms,jitter=4ms,loss=2%,rate=1mbit"], topo())
    assert hop_condition("domain boards", conds) == Condition(delay=0.02, loss=0.01)
    assert hop_condition("same host", conds) is None
    assert hop_condition("domain cloud", conds) is None
    link = hop_condition("link office->cloud", conds)       # office, the link, cloud (none)
    assert link.delay == pytest.approx(0.032)
    assert link.jitter == pytest.approx(0.004)
    assert link.loss == pytest.approx(0.02)
    assert link.rate == 1e6
    both = Condition(loss=0.1).then(Condition(loss=0.1))
    assert both.loss == pytest.approx(0.19)


def test_the_stall_of_a_loss_is_an_rto():
    assert Condition(loss=0.01).stall() == RTO_MIN
    assert Condition(delay=0.2, jitter=0.01, loss=0.01).stall() == pytest.approx(0.44)
    assert Condition(loss=0.01, rto=0.05).stall() == 0.05
    assert MSS == 1448
    assert not Condition().shaped and Condition(rate=1e6).shaped
