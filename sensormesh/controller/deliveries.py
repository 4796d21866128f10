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

    def take(self, device: str, body: dict) -> tuple[list, dict | None]:
        """The new values of one deliver body, and the confirmation to send back (None for a
        device that does not number its deliveries)."""
        values = body.get("values", [])
        if not isinstance(values, list):
            return [], None
        seq, run, step = body.get("seq"), body.get("run"), body.get("step")
        if type(seq) is not int or seq < 0:
            return values, None
        key = (device, step)
        had = self.next.get(key)
        if had is None or had[0] != run:
            had = (run, seq)             # a new numbering: count from here
        expect = had[1]
        if seq > expect:
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
