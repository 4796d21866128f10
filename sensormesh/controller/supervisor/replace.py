"""Re-placement decisions, pure: what moves where after a failure or a recovery.

Nothing here sends a message or waits: each function takes placements, assignments and device
sets and returns the decision, so tests/controller/test_replace.py checks them without devices.
The supervisor's driver (reroute.py, recover.py) carries the decisions out.
"""
from __future__ import annotations

from sensormesh.controller.names import name_list
from sensormesh.controller.errors import PipelineError
from sensormesh.controller.routing import hop_edge_id
from sensormesh.controller.topology import Route


def strip_epoch(asg):
    """An assignment without its epoch (two assignments that differ only there are the same)."""
    if asg is None:
        return None
    return {k: v for k, v in asg.items() if k != "epoch"}


def hop_edges(asg):
    """Edge ids of every pipe end in an assignment."""
    out = set()
    for s in (asg or {}).get("steps", []):
        if s.get("type") in ("pipe_in", "pipe_out"):
            e = (s.get("params") or {}).get("edge")
            if e is not None:
                out.add(e)
    return out


def changed_devices(old, new, alive, deployed):
    """Devices among alive that must be deployed again to go from assignments old to new.

    old, new: {device: assignment}. A device changes when its assignment does (epochs aside).
    Pipes join only ends of one epoch: a device that was cut off while its neighbours moved to
    a newer epoch still runs the old one, so two deployed devices piped to each other in new
    whose running epochs differ change too."""
    changed = {d for d in alive if strip_epoch(new.get(d)) != strip_epoch(old.get(d))}
    running = {d: (old.get(d) or {}).get("epoch") for d in alive if d in deployed}
    for d in running:
        for e in running:
            if running[d] != running[e] and hop_edges(new.get(d)) & hop_edges(new.get(e)):
                changed |= {d, e}
    return changed


def epoch_group(old, new, alive, changed):
    """The devices that move to the new epoch with the changed ones: pipes check the epoch, so
    every alive device piped (in old or new) to a device of the group joins it, to a fixed
    point. Returns a set containing changed."""
    group = set(changed)
    grow = True
    while grow:
        grow = False
        edges = set()
        for d in group:
            edges |= hop_edges(old.get(d)) | hop_edges(new.get(d))
        for d in alive:
            if d not in group and (hop_edges(old.get(d)) | hop_edges(new.get(d))) & edges:
                group.add(d)
                grow = True
    return group


def degraded_link(topology, failed):
    """link(a, b) of the network without the failed devices (None: no route); its explain(a, b)
    says why there is none (placement errors quote it)."""
    degraded = topology.without(failed)

    def link(a, b):
        if a == b:
            return 0, Route((a,))
        if a in failed or b in failed:
            return None
        return degraded.link(a, b)

    def explain(a, b):
        down = [d for d in (a, b) if d in failed]
        if down:
            return "%s failed" % " and ".join(down)
        why = degraded.explain_no_route(a, b)
        return "%s (with %s failed)" % (why, ", ".join(sorted(failed))) if why else None
    link.explain = explain
    return link


def _needs(placement, failed):
    return any(d in failed for d in placement.device_of.values())


def replan(old, failed, link, place_again):
    """(placement, how) after failures: `old` is the placement in use, `failed` the devices
    down, `link` the degraded network's link function, place_again(link) places the whole
    pipeline again (raises PipelineError when nothing fits).

    Steps on failed devices are placed again when that is possible without a failed device;
    otherwise steps stay where they are and only pipes take new routes (a pipe with no route
    left keeps its old one: its ends are cut off)."""
    from sensormesh.controller.placement import Placement
    note = ""
    if _needs(old, failed):
        try:
            pl = place_again(link)
            if not _needs(pl, failed):
                return pl, "placed again without %s" % name_list(failed)
            note = "placing the lost steps again would still need %s" % name_list(failed)
        except PipelineError as e:
            note = "the lost steps cannot be placed again: %s" % e

    def keep(a, b):
        r = link(a, b)
        return r if r is not None else old.link(a, b)

    pl = Placement(old.model, old.strategy, old.device_of, old.reasons, keep, old.cpu_headroom, old.solver)
    return pl, note or "steps stay where they are"


