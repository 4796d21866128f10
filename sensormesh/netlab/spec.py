"""Network conditions for emulated networks: the `--network` syntax and its meaning.

    --network "boards:delay=20ms,jitter=5ms,loss=1%,rate=1mbit"     a domain of the file
    --network "office->cloud:delay=80ms"                             a one-way link of the file

`parse(text)` turns one such string into a `NetworkSpec` (target + `Condition`),
`resolve(specs, topology)` checks the targets against the pipeline file's network and returns
{target: Condition}, and `hop_condition(hop, conditions)` says what one TCP connection of a
route goes through. Every mistake raises `NetworkSpecError` naming the spec and what is wrong.

Meaning (docs/experiments.md, "Emulated networks"):
  delay   one-way latency added to every chunk of bytes, in each direction (RTT grows by 2x)
  jitter  each chunk's delay varies uniformly within +-jitter (order is kept, as TCP does)
  loss    per TCP segment (1448 bytes) with this probability; a loss costs one retransmission
          stall of an RTO (TCP delivers late, never loses), default max(200 ms, RTT + 4 jitter)
  rto     override that stall (e.g. rto=50ms)
  rate    bandwidth per direction of each connection, bits per second (kbit, mbit, gbit)
A hop over a link `a->b` crosses domain a, the link and domain b: their conditions add up
(delays and jitters add, losses combine, the lowest rate holds). CPython only.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

# Linux never retransmits sooner than this (TCP_RTO_MIN); it is also the RTO most LAN
# connections sit at, so it is the stall a loss costs unless the path is slower.
RTO_MIN = 0.2
# TCP segment payload on an Ethernet path (1500 MTU - 40 bytes of headers - 12 of timestamps):
# loss is drawn per segment, so a 64 KB chunk is as likely to lose something as 45 small ones.
MSS = 1448
# Upper bounds that catch typos (`delay=20s` meant as ms) rather than limit experiments.
MAX_DELAY = 60.0
MAX_RATE = 100e9

_UNITS_TIME = {"us": 1e-6, "ms": 1e-3, "s": 1.0}
_UNITS_RATE = {"bit": 1, "bps": 1, "kbit": 1e3, "kbps": 1e3, "mbit": 1e6, "mbps": 1e6,
               "gbit": 1e9, "gbps": 1e9}
_NUMBER = r"(\d+(?:\.\d*)?|\.\d+)"
_TIME = re.compile(r"^%s\s*(us|ms|s)$" % _NUMBER)
_RATE = re.compile(r"^%s\s*([a-z]+)$" % _NUMBER)
_PERCENT = re.compile(r"^%s\s*%%$" % _NUMBER)
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
KEYS = ("delay", "jitter", "loss", "rate", "rto")


class NetworkSpecError(ValueError):
    """A `--network` spec that cannot be used; the message names the spec and the mistake."""


@dataclass(frozen=True)
class Condition:
    """What one direction of one connection goes through. Times in seconds, loss 0..1,
    rate in bits per second (None: unlimited), rto None: derived from delay and jitter."""
    delay: float = 0.0
    jitter: float = 0.0
    loss: float = 0.0
    rate: float | None = None
    rto: float | None = None

    @property
    def shaped(self):
        return bool(self.delay or self.jitter or self.loss or self.rate)

    def stall(self):
        """Seconds one lost segment holds the stream back: TCP's retransmission timeout."""
        if self.rto is not None:
            return self.rto
        return max(RTO_MIN, 2 * self.delay + 4 * self.jitter)

    def then(self, other):
        """This network followed by `other` (a hop crossing both)."""
        if other is None:
            return self
        rates = [r for r in (self.rate, other.rate) if r]
        rtos = [r for r in (self.rto, other.rto) if r is not None]
        return Condition(self.delay + other.delay, self.jitter + other.jitter,
                         1 - (1 - self.loss) * (1 - other.loss), min(rates) if rates else None,
                         max(rtos) if rtos else None)

    def to_dict(self):
        return {"delay": self.delay, "jitter": self.jitter, "loss": self.loss, "rate": self.rate,
                "rto": self.rto}

    @classmethod
    def from_dict(cls, d):
        return cls(float(d.get("delay") or 0), float(d.get("jitter") or 0),
                   float(d.get("loss") or 0), d.get("rate"), d.get("rto"))

    def __str__(self):
        parts = []
        if self.delay:
            parts.append("delay=%s" % _ms(self.delay))
        if self.jitter:
            parts.append("jitter=%s" % _ms(self.jitter))
        if self.loss:
            parts.append("loss=%g%%" % (self.loss * 100))
        if self.rate:
            parts.append("rate=%s" % _rate(self.rate))
        if self.rto is not None:
            parts.append("rto=%s" % _ms(self.rto))
        return ",".join(parts) or "unshaped"


def _ms(seconds):
    return "%gms" % round(seconds * 1000, 6)


def _rate(bps):
    for unit, f in (("gbit", 1e9), ("mbit", 1e6), ("kbit", 1e3)):
        if bps >= f:
            return "%g%s" % (bps / f, unit)
    return "%gbit" % bps


@dataclass(frozen=True)
class NetworkSpec:
    """One `--network` argument: its target ("domain", name) or ("link", src, dst)."""
    target: tuple
    condition: Condition
    text: str

    @property
    def label(self):
        return target_label(self.target)


