"""The plots of an experiment (matplotlib, Agg backend: no display needed), as PNG files:

    latency_cdf.png       end-to-end latency distribution per placement, one panel per network condition
    throughput.png        values out per second per placement, grouped by network condition
    cpu_busy.png          loop busy time per device per placement, one panel per network condition
    bytes_per_link.png    bytes per second over each link per placement, one panel per condition
    latency_vs_delay.png  p50 and p95 latency against the injected delay (when several delays ran)

Numbers come from the successful runs (the mean over repeats); latency samples from the measured
part of each run (after the warm-up)."""
from __future__ import annotations

import os

DPI = 80


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _order(rows, key):
    seen = []
    for r in rows:
        if r[key] not in seen:
            seen.append(r[key])
    return seen


def _mean(xs):
    xs = [x for x in xs if isinstance(x, (int, float))]
    return sum(xs) / len(xs) if xs else None


def _panels(plt, n, width=5.0, height=3.4):
    cols = min(n, 3)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    flat = [a for row in axes for a in row]
    for a in flat[n:]:
        a.set_visible(False)
    return fig, flat[:n]


def _save(fig, path):
    """Write the figure to a temporary file and rename it to `path` (never a half-written PNG)."""
    import matplotlib.pyplot as plt
    tmp = "%s.tmp-%d" % (path, os.getpid())
    try:
        fig.tight_layout()
        fig.savefig(tmp, dpi=DPI, format="png")
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def cdf_points(values):
    """The empirical CDF of values as step points (x, fraction of values <= x), starting at
    fraction 0 at the smallest value: ([x0, x0, x1, ...], [0, 1/n, 2/n, ...])."""
    xs = sorted(values)
    if not xs:
        return [], []
    return [xs[0]] + xs, [0.0] + [(i + 1) / len(xs) for i in range(len(xs))]


def draw(out, rows, latencies, devices):
    """Draw every plot into directory `out`; returns the paths written. rows: the runs' rows;
    latencies: {run id: [latency_s, ...]} measured after the warm-up."""
    plt = _plt()
    ok = [r for r in rows if r["status"] == "ok"]
    if not ok:
        return []
    places, nets = _order(ok, "placement"), _order(ok, "network")
    paths = []

    def runs(p, n):
        return [r for r in ok if r["placement"] == p and r["network"] == n]

    # latency CDF
    fig, axes = _panels(plt, len(nets))
    for ax, n in zip(axes, nets):
        lowest = 0.0
        for p in places:
            xs, ys = cdf_points(v * 1000.0 for r in runs(p, n) for v in latencies.get(r["run"], ()))
            if xs:
                ax.step(xs, ys, where="post", label=p)
                lowest = min(lowest, xs[0])
        # from 0 ms (or the lowest sample: a latency within the clock bounds can be negative),
        # so the distance from 0 shows, and from fraction 0
        ax.set_xlim(left=lowest)
        ax.set_ylim(0, 1.02)
        ax.set_title("network: %s" % n, fontsize=10)
        ax.set_xlabel("end-to-end latency (ms)")
        ax.set_ylabel("fraction of values")
        ax.grid(alpha=0.3)
        _legend(ax, 8)
    paths.append(_save(fig, os.path.join(out, "latency_cdf.png")))

    # throughput
    fig, ax = plt.subplots(figsize=(max(5.0, 1.2 * len(nets) * len(places)), 3.6))
    width = 0.8 / len(places)
    for i, p in enumerate(places):
        ys = [_mean([r.get("values_out_per_s") for r in runs(p, n)]) or 0 for n in nets]
        ax.bar([k + i * width for k in range(len(nets))], ys, width, label=p)
    ax.set_xticks([k + width * (len(places) - 1) / 2 for k in range(len(nets))])
    ax.set_xticklabels(nets, fontsize=8)
    ax.set_ylabel("values out per second")
    ax.set_title("throughput at the sinks per placement", fontsize=10)
    ax.margins(y=0.25)
    _legend(ax, 8, columns=len(places))
    paths.append(_save(fig, os.path.join(out, "throughput.png")))

    # CPU busy per device and bytes per link, one panel per network condition
    def grouped(name, labels_of, value_of, ylabel, title):
        fig, axes = _panels(plt, len(nets))
        for ax, n in zip(axes, nets):
            labels = labels_of(n)
            w = 0.8 / len(places)
            for i, p in enumerate(places):
                ys = [_mean([value_of(r, lab) for r in runs(p, n)]) or 0 for lab in labels]
                ax.bar([k + i * w for k in range(len(labels))], ys, w, label=p)
            ax.set_xticks([k + w * (len(places) - 1) / 2 for k in range(len(labels))])
            ax.set_xticklabels(labels, fontsize=8, rotation=20 if len(labels) > 3 else 0)
            ax.set_ylabel(ylabel)
            ax.set_title("%s, network: %s" % (title, n), fontsize=10)
            ax.margins(y=0.25)                 # room for the legend above the bars
            _legend(ax, 8, columns=len(places))
        return _save(fig, os.path.join(out, name))
    paths.append(grouped("cpu_busy.png", lambda n: list(devices),
                         lambda r, d: _pct((r.get("devices") or {}).get(d, {}).get("busy")),
                         "loop busy (%)", "CPU busy per device"))

    def links_of(n):
        return sorted({link for r in ok if r["network"] == n for link in (r.get("links") or {})}) or ["(none)"]
    paths.append(grouped("bytes_per_link.png", links_of,
                         lambda r, link: (r.get("links") or {}).get(link, {}).get("bytes_per_s", 0.0),
                         "bytes per second", "bytes per link"))

    # latency against the injected delay
    delays = sorted({r["delay_ms"] for r in ok if r.get("delay_ms") is not None})
    if len(delays) >= 2:
        fig, ax = plt.subplots(figsize=(5.5, 3.6))
        for p in places:
            pts = []
            for d in delays:
                rs = [r for r in ok if r["placement"] == p and r.get("delay_ms") == d]
                if rs:
                    pts.append((d, _mean([r.get("latency_p50_ms") for r in rs]),
                                _mean([r.get("latency_p95_ms") for r in rs])))
            pts = [x for x in pts if x[1] is not None]
            if pts:
                line, = ax.plot([x[0] for x in pts], [x[1] for x in pts], marker="o", label="%s p50" % p)
                ax.plot([x[0] for x in pts], [x[2] for x in pts], marker="x", linestyle="--",
                        color=line.get_color(), label="%s p95" % p)
        ax.set_xlabel("injected one-way delay (ms)")
        ax.set_ylabel("end-to-end latency (ms)")
        ax.set_title("latency against network delay", fontsize=10)
        ax.grid(alpha=0.3)
        _legend(ax, 7)
        paths.append(_save(fig, os.path.join(out, "latency_vs_delay.png")))
    return paths


def _pct(v):
    return v * 100.0 if isinstance(v, (int, float)) else None


def _legend(ax, size, columns=1):
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=size, ncol=columns, loc="upper center" if columns > 1 else "best")
    else:
        ax.text(0.5, 0.5, "no samples", ha="center", va="center", transform=ax.transAxes)
