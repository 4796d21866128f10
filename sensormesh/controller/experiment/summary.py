"""summary.md: the runs side by side, one row per placement and network condition (the mean over
its repeats that ran), the best value of each column in bold. Pure (tested without devices)."""
from __future__ import annotations

# (column, heading, better: "min" or "max" (None: not ranked), format)
COLUMNS = (("values_out_per_s", "values out/s", "max", "%.1f"),
           ("latency_p50_ms", "p50 ms", "min", "%.1f"),
           ("latency_p95_ms", "p95 ms", "min", "%.1f"),
           ("latency_p99_ms", "p99 ms", "min", "%.1f"),
           ("latency_n", "latency samples", None, "%.0f"),     # what the percentiles rest on: not ranked
           ("bytes_per_s", "bytes/s between devices", "min", "%.0f"))


def groups(rows):
    """[(placement, network, [rows with status ok])] in the order the runs came, failed groups too."""
    out = {}
    for r in rows:
        key = (r["placement"], r["network"])
        out.setdefault(key, [])
        if r["status"] == "ok":
            out[key].append(r)
    return [(p, n, rs) for (p, n), rs in out.items()]


def _mean(values):
    xs = [v for v in values if isinstance(v, (int, float))]
    return sum(xs) / len(xs) if xs else None


def table(rows, devices):
    """(headings, [[cells]], [[raw values]], better per column) of the summary table."""
    cols = list(COLUMNS) + [("busy:" + d, "busy %s" % d, "min", "%.1f%%") for d in devices]
    head = ["placement", "network", "runs"] + [c[1] for c in cols]
    raw_rows = []
    for placement, network, rs in groups(rows):
        vals = []
        for key, _, _, _ in cols:
            if key.startswith("busy:"):
                d = key[5:]
                v = _mean([(r.get("devices") or {}).get(d, {}).get("busy") for r in rs])
                vals.append(v * 100.0 if v is not None else None)
            else:
                vals.append(_mean([r.get(key) for r in rs]))
        n_all = sum(1 for r in rows if (r["placement"], r["network"]) == (placement, network))
        raw_rows.append(([placement, network, "%d/%d ok" % (len(rs), n_all)], vals))
    return head, raw_rows, [c[2] for c in cols], [c[3] for c in cols]


def best(raw_rows, better):
    """{(row index, column index)} of the best value per column (ties all marked); a column
    where every row has the same value marks nothing."""
    marks = set()
    for j, how in enumerate(better):
        if how is None:
            continue
        vals = [(i, r[1][j]) for i, r in enumerate(raw_rows) if r[1][j] is not None]
        if len(vals) < 2 or len({v for _, v in vals}) < 2:
            continue
        target = min(v for _, v in vals) if how == "min" else max(v for _, v in vals)
        marks |= {(i, j) for i, v in vals if v == target}
    return marks


def shown(fmt, v):
    """The value as the table shows it (rounded), so equal-looking cells tie."""
    return None if v is None else float((fmt % v).rstrip("%"))


def markdown(rows, devices, title="Experiment"):
    head, raw_rows, better, fmts = table(rows, devices)
    marks = best([(labels, [shown(f, v) for f, v in zip(fmts, vals)]) for labels, vals in raw_rows], better)
    lines = ["# %s" % title, "",
             "One row per placement and network condition (the mean over its repeats that ran); "
             "the best value of each column is **bold** (highest values out/s; lowest latency, "
             "bytes and busy). Latency is end-to-end from the sensor read to the sink; latency samples "
             "is how many values per run the percentiles rest on (with fewer than 100, the p99 is the "
             "largest one, with fewer than 20 the p95 too); busy is the fraction of time a device's "
             "loop was not waiting.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for i, (labels, vals) in enumerate(raw_rows):
        cells = []
        for j, v in enumerate(vals):
            text = "-" if v is None else fmts[j] % v
            cells.append("**%s**" % text if (i, j) in marks else text)
        lines.append("| " + " | ".join(labels + cells) + " |")
    failed = [r for r in rows if r["status"] != "ok"]
    if failed:
        lines += ["", "Runs that did not complete:", ""]
        lines += ["- %s (%s / %s, repeat %s): %s, %s" % (r["run"], r["placement"], r["network"], r["repeat"],
                                                       r["status"], r.get("reason") or "") for r in failed]
    noted = [r for r in rows if r["status"] == "ok" and r.get("reason")]
    if noted:
        lines += ["", "Runs that completed with a local device restarted (counted above; their numbers "
                  "hold the values lost while it was down):", ""]
        lines += ["- %s (%s / %s, repeat %s): %s" % (r["run"], r["placement"], r["network"], r["repeat"],
                                                   r["reason"]) for r in noted]
    return "\n".join(lines) + "\n"
