"""Callback-sink values taken exactly once: the controller's side of confirmed deliveries.

A device numbers each callback step's values ({"deliver": {..., "seq": S, "run": R}}, see
sensormesh/device/runtime/delivery.py) and sends again whatever the controller has not confirmed
after a reconnect or a restart of the sink device (which takes the numbering back from its
upstream). `Deliveries.take` hands on only values not taken before, and returns the
confirmation to send back ({"delivered": {"step", "seq", "run"}}): the device acknowledges its
input upstream only once the values derived from it are confirmed here.

One `Deliveries` must outlive the device sessions it serves: keep it for the whole run (the
supervisor has one; `deploy(..., deliveries=...)` shares one between deployments).
"""
from __future__ import annotations


class Deliveries:
    def __init__(self):
        self.next: dict[tuple[str, str], tuple[object, int]] = {}   # (device, step) -> (run, next seq)
        self.duplicates = 0     # values received again and dropped
        self.lost = 0           # values the device numbered but dropped before sending (counted there too)
        self.notes: list[str] = []   # what the operator should know (gaps), taken by news()
        # Values a device numbered and left out while this controller took its values (a gap
        # between two messages of one connection: a value JSON cannot carry, NaN or infinity, or
        # one too large for the link; the device counts them in its lost_deliveries too), per
        # device. Not values dropped while no controller listened: those show as a gap after a
        # new connection and count in `lost` only.
        self.left_out: dict[str, int] = {}
        # True: the devices' numberings start at 0 here (devices `up` started, which never
        # delivered before), so a first message that does not start at 0 left values out
        self.fresh = False
        self._via: dict[tuple[str, str], object] = {}     # (device, step) -> the connection of its last message
        self._runs: set = set()                            # numberings seen (a moved callback keeps its run)

    def take(self, device: str, body: dict, via=None) -> tuple[list, dict | None]:
        """The new values of one deliver body, and the confirmation to send back (None for a
        device that does not number its deliveries). via: the connection it came over (a gap
        between two messages of one connection is values the device left out)."""
        values = body.get("values", [])
        if not isinstance(values, list):
            return [], None
        seq, run, step = body.get("seq"), body.get("run"), body.get("step")
        if not isinstance(step, (str, type(None))) or not isinstance(run, (int, str, type(None))):
            self.notes.append("device %s sent a deliver message whose step or run is not a name or "
                              "number (step %.60r, run %.60r): its %d value(s) ignored"
                              % (device, step, run, len(values)))
            return [], None
        if type(seq) is not int or seq < 0:
            return values, None
        key = (device, step)
        had = self.next.get(key)
        same = via is not None and self._via.get(key) is via and had is not None and had[0] == run
        if had is None and self.fresh and run not in self._runs:
            had = (run, 0)               # a numbering that starts here, at 0
            same = via is not None
        elif had is None or had[0] != run:
            had = (run, seq)             # a new numbering: count from here
        self._via[key] = via
        self._runs.add(run)
        expect = had[1]
        if seq > expect and same:
            before = self.left_out.get(device, 0)
            self.left_out[device] = before + seq - expect
            p = 1
            while p <= before:      # noted the 1st, 2nd, 4th... time (a step that yields NaN on
                p <<= 1             # every value does not flood the events)
            if p <= self.left_out[device]:
                what = ("value %d of its numbering was" % expect if seq - expect == 1 else
                        "values %d-%d of its numbering were" % (expect, seq - 1))
                self.notes.append("device %s, callback %s: %s left out by the device while the controller "
                                  "listened (a value JSON cannot carry, such as NaN, or one too large to send; "
                                  "%d in all)" % (device, step, what, self.left_out[device]))
        elif seq > expect:
            self.lost += seq - expect
            self.notes.append("device %s, callback %s: values %d-%d of its numbering never reached the "
                              "controller (%d lost in all)" % (device, step, expect, seq - 1, self.lost))
        skip = expect - seq if expect > seq else 0
        if skip:
            self.duplicates += min(skip, len(values))
            values = values[skip:]
        top = seq + len(body.get("values", []))
        self.next[key] = (run, top if top > expect else expect)
        return values, {"delivered": {"step": step, "seq": self.next[key][1], "run": run}}

    def news(self) -> list[str]:
        """What the operator should know since the last call (a gap in a numbering: lost values)."""
        out, self.notes = self.notes, []
        return out
