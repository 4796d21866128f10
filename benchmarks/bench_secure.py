"""Encrypted vs plaintext connections, measured in one run.

For each worker interpreter (CPython, MicroPython unix port): the counter stream's values/s
over loopback TCP, plaintext (a device without keys) and encrypted (the same device with keys,
a reader key on the client), per value (time-frame 0) and batched (time-frame 10 ms); the ratio
encrypted / plaintext is of figures taken in this run. Then the handshake as a client sees it
(connect + handshake, median of several): first contact (a reader key the device has not seen:
both sides do their X25519 step) and later connections (pair key cached on both sides), against
each worker, next to a plaintext connect + info round trip; and an ESP32 estimate of the device's
share of a handshake from the unix-port measurement (factors of benchmarks/bench_crypto.py).

    python benchmarks/bench_secure.py [--seconds 2]
"""
import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

from procs import Proc, free_port  # noqa: E402

sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
from bench_stream import count  # noqa: E402


def reader(addr, tf, seconds, creds):
    """Child process: request the counter stream and count what arrives."""
    from sensormesh.client import Client
    c = Client(addr, timeout=10, identity=creds or None, server="dev-a" if creds else None)
    c.request_data("counter", tf)
    count(c, seconds)


def worker_argv(interp, port, keys):
    args = ["--port", str(port), "--sensors", "counter@0"]
    if keys:
        args += ["--identity", keys["identity"], "--trust", keys["trust"]]
    if interp == "cpython":
        return [sys.executable, "-m", "sensormesh.cli", "worker"] + args
    return ["micropython", "-m", "sensormesh.device"] + args


def stream(interp, keys, creds, tf, seconds):
    port = free_port()
    p = Proc(worker_argv(interp, port, keys))
    try:
        p.wait_line("listening on")
        r = subprocess.run([sys.executable, __file__, "--reader", "127.0.0.1:%d" % port, "--tf", str(tf),
                            "--seconds", str(seconds), "--creds", creds if keys else ""],
                           capture_output=True, text=True, timeout=seconds + 60)
        if r.returncode:
            raise RuntimeError(r.stderr)
        return json.loads(r.stdout)
    finally:
        p.stop()


def handshakes(interp, keys, readers):
    """Median ms of: plaintext connect + info; first-contact handshake; cached handshake (client's
    view). readers: one credentials directory per first contact (keys the device has not met)."""
    from sensormesh.device.secure import handshake as session
    from sensormesh.client import Client
    out = {}
    n = len(readers)
    for secure in (False, True):
        port = free_port()
        p = Proc(worker_argv(interp, port, keys if secure else None))
        try:
            p.wait_line("listening on")
            addr = "127.0.0.1:%d" % port
            if not secure:
                t = []
                for _ in range(n):
                    t0 = time.perf_counter()
                    c = Client(addr)
                    c.call({"info": {}})
                    t.append(time.perf_counter() - t0)
                    c.close()
                out["plain"] = statistics.median(t) * 1000
                continue
            first, cached = [], []
            for r in readers:
                creds = session.load_credentials(r)    # a new key, an empty pair-key cache
                t0 = time.perf_counter()
                c = Client(addr, identity=creds, server="dev-a")
                c.call({"info": {}})
                first.append(time.perf_counter() - t0)
                c.close()
                t0 = time.perf_counter()
                c = Client(addr, identity=creds, server="dev-a")
                c.call({"info": {}})
                cached.append(time.perf_counter() - t0)
                assert creds.pairs.computed == 1
                c.close()
            c = Client(addr, identity=creds, server="dev-a")
            st = c.call({"status": {}})["status"]["security"]
            c.close()
            assert st["key_agreements"] == n, st      # one X25519 step per new key, none for the rest
            out["first"] = statistics.median(first) * 1000
            out["cached"] = statistics.median(cached) * 1000
        finally:
            p.stop()
    return out


def esp32_estimate():
    """The device (server) side of one handshake on an ESP32, from the unix-port figures."""
    src = open(os.path.join(ROOT, "benchmarks", "bench_crypto.py")).read()
    bigint = int(re.search(r"^BIGINT = (\d+)", src, re.M).group(1))
    other = int(re.search(r"^OTHER = (\d+)", src, re.M).group(1))
    r = subprocess.run(["micropython", os.path.join(ROOT, "benchmarks", "bench_crypto.py"), "--json"],
                       capture_output=True, text=True, timeout=600, cwd=ROOT)
    mp = json.loads(r.stdout.strip().splitlines()[-1])
    x = mp["x25519_us"]
    rest = max(mp["hs_server_us"] - x, 0) * other
    server = (x * bigint + rest) / 1e6
    low = (x * 65 + rest) / 1e6
    high = (x * 130 + rest) / 1e6
    cached = mp["cached_server_us"] * other / 1e3
    return mp, bigint, other, server, low, high, cached


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--reader")
    ap.add_argument("--tf", type=int, default=0)
    ap.add_argument("--creds", default="")
    a = ap.parse_args()
    if a.reader:
        return reader(a.reader, a.tf, a.seconds, a.creds)
    from sensormesh.controller.keys import KeyStore, provision_local
    tmp = tempfile.mkdtemp(prefix="sm-bench-secure-")
    try:
        store = os.path.join(tmp, "keys")
        keys = provision_local(["dev-a"], store)["dev-a"]
        ks = KeyStore(store)
        ks.issue("bench-reader", "reader")
        creds = os.path.join(tmp, "reader")
        ks.export("bench-reader", creds)
        readers = []
        for i in range(15):
            ks.issue("bench-first-%d" % i, "reader")
            readers.append(os.path.join(tmp, "first-%d" % i))
            ks.export("bench-first-%d" % i, readers[-1])
        interps = ["cpython"] + (["micropython"] if shutil.which("micropython") else [])
        rows = []
        for interp in interps:
            for tf, label in ((0, "per value (time-frame 0)"), (10, "batched (time-frame 10 ms)")):
                plain = stream(interp, None, creds, tf, a.seconds)
                enc = stream(interp, keys, creds, tf, a.seconds)
                rows.append((interp, label, plain, enc))
        hs = {interp: handshakes(interp, keys, readers) for interp in interps}
        print()
        print("encrypted vs plaintext, counter stream over loopback TCP, %.0f s each" % a.seconds)
        print("%-12s %-28s %14s %14s %8s" % ("worker", "mode", "plain val/s", "encrypted val/s", "ratio"))
        for interp, label, plain, enc in rows:
            print("%-12s %-28s %14s %14s %8.2f" % (interp, label, "{:,.0f}".format(plain["values"]),
                                                   "{:,.0f}".format(enc["values"]), enc["values"] / plain["values"]))
        print()
        print("connection set-up as the client sees it (median of 15, ms): connect + first reply")
        print("%-12s %12s %16s %16s" % ("worker", "plaintext", "first contact", "pair key cached"))
        for interp in interps:
            h = hs[interp]
            print("%-12s %12.2f %16.2f %16.2f" % (interp, h["plain"], h["first"], h["cached"]))
        if "micropython" in interps:
            mp, bigint, other, server, low, high, cached = esp32_estimate()
            print()
            print("ESP32 estimate, device side of a first-contact handshake with a CPython client: %.2f s "
                  "(range %.2f-%.2f s; unix port: server side %.1f ms, X25519 step alone %.1f ms (x%d), the rest x%d; "
                  "separate best-of-3 runs); pair key cached: %.0f ms"
                  % (server, low, high, mp["hs_server_us"] / 1000, mp["x25519_us"] / 1000, bigint, other, cached))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