def target_label(target):
    return target[1] if target[0] == "domain" else "%s->%s" % target[1:]


def _bad(text, why):
    return NetworkSpecError("--network %r: %s" % (text, why))


def _time(text, key, value):
    m = _TIME.match(value)
    if not m:
        raise _bad(text, "%s=%s: give a time such as 20ms, 1.5s or 500us" % (key, value))
    t = float(m.group(1)) * _UNITS_TIME[m.group(2)]
    if t > MAX_DELAY:
        raise _bad(text, "%s=%s is more than %gs" % (key, value, MAX_DELAY))
    return t


def _loss(text, value):
    m = _PERCENT.match(value)
    if m:
        p = float(m.group(1)) / 100
    else:
        try:
            p = float(value)
        except ValueError:
            p = -1
        if not math.isfinite(p):
            p = -1
    if not 0 <= p < 1:
        raise _bad(text, "loss=%s: give a percentage from 0%% to below 100%% (e.g. 1%%) or "
                         "a fraction 0..1" % value)
    return p


def _bps(text, value):
    m = _RATE.match(value.lower())
    if not m or m.group(2) not in _UNITS_RATE:
        raise _bad(text, "rate=%s: give bits per second with a unit: %s (e.g. 1mbit)"
                   % (value, ", ".join(("bit", "kbit", "mbit", "gbit"))))
    r = float(m.group(1)) * _UNITS_RATE[m.group(2)]
    if not 1000 <= r <= MAX_RATE:
        raise _bad(text, "rate=%s: must be between 1kbit and 100gbit" % value)
    return r


def parse(text):
    """One `--network` string -> NetworkSpec. Raises NetworkSpecError saying what is wrong."""
    if not isinstance(text, str) or not text.strip():
        raise NetworkSpecError("--network needs TARGET:KEY=VALUE,... (e.g. boards:delay=20ms)")
    head, sep, body = text.strip().partition(":")
    if not sep or not body.strip():
        raise _bad(text, "expected TARGET:KEY=VALUE,... where TARGET is a domain or a link "
                         "FROM->TO, e.g. boards:delay=20ms,loss=1%")
    head = head.strip()
    if "->" in head:
        src, _, dst = (p.strip() for p in head.partition("->"))
        if not (_NAME.match(src) and _NAME.match(dst)):
            raise _bad(text, "a link is written FROM->TO with two domain names, not %r" % head)
        target = ("link", src, dst)
    else:
        if not _NAME.match(head):
            raise _bad(text, "%r is not a domain name (letters, digits, _ . -) nor a link FROM->TO"
                       % head)
        target = ("domain", head)
    values = {}
    for item in body.split(","):
        item = item.strip()
        key, eq, value = (p.strip() for p in item.partition("="))
        if not eq or not value:
            raise _bad(text, "%r: each condition is KEY=VALUE (keys: %s)" % (item, ", ".join(KEYS)))
        key = key.lower()
        if key not in KEYS:
            raise _bad(text, "unknown condition %r (known: %s)" % (key, ", ".join(KEYS)))
        if key in values:
            raise _bad(text, "%s is given twice" % key)
        if key == "loss":
            values[key] = _loss(text, value)
        elif key == "rate":
            values[key] = _bps(text, value)
        else:
            values[key] = _time(text, key, value)
            if key == "rto" and values[key] <= 0:
                raise _bad(text, "rto=%s: a loss stalls the connection for a retransmission timeout "
                                 "longer than 0 (e.g. rto=200ms, TCP's least)" % value)
    cond = Condition(**values)
    if cond.jitter > cond.delay:
        raise _bad(text, "jitter (%s) larger than delay (%s) would need negative delays"
                   % (_ms(cond.jitter), _ms(cond.delay)))
    return NetworkSpec(target, cond, text)


def resolve(specs, topology):
    """Check specs (strings or NetworkSpecs) against the pipeline's Topology; returns
    {target: Condition}. A target given twice, an unknown domain or a link the file does not
    have is an error naming what the file has."""
    out = {}
    domains = sorted(topology.domains)
    links = sorted((l.src, l.dst) for l in topology.links)
    for s in specs:
        spec = parse(s) if isinstance(s, str) else s
        t = spec.target
        if t in out:
            raise _bad(spec.text, "%s already has conditions from another --network"
                       % target_label(t))
        if t[0] == "domain" and t[1] not in topology.domains:
            raise _bad(spec.text, "the pipeline file has no domain %r (domains: %s)"
                       % (t[1], ", ".join(domains)))
        if t[0] == "link" and (t[1], t[2]) not in links:
            raise _bad(spec.text, "the pipeline file has no link %s->%s (links: %s)"
                       % (t[1], t[2], ", ".join("%s->%s" % l for l in links) or "none"))
        out[t] = spec.condition
    return out


def hop_condition(via, conditions):
    """The Condition of one hop ("domain X" / "link A->B" / "same host"), None if unshaped."""
    if via.startswith("domain "):
        return conditions.get(("domain", via[len("domain "):]))
    if via.startswith("link "):
        src, _, dst = via[len("link "):].partition("->")
        parts = [conditions.get(("domain", src)), conditions.get(("link", src, dst)),
                 conditions.get(("domain", dst))]
        parts = [c for c in parts if c is not None]
        if not parts:
            return None
        total = parts[0]
        for c in parts[1:]:
            total = total.then(c)
        return total
    return None
