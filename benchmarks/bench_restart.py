"""Time from a local device's death to the stream resuming, under `sensormesh up`, in one run.

A chain src -> mid -> sink of local devices (keys on, as `up` runs by default); mid holds a
pinned window. For mid on CPython and on the MicroPython unix port: the time from `up`'s start
to the first value at the sink (cold start, the baseline), then `--kills` times: mid is killed
with SIGKILL (by PID) and the time until the first value at the sink that was read after the
kill (restart backoff 0.5 s + the process starting + the supervisor noticing, probing and
redeploying). The ratio is resume / cold start, both measured in this run. Also counted: the
pipe connections the restarted mid took and refused (`unknown-edge`) while it waited for its
deployment, each one a handshake on both ends.

    python benchmarks/bench_restart.py [--kills 3]
"""
import argparse
import os
import pathlib
import shutil
import signal
import statistics
import sys
import tempfile
import textwrap
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

from sensormesh.controller import runner  # noqa: E402
from sensormesh.controller.pipeline_file import load_model  # noqa: E402
from test_up_restart import CHAIN, children_running  # noqa: E402


def measure(interp, kills):
    d = pathlib.Path(tempfile.mkdtemp(prefix="bench-restart-"))
    try:
        f = d / "chain.yaml"
        f.write_text(textwrap.dedent(CHAIN % {"interp": interp}))
        model = load_model(str(f))
        lock = threading.Lock()
        st = {"t0": time.monotonic(), "first": None, "kill_at": None, "n": 0, "resumes": [], "redeployed": False,
              "refused": 0, "refusals": [], "last": -1}

        def on_event(text):
            with lock:
                if st["kill_at"] is not None and "mid answers again" in text:
                    st["redeployed"] = True

        def on_line(device, line):
            if device == "mid" and "unknown-edge" in line:
                with lock:
                    st["refused"] += 1

        def on_deliver(device, step, vals):
            now = time.monotonic()
            with lock:
                st["n"] += len(vals)
                if st["first"] is None:
                    st["first"] = now - st["t0"]
                newer = vals and vals[-1] > st["last"]
                if st["kill_at"] is None and vals:
                    st["last"] = vals[-1]
                # resumed: mid answers again and a sum newer than any before the kill arrives
                # (values in flight when mid died, or recomputed from readings sent again, are not)
                if st["kill_at"] is not None and st["redeployed"] and newer:
                    st["last"] = vals[-1]
                    st["resumes"].append(now - st["kill_at"])
                    st["refusals"].append(st["refused"])
                    st["kill_at"] = None

        def until():
            with lock:
                if st["kill_at"] is None and st["n"] >= 5:
                    if len(st["resumes"]) >= kills:
                        return True
                    pids = children_running("/mid.json")
                    if len(pids) == 1:
                        os.kill(pids[0], signal.SIGKILL)
                        st["kill_at"] = time.monotonic()
                        st["redeployed"] = False
                        st["n"] = 0
                        st["refused"] = 0
                return False
        runner.up(model, duration=30 + 20 * kills, until=until, on_event=on_event,
                  on_deliver=on_deliver, on_line=on_line, keys_dir=str(d / "keys"), timeout=5.0)
        return st["first"], st["resumes"], st["refusals"]
    finally:
        shutil.rmtree(d, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=3)
    a = ap.parse_args()
    interps = ["cpython"] + (["micropython"] if shutil.which("micropython") else [])
    print("%-12s %16s %16s %18s %8s %22s" % ("mid runs on", "cold start (s)", "resume min (s)",
                                             "resume median (s)", "ratio", "refused dials (each)"))
    for interp in interps:
        first, resumes, refusals = measure(interp, a.kills)
        if not resumes:
            print("%-12s %16.2f %16s" % (interp, first, "did not resume"))
            continue
        med = statistics.median(resumes)
        print("%-12s %16.2f %16.2f %18.2f %8.2f %22s" % (interp, first, min(resumes), med, med / first,
                                                        ", ".join(str(n) for n in refusals)))


if __name__ == "__main__":
    main()
