"""Where the store writes its samples for later analysis: one SQLite file (default) or one CSV file.

SQLite because a run is then one file that needs no server, answers SQL at once and opens in
anything that reads sqlite3 (Python's sqlite3, pandas.read_sql, DuckDB, the sqlite3 shell); CSV
for tools that take nothing else. Both hold the same tidy rows; docs/observability.md has the
schema. Writes are batched: rows wait in memory and go out in one transaction at most every
FLUSH_EVERY seconds or FLUSH_ROWS rows, so a poll of many devices costs one commit, not hundreds.
"""
import csv
import json
import os
import sqlite3
import time

FLUSH_EVERY = 1.0      # seconds a row may wait before it is written
FLUSH_ROWS = 2000      # rows that trigger a write at once

SCHEMA = """
CREATE TABLE IF NOT EXISTS run (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS samples (t REAL, kind TEXT, device TEXT, entity TEXT, metric TEXT, value REAL);
CREATE TABLE IF NOT EXISTS latency (t REAL, sink TEXT, latency_s REAL, bound_s REAL);
CREATE TABLE IF NOT EXISTS events (t REAL, text TEXT);
CREATE INDEX IF NOT EXISTS samples_by_series ON samples (kind, entity, metric, t);
"""

CSV_COLUMNS = ("t", "kind", "device", "entity", "metric", "value")
TABLES = ("run", "samples", "latency", "events")


class FileError(Exception):
    pass


def default_path(pipeline, directory=".sensormesh", now=None):
    """.sensormesh/metrics-<pipeline>-<UTC time>.sqlite in the working directory."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now if now is not None else time.time()))
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in pipeline) or "pipeline"
    return os.path.join(directory, "metrics-%s-%s.sqlite" % (safe, stamp))


def open_writer(path):
    """A writer for path by its extension: .csv -> CsvWriter, .sqlite/.sqlite3/.db -> SqliteWriter."""
    ext = os.path.splitext(path)[1].lower()
    if ext == ".csv":
        return CsvWriter(path)
    if ext in (".sqlite", ".sqlite3", ".db"):
        return SqliteWriter(path)
    raise FileError("metrics file %s: use a name ending in .sqlite, .sqlite3, .db or .csv" % path)


def _parent(path):
    d = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(d, exist_ok=True)
    except OSError as e:
        blocker = d
        while blocker != os.path.dirname(blocker) and not os.path.lexists(blocker):
            blocker = os.path.dirname(blocker)
        if os.path.lexists(blocker) and not os.path.isdir(blocker):
            raise FileError("cannot create %s for the metrics file: %s is a file, not a folder" % (d, blocker))
        raise FileError("cannot create %s for the metrics file: %s" % (d, e))


class _Batched:
    """Rows kept until flush(); subclasses write them."""

    def __init__(self, path):
        self.path = path
        self.samples, self.latencies, self.events = [], [], []
        self.last_flush = time.monotonic()
        self.rows = 0

    def sample(self, t, kind, device, entity, metric, value):
        self.samples.append((t, kind, device, entity, metric, value))
        self._maybe_flush()

    def latency(self, t, sink, latency_s, bound_s):
        self.latencies.append((t, sink, latency_s, bound_s))
        self._maybe_flush()

    def event(self, t, text):
        self.events.append((t, text))
        self._maybe_flush()

    def _maybe_flush(self):
        n = len(self.samples) + len(self.latencies) + len(self.events)
        if n >= FLUSH_ROWS or time.monotonic() - self.last_flush >= FLUSH_EVERY:
            self.flush()

    def flush(self):
        self.last_flush = time.monotonic()
        if not (self.samples or self.latencies or self.events):
            return
        rows = (self.samples, self.latencies, self.events)
        self.samples, self.latencies, self.events = [], [], []
        self._write(*rows)
        self.rows += sum(len(r) for r in rows)


class SqliteWriter(_Batched):

    def __init__(self, path):
        super().__init__(path)
        _parent(path)
        try:
            self.db = sqlite3.connect(path, check_same_thread=False)
            self._start_afresh()
            self.db.executescript(SCHEMA)
        except sqlite3.Error as e:
            raise FileError("cannot write the metrics file %s: %s" % (path, e))

    def _start_afresh(self):
        """A file is one run: the metrics file of an earlier run by that name is replaced (as a CSV
        file is), never added to (its rows would mix with this run's under the other run's
        `run` table). A database that holds anything else is not touched."""
        names = [r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        other = sorted(n for n in names if n not in TABLES and not n.startswith("sqlite_"))
        if other:
            self.db.close()
            raise FileError("%s is a database with other tables (%s), not a sensormesh metrics file: "
                            "give --metrics-out another file name" % (self.path, ", ".join(other[:5])))
        with self.db:
            for n in TABLES:
                if n in names:
                    self.db.execute("DROP TABLE %s" % n)

    def meta(self, **kv):
        with self.db:
            self.db.executemany("INSERT OR REPLACE INTO run VALUES (?, ?)",
                                [(k, v if isinstance(v, str) else json.dumps(v)) for k, v in kv.items()])

    def _write(self, samples, latencies, events):
        with self.db:
            self.db.executemany("INSERT INTO samples VALUES (?, ?, ?, ?, ?, ?)", samples)
            self.db.executemany("INSERT INTO latency VALUES (?, ?, ?, ?)", latencies)
            self.db.executemany("INSERT INTO events VALUES (?, ?)", events)

    def close(self):
        self.flush()
        self.db.close()


class CsvWriter(_Batched):
    """One CSV with the columns of `samples`; latency samples are rows of kind "latency" (entity =
    the sink, metrics latency_s and bound_s), events rows of kind "event" (entity = the text)."""

    def __init__(self, path):
        super().__init__(path)
        _parent(path)
        self._refuse_other(path)
        try:
            self.f = open(path, "w", newline="")
        except OSError as e:
            raise FileError("cannot write the metrics file %s: %s" % (path, e))
        self.w = csv.writer(self.f)
        self.w.writerow(CSV_COLUMNS)

    @staticmethod
    def _refuse_other(path):
        """The metrics file of an earlier run by that name is replaced; a CSV file that holds
        anything else (its first line is not this header) is not touched, as a database with
        other tables is not."""
        try:
            with open(path, newline="") as f:
                first = f.readline()
        except FileNotFoundError:
            return
        except (OSError, UnicodeDecodeError) as e:
            raise FileError("cannot read %s to check it is a metrics file: %s" % (path, e))
        if first and first.rstrip("\r\n") != ",".join(CSV_COLUMNS):
            raise FileError("%s is a CSV file with other columns (%s), not a sensormesh metrics file: "
                            "give --metrics-out another file name" % (path, first.strip()[:60]))

    def meta(self, **kv):
        for k, v in kv.items():
            self.events.append((0.0, "%s=%s" % (k, v if isinstance(v, str) else json.dumps(v))))

    def _write(self, samples, latencies, events):
        self.w.writerows(samples)
        for t, sink, lat, bound in latencies:
            self.w.writerow((t, "latency", "", sink, "latency_s", lat))
            self.w.writerow((t, "latency", "", sink, "bound_s", bound))
        for t, text in events:
            self.w.writerow((t, "event", "", text, "", ""))
        self.f.flush()

    def close(self):
        self.flush()
        self.f.close()
