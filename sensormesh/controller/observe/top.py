"""`sensormesh top FILE`: the store's live view in a terminal (rich Live + Table), and the short
line of rates `sensormesh up` prints every few seconds. render() takes the store's view() so a
test can draw it once into a string without a terminal."""
import io

from rich import box
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from sensormesh.controller.names import name_list, natural_key


def num(v, unit="", digits=3):
    if v is None:
        return "-"
    a = abs(v)
    for scale, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if a >= scale:
            return "%.*g %s%s" % (digits, v / scale, prefix, unit)
    return ("%.*g %s" % (digits, v, unit)).rstrip()


def seconds(v):
    if v is None:
        return "-"
    if abs(v) < 1e-3:
        return "%.0f us" % (v * 1e6)
    if abs(v) < 1:
        return "%.3g ms" % (v * 1e3)
    return "%.3g s" % v


def pct(v):
    return "-" if v is None else "%.1f%%" % (100.0 * v)


def memory(d):
    if d.get("heap_free") is not None:
        s = "heap %s free" % num(d["heap_free"], "B")
        if d.get("heap_largest") is not None:
            s += ", %s block" % num(d["heap_largest"], "B")
        return s
    if d.get("rss") is not None:
        return "RSS %s" % num(d["rss"], "B")
    return "-"


def render(view, title=None):
    """The view as rich renderables: devices, steps, pipes and end-to-end latency."""
    info = view.get("info") or {}
    head = Text(title or "sensormesh top: %s" % info.get("pipeline", ""), style="bold")
    placement = info.get("placement") or {}
    dev = Table(title="devices", box=box.SIMPLE_HEAD, title_justify="left")
    for c in ("device", "interp", "load (busy)", "cpu", "memory", "clock offset", "steps"):
        dev.add_column(c, justify="right" if c in ("load (busy)", "cpu", "clock offset") else "left")
    names = sorted(set(view["devices"]) | set(placement.get("devices", [])))
    for name in names:
        d = view["devices"].get(name, {})
        off = d.get("offset")
        offs = "-" if off is None else "%s ± %s" % (seconds(off), seconds(d.get("offset_bound")))
        here = sorted(s for s, x in (placement.get("device_of") or {}).items() if x == name) or \
            sorted(s for s, x in view["steps"].items() if x["device"] == name)
        load = pct(d.get("busy"))
        if d.get("down"):
            load = Text("DOWN", style="bold red")
        dev.add_row(name, d.get("interp") or "-", load, pct(d.get("cpu")), memory(d), offs,
                    ", ".join(here) or "-")
    st = Table(title="steps", box=box.SIMPLE_HEAD, title_justify="left")
    for c in ("step", "device", "in/s", "out/s", "time/value", "in", "out"):
        st.add_column(c, justify="left" if c in ("step", "device") else "right")
    for sid in sorted(view["steps"], key=lambda s: (view["steps"][s]["device"], s)):
        s = view["steps"][sid]
        st.add_row(sid, s["device"], num(s["in_per_s"]), num(s["out_per_s"]), seconds(s["time_per_value_s"]),
                   str(s["in"] if s["in"] is not None else "-"), str(s["out"] if s["out"] is not None else "-"))
    pp = Table(title="pipes", box=box.SIMPLE_HEAD, title_justify="left")
    for c in ("pipe", "device", "dir", "peer", "values/s", "bytes/s", "delay (RTT/2)", "queue", "reconnects"):
        pp.add_column(c, justify="left" if c in ("pipe", "device", "dir", "peer") else "right")
    for p in view["pipes"]:
        pp.add_row(p["edge"], p["device"], p["dir"] or "-", p["peer"] or "-", num(p["values_per_s"]),
                   num(p["bytes_per_s"], "B"), seconds(p["delay_s"]),
                   "-" if p["queue"] is None else str(p["queue"]), str(p["reconnects"] or 0))
    lt = Table(title="end-to-end latency (last minute)", box=box.SIMPLE_HEAD, title_justify="left")
    for c in ("sink", "p50", "p99", "error bound", "samples"):
        lt.add_column(c, justify="left" if c == "sink" else "right")
    for sink, l in sorted(view["latency"].items()):
        lt.add_row(sink, seconds(l["p50"]), seconds(l["p99"]), seconds(l["bound"]), str(l["n"]))
    parts = [head, dev]
    for name in names:
        d = view["devices"].get(name, {})
        if d.get("down"):
            parts.append(Text("! %s is %s%s" % (name, d["down"], " (its counts below are the last it reported)"
                                                 if d.get("t") is not None else ""), style="bold red"))
    parts += [st, pp]
    if view["latency"]:
        parts.append(lt)
    else:
        parts.append(Text("end-to-end latency: no samples in the last minute", style="dim"))
    for t, text in view.get("events", [])[-3:]:
        parts.append(Text("! " + text, style="yellow"))
    return Group(*parts)


def render_text(view, width=140, title=None):
    """render() drawn once into plain text (tests, logs)."""
    buf = io.StringIO()
    Console(file=buf, width=width, force_terminal=False, color_system=None).print(render(view, title))
    return buf.getvalue()


# Above this many devices (or pipes) the line of rates gives a summary, not every one of them.
MANY = 12


def rates_line(view):
    """One short line for `sensormesh up`: load per device, values/s per pipe, latency. A fleet
    (more than MANY devices or pipes) gets the busiest few, the devices down and totals, so the
    line stays a line."""
    devices = view["devices"]

    def load_of(d):
        return d.get("busy") if d.get("busy") is not None else d.get("cpu")
    pipes = [p for p in view["pipes"] if p["dir"] == "out" or p["dir"] is None]
    if len(devices) > MANY:
        down = [n for n, d in devices.items() if d.get("down")]
        loads = sorted(((load_of(d), n) for n, d in devices.items() if not d.get("down") and load_of(d) is not None),
                       key=lambda x: (-x[0], natural_key(x[1])))
        head = "%d devices" % len(devices)
        if loads:
            mid = sorted(x[0] for x in loads)[len(loads) // 2]
            head += ", busiest %s, median %s" % (", ".join("%s %s" % (n, pct(v)) for v, n in loads[:3]), pct(mid))
        else:
            head += " -"
        if down:
            head += ", DOWN %s" % name_list(down)
        bits = [head]
    else:
        bits = []
        for name in sorted(devices):
            d = devices[name]
            if d.get("down"):
                bits.append("%s DOWN" % name)
            else:
                bits.append("%s %s" % (name, pct(load_of(d))))      # "-" until two polls gave a rate
    out = []
    if len(pipes) > MANY:
        rates = [p["values_per_s"] for p in pipes if p["values_per_s"] is not None]
        s = "%d pipes %s/s in all" % (len(pipes), num(sum(rates)) if rates else "-")
        late = [p for p in pipes if p["delay_s"] is not None]
        if late:
            worst = max(late, key=lambda p: p["delay_s"])
            s += ", longest delay %s %s" % (worst["edge"], seconds(worst["delay_s"]))
        out.append(s)
    else:
        for p in pipes:
            s = "%s %s/s" % (p["edge"], num(p["values_per_s"]))
            if p["delay_s"] is not None:
                s += " %s" % seconds(p["delay_s"])
            out.append(s)
    line = "rates: load " + (", ".join(bits) or "-")
    if out:
        line += " | pipes " + ", ".join(out)
    for sink, l in sorted(view["latency"].items()):
        line += " | %s e2e p50 %s p99 %s" % (sink, seconds(l["p50"]), seconds(l["p99"]))
    return line
