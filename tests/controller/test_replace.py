"""The supervisor's pure decisions (controller/supervisor/replace.py and health.py), without
devices: which devices move to a new epoch, where steps go after a failure or a recovery, what
each pipe lost, and the health table's transitions."""
import pytest

import shipping_samples as S
from sensormesh.api import Pipeline
from sensormesh.controller.placement import Placement, default_link, place
from sensormesh.controller.routing import hop_edge_id
from sensormesh.controller.supervisor import replace
from sensormesh.controller.supervisor.health import BACK, CUT_OFF, FAILED, OK, SUSPECT, Health, HealthError


def asg(epoch, *edges, extra=None):
    steps = [{"id": "p%d" % i, "type": "pipe_out" if i % 2 else "pipe_in", "params": {"edge": e}}
             for i, e in enumerate(edges)]
    if extra:
        steps.append({"id": extra, "type": "map", "params": {}})
    return {"epoch": epoch, "steps": steps}


# -- epoch group ---------------------------------------------------------------------------------

def test_only_the_epoch_differs_so_nothing_changes():
    old = {"a": asg(1, "e1"), "b": asg(1, "e1")}
    new = {"a": asg(2, "e1"), "b": asg(2, "e1")}
    assert replace.changed_devices(old, new, ["a", "b"], {"a", "b"}) == set()


def test_a_changed_device_takes_its_pipe_peers_along_to_a_fixed_point():
    # a -e1- b -e2- c, and d -e3- e apart; only a changes
    old = {"a": asg(1, "e1"), "b": asg(1, "e1", "e2"), "c": asg(1, "e2"), "d": asg(1, "e3"), "e": asg(1, "e3")}
    new = dict(old, a=asg(2, "e1", extra="m"))
    alive = ["a", "b", "c", "d", "e"]
    changed = replace.changed_devices(old, new, alive, set(alive))
    assert changed == {"a"}
    assert replace.epoch_group(old, new, alive, changed) == {"a", "b", "c"}


def test_a_device_that_is_not_alive_stays_out_of_the_group():
    old = {"a": asg(1, "e1"), "b": asg(1, "e1", "e2"), "c": asg(1, "e2")}
    new = dict(old, a=asg(2, "e1", extra="m"))
    assert replace.epoch_group(old, new, ["a", "b"], {"a"}) == {"a", "b"}


def test_pipe_peers_left_at_different_epochs_both_move():
    # b was cut off and still runs epoch 1 while a moved on to 3; the new plan pipes them
    old = {"a": asg(3, "e1"), "b": asg(1, "e1")}
    new = {"a": asg(4, "e1"), "b": asg(4, "e1")}
    assert replace.changed_devices(old, new, ["a", "b"], {"a", "b"}) == {"a", "b"}
    # not deployed: nothing runs there, nothing to align
    assert replace.changed_devices(old, new, ["a", "b"], {"a"}) == set()


# -- re-plan and recovery plan -------------------------------------------------------------------

def model():
    p = Pipeline("g")
    p.device("esp", interpreter="micropython", cpu=1, sensors=["gyro"], address="127.0.0.1:7000")
    p.device("pi", cpu=4, memory=10**8, address="127.0.0.1:7001")
    p.device("laptop", cpu=20, address="127.0.0.1:7002")
    p.source("gyro").field("accel", id="acc").map(S.norm, id="norm").print(on="laptop", id="out")
    return p.model()


def moved(pl, **where):
    """pl with some steps moved (as a placement made on a healthier network would have them)."""
    device_of = dict(pl.device_of, **where)
    return Placement(pl.model, pl.strategy, device_of, pl.reasons, default_link, pl.cpu_headroom)


def test_replan_places_lost_steps_again_without_the_failed_device():
    m = model()
    old = moved(place(m, "central"), norm="pi")
    pl, how = replace.replan(old, {"pi"}, replace_link({"pi"}), lambda link: place(m, "central", link=link))
    assert how == "placed again without pi"
    assert "pi" not in pl.device_of.values()


def test_replan_keeps_steps_when_they_cannot_be_placed_again():
    m = model()
    old = place(m, "central")                     # out is pinned to the laptop
    pl, how = replace.replan(old, {"laptop"}, replace_link({"laptop"}),
                             lambda link: place(m, "central", link=link, down={"laptop": "failed"}))
    assert how.startswith("the lost steps cannot be placed again: ")
    assert "step 'out': pinned to laptop (on: laptop), which is down (failed)" in how
    assert pl.device_of == old.device_of


def test_replan_with_nothing_lost_keeps_the_steps():
    m = model()
    old = place(m, "central")
    calls = []
    pl, how = replace.replan(old, {"pi"}, replace_link({"pi"}), lambda link: calls.append(link))
    assert how == "steps stay where they are" and calls == [] and pl.device_of == old.device_of


def test_recovery_plan_returns_to_the_original_once_nothing_is_failed():
    m = model()
    original, current = place(m, "central"), moved(place(m, "central"), norm="esp")
    pl, how = replace.recovery_plan(["pi"], set(), original, current, default_link, None)
    assert pl is original and how == "pi back: the placement before the failures"


def test_recovery_plan_without_the_devices_still_failed():
    m = model()
    original = moved(place(m, "central"), norm="pi")
    pl, how = replace.recovery_plan(["esp"], {"pi"}, original, original, replace_link({"pi"}),
                                    lambda link: place(m, "central", link=link))
    assert how == "esp back: placed again without pi" and "pi" not in pl.device_of.values()
    # when placing again still needs a failed device, the current placement stays
    pl, how = replace.recovery_plan(["esp"], {"pi"}, original, original, default_link, lambda link: original)
    assert pl is original and how == "esp back; steps stay where they are (placing them again would need pi)"


