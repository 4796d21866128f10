"""The plan of an experiment: every combination of placement, network condition and repeat, in
the order they run. Pure: no devices, no files.

A placement is a strategy (`central`, `edge`, `optimal`) or a placement file (`--placement
NAME=FILE`, placements.py). A network condition is one `--network` option: one or more specs
joined by ";" (`boards:delay=20ms;office->cloud:delay=80ms`) that hold together for a run.
When conditions are given, a baseline without conditions (`none`: the same emulated layout, no
delay, loss or rate) runs too, first, unless the user says `baseline=False` (`--no-baseline`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

NONE = "none"                 # the network condition of a run without shaping
PLAIN = "-"                   # no emulated network at all (no --network given)


class PlanError(ValueError):
    """An experiment that cannot be planned; the message names the option and the mistake."""


@dataclass(frozen=True)
class Placement:
    name: str                    # what the results call it: the strategy or the NAME of NAME=FILE
    strategy: str                # the strategy that places what the file leaves open
    path: str | None = None      # the placement file, None for a plain strategy


@dataclass(frozen=True)
class Condition:
    name: str                    # the spec text, "none" or "-"
    specs: tuple = ()            # the `--network` specs of runner.up()

    @property
    def emulated(self):
        return self.name != PLAIN


@dataclass(frozen=True)
class Run:
    index: int                   # 1..N, the order of the runs
    placement: Placement
    network: Condition
    repeat: int                  # 1..R
    id: str = field(default="")

    @property
    def label(self):
        return "%s / %s / #%d" % (self.placement.name, self.network.name, self.repeat)


def run_id(index, placement, network, repeat):
    """A short name usable as a file name: 03-edge-boards_delay_20ms-r1."""
    net = re.sub(r"[^A-Za-z0-9.]+", "_", network).strip("_") or "none"
    return "%02d-%s-%s-r%d" % (index, re.sub(r"[^A-Za-z0-9.]+", "_", placement).strip("_"), net, repeat)


def parse_strategies(text, known):
    """"central,edge" -> ["central", "edge"]; empty or unknown names are refused."""
    names = [s.strip() for s in (text or "").split(",") if s.strip()]
    for s in names:
        if s not in known:
            raise PlanError("--strategies: unknown strategy %r (known: %s)" % (s, ", ".join(known)))
    if len(set(names)) != len(names):
        raise PlanError("--strategies: %r names a strategy twice" % text)
    return names


def parse_placement(text, default_strategy="optimal"):
    """"mixed=examples/mixed.yaml" -> Placement("mixed", ..., path)."""
    name, sep, path = (text or "").partition("=")
    name, path = name.strip(), path.strip()
    if not sep or not name or not path:
        raise PlanError("--placement %r: give NAME=FILE, e.g. mixed=placement.yaml" % text)
    if not re.match(r"^[A-Za-z0-9_.-]+$", name):
        raise PlanError("--placement %r: the name may hold letters, digits, '_', '-' and '.' only" % text)
    return Placement(name, default_strategy, path)


def parse_condition(text):
    """One --network option: specs joined by ";" (a condition of several domains or links)."""
    text = (text or "").strip()
    if text == NONE:
        return Condition(NONE, ())
    specs = tuple(s.strip() for s in text.split(";") if s.strip())
    if not specs:
        raise PlanError("--network %r: give TARGET:KEY=VALUE[,...], several joined by ';'" % text)
    return Condition(text, specs)


def _meaning(cond):
    """What a condition does, whatever its spelling (spaces, units, order of its specs), or None
    when a spec does not parse (the caller refuses it with its own message)."""
    from sensormesh.netlab.spec import NetworkSpecError, parse
    try:
        return frozenset((spec.target, tuple(None if v is None else float("%.9g" % v)
                                             for v in spec.condition.to_dict().values()))
                         for spec in map(parse, cond.specs))
    except NetworkSpecError:
        return None


def make_plan(placements, conditions, repeat=1, baseline=True):
    """[Run] for every placement x condition x repeat: conditions outermost, so a user sees one
    network condition for every placement before the next (and a run cut short by Ctrl-C
    leaves whole conditions behind it). With conditions and `baseline`, `none` comes first."""
    if not placements:
        raise PlanError("nothing to compare: give --strategies and/or --placement")
    names = [p.name for p in placements]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise PlanError("placement names must differ: %s given twice" % ", ".join(dup))
    if repeat < 1:
        raise PlanError("--repeat must be at least 1, not %d" % repeat)
    conds = list(conditions)
    seen = [c.name for c in conds]
    dup = sorted({n for n in seen if seen.count(n) > 1})
    if dup:
        raise PlanError("--network %s given twice" % ", ".join(repr(d) for d in dup))
    meant = {}
    for c in conds:         # the same condition written differently would run twice under two names
        key = _meaning(c)
        if key is not None and key in meant:
            raise PlanError("--network %r and %r are the same condition: give it once" % (meant[key], c.name))
        meant.setdefault(key, c.name)
    if not conds:
        conds = [Condition(PLAIN, ())]
    elif baseline and NONE not in seen:
        conds.insert(0, Condition(NONE, ()))
    runs = []
    for c in conds:
        for r in range(1, repeat + 1):
            for p in placements:
                i = len(runs) + 1
                runs.append(Run(i, p, c, r, run_id(i, p.name, c.name, r)))
    return runs
