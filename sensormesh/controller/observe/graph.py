"""The pipeline graph with its placement, drawn as SVG by Graphviz's `dot` (Debian package
graphviz): one box per device holding the steps it runs, pipes as arrows between boxes, and a
relay node on every device a pipe passes through. The dashboard's script finds pipes by their
SVG id ("pipe:<edge>") and steps by "step:<id>" to write live rates onto them."""
import shutil
import subprocess

DOT_TIMEOUT = 10.0   # seconds dot may take for one graph (small graphs take milliseconds)

SHAPES = {"source": "cds", "callback": "note", "print": "note", "csv": "note"}


def _q(s):
    return '"%s"' % str(s).replace("\\", "\\\\").replace('"', '\\"')


def to_dot(info, device_of=None):
    """DOT text for the placement info of observe.run.placement_info (device_of may come from
    the devices' own status when the controller did not place the pipeline itself)."""
    device_of = dict(device_of or info.get("device_of") or {})
    steps = info.get("steps") or {}
    interp = info.get("interp") or {}
    lines = ["digraph pipeline {", '  rankdir=LR; bgcolor="transparent"; compound=true; nodesep=0.35; ranksep=0.6;',
             '  node [fontname="DejaVu Sans", fontsize=11, shape=box, style="rounded,filled", fillcolor="#ffffff", '
             'color="#4a5568", penwidth=1.2];',
             '  edge [fontname="DejaVu Sans", fontsize=10, color="#4a5568", arrowsize=0.7];']
    by_dev = {}
    for sid in info.get("order") or sorted(steps):
        by_dev.setdefault(device_of.get(sid, "?"), []).append(sid)
    relays = {}
    for p in info.get("pipes") or []:
        for d in p["route"][1:-1]:
            relays.setdefault(d, []).append(p["edge"])
    for i, dev in enumerate(sorted(set(info.get("devices") or []) | set(by_dev) | set(relays))):
        kind = interp.get(dev, "")
        lines.append("  subgraph cluster_%d {" % i)
        lines.append('    id=%s; label=<<b>%s</b><br/><font point-size="9">%s</font>>; fontname="DejaVu Sans"; '
                     'fontsize=12; style="rounded,filled"; fillcolor="%s"; color="#94a3b8";'
                     % (_q("device:" + dev), dev, kind, "#fdf4e3" if kind == "micropython" else "#e8f1fb"))
        for sid in by_dev.get(dev, []):
            t = (steps.get(sid) or {}).get("type", "")
            lines.append('    %s [id=%s, label=<<b>%s</b><br/><font point-size="9" color="#64748b">%s</font>>, '
                         'shape=%s];' % (_q("s:" + sid), _q("step:" + sid), sid, t, SHAPES.get(t, "box")))
        for edge in relays.get(dev, []):
            lines.append('    %s [id=%s, label="relay", shape=ellipse, fontsize=9, fillcolor="#f1f5f9"];'
                         % (_q("r:%s:%s" % (dev, edge)), _q("relay:%s:%s" % (dev, edge))))
        if not by_dev.get(dev) and not relays.get(dev):
            lines.append('    %s [label="idle", shape=plaintext, style="", fontcolor="#94a3b8"];' % _q("idle:" + dev))
        lines.append("  }")
    crossing = {(p["producer"], c) for p in info.get("pipes") or [] for c in p["consumers"]}
    for sid, s in steps.items():
        for i in s.get("inputs") or []:
            if (i, sid) not in crossing and i in device_of and device_of.get(i) == device_of.get(sid):
                lines.append("  %s -> %s;" % (_q("s:" + i), _q("s:" + sid)))
    for p in info.get("pipes") or []:
        hops = ["s:" + p["producer"]] + ["r:%s:%s" % (d, p["edge"]) for d in p["route"][1:-1]]
        # the hops up to the receiving device are drawn once, then one arrow to each consumer;
        # only the pipe's first arrow carries its id and label (the live rate), so an id is
        # never given twice when a pipe feeds several steps
        arrows = list(zip(hops, hops[1:])) + [(hops[-1], "s:" + c) for c in dict.fromkeys(p["consumers"])]
        for k, (a, b) in enumerate(arrows):
            # the label holds the live rate later; its placeholder reserves room for it
            label = ', label="no rate yet   ", fontcolor="#94a3b8", id=%s' % _q("pipe:" + p["edge"]) if k == 0 else ""
            lines.append('  %s -> %s [color="#2563eb", penwidth=2, style=bold%s];' % (_q(a), _q(b), label))
    lines.append("}")
    return "\n".join(lines)


NO_DOT = "the pipeline graph needs Graphviz's dot (Debian: apt-get install graphviz)"


def missing_note():
    """A line for the terminal when the dashboard cannot draw its graph, else None."""
    if shutil.which("dot") is not None:
        return None
    return ("dashboard: %s, which is not installed (`bash scripts/dev test` installs it too); the "
            "rest of the page works" % NO_DOT)


def render_svg(info, device_of=None):
    """SVG text of the graph, or a small SVG that says why there is none."""
    dot = shutil.which("dot")
    if dot is None:
        return _message(NO_DOT)
    try:
        r = subprocess.run([dot, "-Tsvg"], input=to_dot(info, device_of), capture_output=True, text=True,
                           timeout=DOT_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as e:
        return _message("dot failed: %s" % e)
    if r.returncode != 0:
        return _message("dot failed: %s" % r.stderr.strip()[:200])
    svg = r.stdout
    return svg[svg.find("<svg"):] if "<svg" in svg else svg


def _message(text):
    from xml.sax.saxutils import escape
    return ('<svg xmlns="http://www.w3.org/2000/svg" width="600" height="40"><text x="10" y="25" '
            'font-family="sans-serif" font-size="13" fill="#b91c1c">%s</text></svg>' % escape(text))
