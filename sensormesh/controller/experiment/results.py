"""Where an experiment's results go, in its output directory:

    runs.csv        one row per run (RUN_COLUMNS, then per-device columns busy_<device>,
                    cpu_<device>, heap_free_min_<device>, rss_max_<device>)
    devices.csv     the same per-device numbers in long format: one row per run and device
    links.csv       bytes per link (sending device -> receiving device), one row per run and link
    latency.csv     every end-to-end latency sample with its run, sink and phase (warmup|measure)
    metrics.sqlite  the time series of every run: tables samples, latency, events, each with a
                    `run` column (the store's rows, docs/observability.md)
    summary.md      the table side by side (summary.py)
    placements/     the placement of every run (RUN.json: strategy, pins, step -> device, pipes)
    pipeline/       the exact pipeline file, its step modules and placement files
    environment.json  versions (sensormesh, Python, MicroPython, OS), the command and settings

runs.csv is rewritten after every run, so a run cut short (Ctrl-C) leaves the finished ones.
Every file is written whole to a temporary file beside it and renamed over the old one
(`replace_file`), so a controller killed or interrupted while writing leaves the previous
complete file, never a truncated one.
"""
from __future__ import annotations

import csv
import json
import os
import platform
import re
import shutil
import sqlite3
import subprocess
import sys
import time

from sensormesh.controller.observe.files import _Batched

RUN_COLUMNS = ("run", "placement", "strategy", "network", "delay_ms", "repeat", "status", "reason",
               "started", "warmup_s", "duration_s", "window_s", "values_in", "values_out",
               "values_in_per_s", "values_out_per_s", "latency_n", "latency_p50_ms", "latency_p95_ms",
               "latency_p99_ms", "latency_bound_ms", "latency_dropped", "bytes", "bytes_per_s", "run_wall_s")
DEVICE_COLUMNS = ("busy", "cpu", "heap_free_min", "rss_max")

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (run TEXT PRIMARY KEY, placement TEXT, network TEXT, repeat INTEGER, status TEXT);
CREATE TABLE IF NOT EXISTS samples (run TEXT, t REAL, kind TEXT, device TEXT, entity TEXT, metric TEXT, value REAL);
CREATE TABLE IF NOT EXISTS latency (run TEXT, t REAL, sink TEXT, latency_s REAL, bound_s REAL);
CREATE TABLE IF NOT EXISTS events (run TEXT, t REAL, text TEXT);
CREATE INDEX IF NOT EXISTS samples_by_run ON samples (run, kind, entity, metric, t);
"""


class ResultsError(Exception):
    pass


def replace_file(path, write, newline=None):
    """Write `path` at once: write(f) fills a temporary file in the same directory, which then
    replaces `path` (a rename: a reader, or a run killed meanwhile, sees the old file or the new
    one, never a part). A failure (or Ctrl-C) while writing leaves the old file and no temporary one."""
    tmp = "%s.tmp-%d" % (path, os.getpid())
    try:
        with open(tmp, "w", newline=newline) as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise


class RunWriter(_Batched):
    """The store's writer for one run: every row goes to metrics.sqlite with the run's id and
    stays in memory (`all_samples`, `all_latencies`) for the run's numbers."""

    def __init__(self, db, run):
        super().__init__(None)
        self.db, self.run = db, run
        self.all_samples, self.all_latencies = [], []

    def sample(self, t, kind, device, entity, metric, value):
        self.all_samples.append((t, kind, device, entity, metric, value))
        super().sample(t, kind, device, entity, metric, value)

    def latency(self, t, sink, latency_s, bound_s):
        self.all_latencies.append((t, sink, latency_s, bound_s))
        super().latency(t, sink, latency_s, bound_s)

    def meta(self, **kv):
        pass

    def _write(self, samples, latencies, events):
        r = self.run
        with self.db:
            self.db.executemany("INSERT INTO samples VALUES (?, ?, ?, ?, ?, ?, ?)", [(r,) + s for s in samples])
            self.db.executemany("INSERT INTO latency VALUES (?, ?, ?, ?, ?)", [(r,) + s for s in latencies])
            self.db.executemany("INSERT INTO events VALUES (?, ?, ?)", [(r,) + s for s in events])

    def close(self):
        self.flush()