def test_recovery_plan_keeps_the_steps_when_a_step_is_pinned_to_a_device_still_failed():
    # a source pinned to its board that is still down: placing the pipeline again is impossible,
    # so the steps stay where they are and the device back gets its own again (before, the
    # error ended the recovery and the device back ran nothing)
    from sensormesh.controller.errors import PlacementError
    m = model()
    current = place(m, "central")

    def cannot(link):
        raise PlacementError("step 's': pinned to pi (on: pi), which is down")
    pl, how = replace.recovery_plan(["esp"], {"pi"}, current, current, replace_link({"pi"}), cannot)
    assert pl is current
    assert how == ("esp back; steps stay where they are (the pipeline cannot be placed again without pi: "
                   "step 's': pinned to pi (on: pi), which is down)")


def replace_link(failed):
    def link(a, b):
        if a == b:
            return default_link(a, b)
        if a in failed or b in failed:
            return None
        return default_link(a, b)
    return link


# -- losses --------------------------------------------------------------------------------------

def test_pipe_losses_count_what_the_receiver_never_got():
    pl = place(model(), "central")
    (p,) = pl.pipes
    out_id, in_id = "out:" + hop_edge_id(p.edge, 0, 1), "in:" + hop_edge_id(p.edge, 0, 1)
    final = {p.src: {"steps": {out_id: {"in": 10, "out": 8, "pending": 1, "dropped": 1}}},
             p.dst: {"steps": {in_id: {"in": 5}}}}
    ((loss, text),) = replace.pipe_losses(pl, final, set())
    assert loss["sent"] == 10 and loss["received"] == 5 and loss["lost"] == 5
    assert loss["in_transit"] == 3 and loss["pending"] == 1 and loss["dropped"] == 1 and loss["unshipped"] == 0
    assert text.startswith("edge %s (%s -> %s): 5 values lost: 3 sent into the old route" % (p.edge, p.src, p.dst))
    final[p.dst]["steps"][in_id]["in"] = 10
    final[p.src]["steps"][out_id] = {"in": 10, "out": 10}
    assert replace.pipe_losses(pl, final, set()) == []          # nothing lost: nothing said


def test_replay_losses_say_lost_only_what_the_receiver_counted():
    pl = place(model(), "central")
    (p,) = pl.pipes
    out_id, in_id = "out:" + hop_edge_id(p.edge, 0, 1), "in:" + hop_edge_id(p.edge, 0, 1)
    final = {p.src: {"steps": {out_id: {"in": 900, "out": 900, "unacked": 0, "evicted": 255}}},
             p.dst: {"steps": {in_id: {"in": 645, "lost": 0}}}}
    ((loss, text),) = replace.pipe_losses(pl, final, set())
    assert loss["lost"] == 0 and loss["evicted"] == 255
    assert "overflowed (255 values left it unacknowledged)" in text and "values lost" not in text
    assert "%s has counted none lost so far" % p.dst in text
    final[p.dst]["steps"][in_id]["lost"] = 40
    ((loss, text),) = replace.pipe_losses(pl, final, set())
    assert text.startswith("edge %s (%s -> %s): 40 values lost: the replay buffer of %s overflowed (255 left it "
                           "unacknowledged)" % (p.edge, p.src, p.dst, p.src)), text


def test_pipe_losses_of_a_failed_end_are_not_known():
    pl = place(model(), "central")
    (p,) = pl.pipes
    ((loss, text),) = replace.pipe_losses(pl, {p.src: {"error": "gone"}}, {p.dst})
    assert loss is None and text.endswith("values lost with %s are not known (it failed)" % p.dst)


# -- health table --------------------------------------------------------------------------------

def test_health_suspect_then_answered_or_failed():
    h = Health()
    h.suspect("a", "ping timed out")
    h.suspect("b", "session closed")
    assert h.of("a") == SUSPECT and h.has_suspects()
    assert h.take_suspects() == {"a": "ping timed out", "b": "session closed"}
    assert not h.has_suspects()
    h.answered("a")
    h.fail({"b": "silent"})
    assert h.of("a") == OK and h.failed == {"b"} and h.why["b"] == "silent"
    h.suspect("b", "again")                # a failed device stays failed, no new check
    assert h.of("b") == FAILED and not h.has_suspects()


def test_health_a_suspicion_reported_during_its_check_stays():
    h = Health()
    h.suspect("a", "first")
    h.take_suspects()
    h.suspect("a", "second")               # reported while the first check ran
    h.answered("a")
    assert h.of("a") == SUSPECT and h.take_suspects() == {"a": "second"}


def test_health_cut_off_and_reached_again():
    h = Health()
    h.fail(["gw"])
    h.suspect("x", "behind gw")
    h.set_cut_off({"x", "y", "gw"})
    assert h.cut_off == {"x", "y"} and h.failed == {"gw"} and h.take_suspects() == {}
    h.set_cut_off({"y"})
    assert h.of("x") == OK and h.cut_off == {"y"}


def test_health_failed_device_back_then_rejoined():
    h = Health()
    h.fail(["a"])
    h.answers("a")
    assert h.of("a") == BACK and not h.down("a") and h.failed == set()
    h.rejoined(["a"])
    assert h.of("a") == OK


def test_health_refuses_an_event_its_table_lacks():
    h = Health()
    with pytest.raises(HealthError, match="can't handle health event 'answers' for a in state 'ok'"):
        h.answers("a")
    h.set_cut_off({"a"})
    assert h.of("a") == CUT_OFF
    with pytest.raises(HealthError, match="no health event 'reboot'"):
        h.event("reboot", "a")


def test_health_busy_while_handling():
    h = Health()
    with h.handling():
        assert h.busy
    assert not h.busy
