"""The controller's side of confirmed callback deliveries: each value handed on once."""
from sensormesh.controller.deliveries import Deliveries


def test_values_numbered_again_are_dropped_and_confirmed():
    d = Deliveries()
    vals, ack = d.take("c", {"step": "k", "values": [0, 1, 2], "seq": 0, "run": 7})
    assert vals == [0, 1, 2] and ack == {"delivered": {"step": "k", "seq": 3, "run": 7}}
    # the restarted sink device sends 1.. again (it took the numbering back from its upstream)
    vals, ack = d.take("c", {"step": "k", "values": [1, 2, 3, 4], "seq": 1, "run": 7})
    assert vals == [3, 4] and ack["delivered"]["seq"] == 5 and d.duplicates == 2
    vals, ack = d.take("c", {"step": "k", "values": [1], "seq": 1, "run": 7})
    assert vals == [] and ack["delivered"]["seq"] == 5


def test_a_new_numbering_counts_afresh_and_a_gap_is_counted():
    d = Deliveries()
    d.take("c", {"step": "k", "values": [0, 1], "seq": 0, "run": 1})
    vals, ack = d.take("c", {"step": "k", "values": [9], "seq": 0, "run": 2})
    assert vals == [9] and ack["delivered"] == {"step": "k", "seq": 1, "run": 2}
    vals, _ = d.take("c", {"step": "k", "values": [5], "seq": 4, "run": 2})
    assert vals == [5] and d.lost == 3
    # steps and devices are numbered apart
    vals, _ = d.take("m", {"step": "k", "values": [1], "seq": 0, "run": 2})
    assert vals == [1]


def test_a_device_that_does_not_number_its_deliveries_is_passed_through():
    d = Deliveries()
    assert d.take("c", {"step": "k", "values": [1, 1]}) == ([1, 1], None)
    assert d.take("c", {"step": "k", "values": "bad", "seq": 0}) == ([], None)
