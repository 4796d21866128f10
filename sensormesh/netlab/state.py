"""What an emulated network created, on disk, so that a crashed controller leaves nothing behind.

Each run writes `.sensormesh/netlab-<pid>.json` in the working directory *before* it creates
anything (namespaces, relay and device processes) and deletes it after removing everything.
A run that was killed (SIGKILL, a crash, a power cut of the terminal) leaves the file; the
next run in that directory calls `cleanup_leftovers()`, which ends the processes still running
under the recorded PIDs (only when their start time matches the record, so a reused PID is
never hit), deletes the recorded namespaces and the file. A file whose owner still runs is
another live run and is left alone. CPython only.
"""
from __future__ import annotations

import glob
import json
import os
import signal
import time

STATE_DIR = ".sensormesh"
PATTERN = "netlab-*.json"
KILL_TIMEOUT = 5.0      # SIGTERM, then this long, then SIGKILL


def start_time(pid):
    """The start time of process pid (clock ticks since boot, /proc/PID/stat field 22), or
    None when it does not run."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rpartition(")")[2].split()
    except (OSError, ValueError):
        return None
    if fields and fields[0] == "Z":
        return None
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def same_process(entry):
    """True when the recorded {"pid", "start"} still names the same running process."""
    st = start_time(entry.get("pid", -1))
    return st is not None and st == entry.get("start")


def _end(entries, timeout=KILL_TIMEOUT):
    """SIGTERM the recorded processes that still run, SIGKILL those left after timeout."""
    live = [e for e in entries if same_process(e)]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for e in live:
            try:
                os.kill(e["pid"], sig)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.monotonic() + timeout
        while live and time.monotonic() < deadline:
            live = [e for e in live if same_process(e)]
            if live:
                time.sleep(0.02)
        if not live:
            break
    return live


class RunState:
    """The record of one run: call add_* before creating the thing, close() after removing all."""

    def __init__(self, workdir=None):
        self.dir = os.path.join(workdir or os.getcwd(), STATE_DIR)
        self.path = os.path.join(self.dir, "netlab-%d.json" % os.getpid())
        self.data = {"owner": {"pid": os.getpid(), "start": start_time(os.getpid())},
                     "namespaces": [], "processes": [], "files": []}

    def save(self):
        os.makedirs(self.dir, exist_ok=True)
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.data, f, indent=1)
        os.replace(tmp, self.path)

    def add_namespace(self, name):
        self.data["namespaces"].append(name)
        self.save()

    def add_process(self, pid, what):
        self.data["processes"].append({"pid": pid, "start": start_time(pid), "what": what})
        self.save()

    def add_file(self, path):
        self.data["files"].append(os.path.abspath(path))
        self.save()

    def close(self):
        """Everything recorded is gone: forget the run."""
        for p in (self.path, self.path + ".tmp"):
            try:
                os.remove(p)
            except OSError:
                pass


def remove_recorded(data):
    """End the recorded processes, delete the recorded namespaces and files. Returns a list of
    what was removed, in words."""
    done = []
    # only the processes that still ran are named: one that had exited by itself (a relay
    # exits when its controller is gone) was not removed by this clean-up
    procs = [e for e in data.get("processes") or [] if same_process(e)]
    left = _end(procs)
    done += ["process %d (%s)" % (e["pid"], e.get("what", "?")) for e in procs if e not in left]
    names = data.get("namespaces") or []
    if names:
        from sensormesh.netlab import namespaces
        try:
            existing = set(namespaces.namespaces())
        except (namespaces.NetLabError, OSError):
            existing = set()
        for name in names:
            if name in existing:
                namespaces.destroy_namespace(name)
                done.append("namespace " + name)
    for path in data.get("files") or []:
        try:
            if os.path.isdir(path):
                import shutil
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.remove(path)
            done.append("file " + path)
        except OSError:
            pass
    return done


def cleanup_leftovers(workdir=None):
    """Remove what runs in `workdir` that are no longer alive left behind; returns it in words."""
    removed = []
    for path in sorted(glob.glob(os.path.join(workdir or os.getcwd(), STATE_DIR, PATTERN))):
        try:
            with open(path) as f:
                data = json.load(f)
        except (OSError, ValueError):
            continue
        owner = data.get("owner") or {}
        if same_process(owner):
            continue                  # a run that is still going (or this one)
        removed += remove_recorded(data)
        try:
            os.remove(path)
        except OSError:
            pass
    return removed
