"""The progress display of an experiment: the current run (k/N, its name), how long it has run
and the time left for the whole experiment. On a terminal one line is redrawn in place (at most
4 times a second); otherwise (a file, a pipe, CI) a plain line per run start and end."""
from __future__ import annotations

import sys
import time

REDRAW = 0.25        # seconds between two redraws on a terminal


def clock(seconds):
    seconds = max(0, int(round(seconds)))
    return "%d:%02d" % divmod(seconds, 60) if seconds < 3600 else "%d:%02d:%02d" % (
        seconds // 3600, seconds % 3600 // 60, seconds % 60)


class Progress:
    def __init__(self, total, per_run, out=None, tty=None, now=time.monotonic):
        self.total = total
        self.per_run = per_run             # the expected seconds of one run (warm-up + duration + start/stop)
        self.out = out or sys.stdout
        self.tty = self.out.isatty() if tty is None else tty
        self.now = now
        self.walls = []                    # seconds each finished run took
        self.run = None
        self.k = 0
        self.t_run = None
        self.drawn = 0.0
        self.width = 0

    def expected(self):
        """Seconds one run takes: the mean of those finished, else the estimate."""
        return sum(self.walls) / len(self.walls) if self.walls else self.per_run

    def left(self):
        """Seconds left for the whole experiment, the current run included."""
        cur = 0.0
        if self.t_run is not None:
            cur = max(0.0, self.expected() - (self.now() - self.t_run))
        return cur + self.expected() * (self.total - self.k)

    def start(self, k, run):
        self.k, self.run, self.t_run = k, run, self.now()
        if self.tty:
            self.tick(force=True)
        else:
            self._line("run %d/%d %s: started (about %s left)" % (k, self.total, run.label, clock(self.left())))

    def tick(self, force=False):
        """Redraw the line on a terminal; called from the controller's loop. Never ends a run."""
        if not self.tty or self.run is None:
            return False
        t = self.now()
        if force or t - self.drawn >= REDRAW:
            self.drawn = t
            text = "run %d/%d %s  %s  (%s left)" % (self.k, self.total, self.run.label,
                                                    clock(t - self.t_run), clock(self.left()))
            pad = max(0, self.width - len(text))
            self.width = len(text)
            self.out.write("\r" + text + " " * pad)
            self.out.flush()
        return False

    def done(self, row):
        self.walls.append(self.now() - self.t_run)
        self.t_run = None
        status = row["status"] if row["status"] != "failed" else "FAILED: " + row.get("reason", "")
        bits = []
        if row.get("latency_p50_ms") is not None:
            bits.append("p50 %.1f ms of %d latency sample%s" % (
                row["latency_p50_ms"], row.get("latency_n") or 0, "" if row.get("latency_n") == 1 else "s"))
        if row.get("values_out_per_s") is not None:
            bits.append("%.1f values/s out" % row["values_out_per_s"])
        if row.get("bytes_per_s") is not None:
            bits.append("%.0f B/s between devices" % row["bytes_per_s"])
        text = "run %d/%d %s: %s%s" % (self.k, self.total, self.run.label, status,
                                       (" (" + ", ".join(bits) + ")") if bits and row["status"] == "ok" else "")
        if row["status"] == "ok" and row.get("reason"):      # ok, with a note (a device restarted)
            text += "; " + row["reason"]
        if self.tty:
            self.out.write("\r" + " " * self.width + "\r")
            self.width = 0
        self._line(text)

    def note(self, text):
        if self.tty and self.width:
            self.out.write("\r" + " " * self.width + "\r")
            self.width = 0
        self._line(text)

    def _line(self, text):
        self.out.write(text + "\n")
        self.out.flush()