def recovery_plan(back, failed, original, current, link, place_again):
    """(placement, how) once the devices in back answer again. With nothing failed any more:
    the original placement. Otherwise the pipeline placed again without the still failed
    devices, or (when that still needs one of them, or cannot be done without them: a step
    pinned to one) the current placement unchanged, the steps on the devices back included."""
    names = name_list(back)
    if not failed and original is not None:
        return original, "%s back: the placement before the failures" % names
    try:
        pl = place_again(link)
    except PipelineError as e:
        # a step pinned to a device still failed (a source on its board) cannot be placed
        # anywhere else: the others take their places again, that one waits for its device
        return current, "%s back; steps stay where they are (the pipeline cannot be placed again without %s: %s)" % (
            names, name_list(failed), " ".join(str(e).split()))
    if _needs(pl, failed):
        return current, "%s back; steps stay where they are (placing them again would need %s)" % (
            names, name_list(failed))
    return pl, "%s back: placed again without %s" % (names, name_list(failed))


def pipe_losses(placement, final, failed):
    """What each pipe of placement lost, from the final stats of its stopped ends.

    final: {device: the "stopped" reply's body, or {"error": ...}}. Returns [(loss, text)]:
    loss is a dict (edge, src, dst, route, sent, received, lost, in_transit, pending,
    unshipped, dropped) or None when the loss is not known (an end failed)."""
    out = []
    for p in placement.pipes:
        snd, rcv = final.get(p.src), final.get(p.dst)
        if not snd or not rcv or "error" in snd or "error" in rcv:
            if p.src in failed or p.dst in failed:
                out.append((None, "edge %s (%s -> %s): values lost with %s are not known (it failed)"
                            % (p.edge, p.src, p.dst, p.src if p.src in failed else p.dst)))
            continue
        n = len(p.route) - 1
        o = (snd.get("steps") or {}).get("out:" + hop_edge_id(p.edge, 0, n))
        i = (rcv.get("steps") or {}).get("in:" + hop_edge_id(p.edge, n - 1, n))
        if not isinstance(o, dict) or not isinstance(i, dict):
            continue
        if "unacked" in o:
            out.extend(replay_losses(p, o, i))
            continue
        sent, got = o.get("in", 0), i.get("in", 0)
        pending, dropped = o.get("pending", 0), o.get("dropped", 0)
        unshipped = o.get("unshipped", sent - o.get("out", 0) - pending - dropped)
        transit = o.get("out", 0) - got
        loss = {"edge": p.edge, "src": p.src, "dst": p.dst, "route": list(p.route),
                "sent": sent, "received": got, "lost": sent - got, "in_transit": transit,
                "pending": pending, "unshipped": unshipped, "dropped": dropped}
        if loss["lost"] == 0 and not set(p.route[1:-1]) & set(failed):
            continue
        via = " through %s" % ", ".join(p.route[1:-1]) if len(p.route) > 2 else ""
        out.append((loss,
                    "edge %s (%s -> %s): %d value%s lost: %d sent into the old route%s and never arrived, "
                    "%d waiting at %s for a connection (pending), %d in the unshipped rest of the current "
                    "time frame, %d dropped on overflow" % (
                        p.edge, p.src, p.dst, loss["lost"], "" if loss["lost"] == 1 else "s", transit, via,
                        pending, p.src, unshipped, dropped)))
    return out


def replay_losses(p, o, i):
    """An acknowledged pipe moved: what its sender still holds goes again to the new route, and
    lost is only what its receiver counted as never received (beyond the replay buffer).
    Returns [(loss or None, text)] like pipe_losses."""
    held, lost, evicted = o.get("unacked", 0), i.get("lost", 0), o.get("evicted", 0)
    out = []
    if held:
        out.append((None, "edge %s (%s -> %s): %d value%s not yet acknowledged, kept by %s and sent again"
                    % (p.edge, p.src, p.dst, held, "" if held == 1 else "s", p.src)))
    if lost or evicted:
        loss = {"edge": p.edge, "src": p.src, "dst": p.dst, "route": list(p.route), "sent": o.get("in", 0),
                "received": i.get("in", 0), "held": held, "lost": lost, "evicted": evicted}
        if lost:
            text = ("edge %s (%s -> %s): %d value%s lost: the replay buffer of %s overflowed (%d left it "
                    "unacknowledged)" % (p.edge, p.src, p.dst, lost, "" if lost == 1 else "s", p.src, evicted))
        else:
            # evicted values the receiver already had are not lost; those it lacks are counted by
            # the receiver when the sender's pipe announces its position again
            text = ("edge %s (%s -> %s): the replay buffer of %s overflowed (%d value%s left it unacknowledged); "
                    "%s has counted none lost so far: any it had not received are counted as lost when the "
                    "pipe reconnects" % (p.edge, p.src, p.dst, p.src, evicted, "" if evicted == 1 else "s", p.dst))
        out.append((loss, text))
    return out