class Results:
    """The output directory of one experiment."""

    def __init__(self, out):
        self.out = out
        self.db = None
        self.latency_rows = []            # every row of latency.csv below its header
        try:
            os.makedirs(os.path.join(out, "placements"), exist_ok=True)
            self.db = sqlite3.connect(os.path.join(out, "metrics.sqlite"), check_same_thread=False)
            self.db.executescript(SCHEMA)
            self._write_latency()
        except (OSError, sqlite3.Error) as e:
            self.close()
            raise ResultsError("cannot write the results to %s: %s" % (out, _why(e)))
        self.rows = []                    # one dict per finished run
        self.outside = {}                 # step module as the file names it -> its copy (save_inputs)
        self.devices = []                 # device names of the runs.csv columns, in order

    def path(self, *parts):
        return os.path.join(self.out, *parts)

    def writer(self, run):
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO runs VALUES (?, ?, ?, ?, ?)",
                            (run.id, run.placement.name, run.network.name, run.repeat, "running"))
        return RunWriter(self.db, run.id)

    # -- one finished run --------------------------------------------------------------------
    def add(self, run, row, latencies=(), start=None, placement=None):
        """Keep a finished run: its row (RUN_COLUMNS plus "devices" and "links"), its latency
        samples (phase from `start`, the end of the warm-up) and its placement."""
        for d in row.get("devices") or {}:
            if d not in self.devices:
                self.devices.append(d)
        self.rows.append(row)
        with self.db:
            self.db.execute("UPDATE runs SET status = ? WHERE run = ?", (row["status"], run.id))
        for t, sink, lat, bound in latencies:
            phase = "measure" if start is not None and t >= start else "warmup"
            self.latency_rows.append((run.id, run.placement.name, run.network.name, run.repeat, phase,
                                      "%.6f" % t, sink, "%.3f" % (lat * 1000.0),
                                      "" if bound is None else "%.3f" % (bound * 1000.0)))
        self._write_latency()
        if placement is not None:
            replace_file(self.path("placements", run.id + ".json"),
                         lambda f: json.dump(placement, f, indent=2, sort_keys=True))
        self.write_tables()

    def _write_latency(self):
        def write(f):
            w = csv.writer(f)
            w.writerow(("run", "placement", "network", "repeat", "phase", "t", "sink", "latency_ms", "bound_ms"))
            w.writerows(self.latency_rows)
        replace_file(self.path("latency.csv"), write, newline="")

    def write_tables(self):
        cols = list(RUN_COLUMNS) + ["%s_%s" % (c, d) for d in self.devices for c in DEVICE_COLUMNS]
        key = ("run", "placement", "network", "repeat")
        replace_file(self.path("runs.csv"), lambda f: self._runs_csv(f, cols), newline="")
        replace_file(self.path("devices.csv"), lambda f: self._devices_csv(f, key), newline="")
        replace_file(self.path("links.csv"), lambda f: self._links_csv(f, key), newline="")

    def _runs_csv(self, f, cols):
        w = csv.DictWriter(f, cols, extrasaction="ignore")
        w.writeheader()
        for row in self.rows:
            flat = {k: _cell(row.get(k)) for k in RUN_COLUMNS}
            for d, vals in (row.get("devices") or {}).items():
                for c in DEVICE_COLUMNS:
                    flat["%s_%s" % (c, d)] = _cell(vals.get(c))
            w.writerow(flat)

    def _devices_csv(self, f, key):
        w = csv.writer(f)
        w.writerow(key + ("device", "interp") + DEVICE_COLUMNS)
        for row in self.rows:
            for d, vals in (row.get("devices") or {}).items():
                w.writerow([row[k] for k in key] + [d, vals.get("interp")] + [_cell(vals.get(c)) for c in DEVICE_COLUMNS])

    def _links_csv(self, f, key):
        w = csv.writer(f)
        w.writerow(key + ("link", "bytes", "bytes_per_s"))
        for row in self.rows:
            for link, vals in sorted((row.get("links") or {}).items()):
                w.writerow([row[k] for k in key] + [link, _cell(vals["bytes"]), _cell(vals["bytes_per_s"])])

    def close(self):
        if self.db is not None:
            self.db.close()

    # -- what makes a run repeatable -----------------------------------------------------------
    def save_inputs(self, file, placement_files=()):
        """Copy the pipeline file, the step modules it names (fn: "steps.py:name") and the
        placement files into pipeline/."""
        try:
            self._save_inputs(file, placement_files)
        except OSError as e:
            raise ResultsError("cannot copy the pipeline into %s: %s" % (self.path("pipeline"), _why(e)))

    def _save_inputs(self, file, placement_files):
        dest = self.path("pipeline")
        os.makedirs(dest, exist_ok=True)
        base = os.path.dirname(os.path.abspath(file))
        shutil.copy2(file, dest)
        with open(file) as f:
            text = f.read()
        for mod in sorted(set(re.findall(r"([\w./-]+\.py):\w+", text))):
            src = os.path.join(base, mod)
            if not os.path.isfile(src):
                continue
            if not os.path.isabs(mod) and ".." not in mod.split("/"):
                os.makedirs(os.path.join(dest, os.path.dirname(mod)), exist_ok=True)
                shutil.copy2(src, os.path.join(dest, mod))
            else:
                # outside the pipeline's folder: kept under outside/, and where it came from is
                # said in environment.json ("step_modules_outside"), so the copy is complete
                there = os.path.join("outside", "%d-%s" % (len(self.outside) + 1, os.path.basename(mod)))
                os.makedirs(os.path.join(dest, "outside"), exist_ok=True)
                shutil.copy2(src, os.path.join(dest, there))
                self.outside[mod] = "pipeline/" + there
        for name, path in placement_files:
            shutil.copy2(path, os.path.join(dest, "placement-%s%s" % (name, os.path.splitext(path)[1])))

    def save_environment(self, settings, argv=None):
        env = versions()
        env.update({"command": argv if argv is not None else sys.argv, "settings": settings,
                    "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "cpus": os.cpu_count(), "load_average": list(os.getloadavg())})
        if self.outside:
            env["step_modules_outside"] = dict(self.outside)
        try:
            replace_file(self.path("environment.json"), lambda f: json.dump(env, f, indent=2, sort_keys=True))
        except OSError as e:
            raise ResultsError("cannot write %s: %s" % (self.path("environment.json"), _why(e)))
        return env


def _why(e):
    """An OSError in words without its errno: "No such file or directory: '/proc/x'"."""
    if isinstance(e, OSError) and e.strerror:
        return "%s: %r" % (e.strerror, e.filename) if e.filename else e.strerror
    return str(e)


def _cell(v):
    if isinstance(v, float):
        return "%.6g" % v
    return "" if v is None else v


def versions():
    """{"sensormesh", "python", "micropython", "os", "matplotlib"} of this machine."""
    from importlib import metadata
    out = {"python": sys.version.split()[0], "os": platform.platform()}
    for pkg in ("sensormesh", "matplotlib"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    mp = shutil.which("micropython") or shutil.which("micropython", path=os.path.dirname(sys.executable))
    out["micropython"] = None
    if mp:
        try:
            res = subprocess.run([mp, "-c", "import sys; print(sys.version, sys.implementation.version)"],
                                 capture_output=True, text=True, timeout=10)
            out["micropython"] = res.stdout.strip() or None
        except (OSError, subprocess.TimeoutExpired):
            pass
    return out
