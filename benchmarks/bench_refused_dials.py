"""How often a pipe dials a receiver that takes the connection and refuses the edge (restarted, or
not deployed yet), and how soon values flow once the receiver is deployed.

Two local devices on loopback (plaintext; with keys each connection is also a handshake on both
ends): a sender deployed alone, piping a counter to a receiver that has no assignment, so it
refuses every connection with `unknown-edge`. After --wait seconds the benchmark reads the
sender's `connects` (connections that came up, each refused), then deploys the receiver and
times the first value at its callback sink. Both interpreters on either end.
Then the same for a registration: a device started with `--register` dials an upstream (here a
loopback listener of the benchmark) that answers every register with an error and closes; the
connections the upstream took in --wait seconds are counted.
--against DIR runs another checkout's device code the same way in the same run (alternating
rounds): the baseline.

    python benchmarks/bench_refused_dials.py [--wait 5] [--rounds 3] [--against ../other-checkout]
"""
import argparse
import os
import shutil
import socket
import statistics
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

from procs import Proc, free_port  # noqa: E402
from sensormesh.controller import mpy_cache  # noqa: E402
from sensormesh.controller.deploy import deploy, status  # noqa: E402
from sensormesh.device import codec  # noqa: E402


# The MicroPython devices run from the checkout's .mpy files (both checkouts compared alike) under a
# heap every role fits in from files.
HEAP = "112K"


def argv(code, interp, port, name, sensors):
    args = ["--port", str(port), "--name", name, "--sensors", sensors]
    if interp == "micropython":
        folder, _ = mpy_cache.bundle(root=os.path.join(code, ".sensormesh", "mpy-cache"), base=code)
        return [shutil.which("micropython"), "-X", "heapsize=" + HEAP,
                os.path.join(folder, mpy_cache.LAUNCHER)] + args
    return [sys.executable, "-m", "sensormesh.cli", "worker"] + args


def one(code, sender, receiver, wait):
    """(connections refused in `wait` s, seconds from the receiver's deployment to its first value)"""
    ports = {"a": free_port(), "c": free_port()}
    env = {"PYTHONPATH": code}
    procs = [Proc(argv(code, sender, ports["a"], "a", "counter@50"), cwd=code, env=env),
             Proc(argv(code, receiver, ports["c"], "c", ""), cwd=code, env=env)]
    try:
        for p in procs:
            p.wait_line("listening on")
        addr = {n: "127.0.0.1:%d" % p for n, p in ports.items()}
        first = deploy({"a": {"pipeline": "rd", "epoch": 1, "steps": [
            {"id": "s", "type": "source", "params": {"sensor": "counter"}},
            {"id": "o", "type": "pipe_out", "params": {"edge": "e", "to": addr["c"], "time-frame": 20},
             "inputs": ["s"]}]}}, {"a": addr["a"]})
        try:
            time.sleep(wait)      # the refusals go on meanwhile (a benchmark's measuring window)
            refused = status({"a": addr["a"]})["a"]["assignment"]["steps"]["o"]["connects"]
            second = deploy({"c": {"pipeline": "rd", "epoch": 1, "steps": [
                {"id": "i", "type": "pipe_in", "params": {"edge": "e"}},
                {"id": "k", "type": "callback", "params": {"name": "got"}, "inputs": ["i"]}]}}, {"c": addr["c"]})
            t0 = time.monotonic()
            got = []
            try:
                second.watch(lambda dev, step, values: got.extend(values), until=lambda: bool(got), timeout=30)
                took = time.monotonic() - t0 if got else None
                second.stop()
            finally:
                second.close()
        finally:
            first.stop()
            first.close()
        return refused, took
    finally:
        for p in procs:
            p.stop()


def refused_registrations(code, interp, wait):
    """Connections a refusing upstream took from a registering device in `wait` s."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.settimeout(0.2)
    took = []
    done = threading.Event()

    def serve():
        while not done.is_set():
            try:
                c, _ = srv.accept()
            except socket.timeout:
                continue
            took.append(time.monotonic())
            c.settimeout(2)
            try:
                c.recv(4096)        # its register
                c.sendall(codec.encode({"error": {"code": "bad-request", "message": "not here"}}))
            except OSError:
                pass
            c.close()
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    args = argv(code, interp, free_port(), "r", "") + ["--register", "127.0.0.1:%d" % srv.getsockname()[1]]
    p = Proc(args, cwd=code, env={"PYTHONPATH": code})
    try:
        p.wait_line("listening on")
        t0 = time.monotonic()
        time.sleep(wait)            # the refusals go on meanwhile (the measuring window)
        return sum(1 for x in took if x <= t0 + wait)
    finally:
        done.set()
        p.stop()
        t.join(5)
        srv.close()


def alternating(rounds, codes, cases, measure):
    """{(case, label): [measure(code, case), ...]}: each case over every checkout, the checkouts'
    order swapped every other round."""
    out = {}
    for r in range(rounds):
        for case in cases:
            for label, code in (codes if r % 2 == 0 else codes[::-1]):
                out.setdefault((case, label), []).append(measure(code, case))
                print("round %d: %s, %s: %s" % (r + 1, case, label, out[(case, label)][-1]),
                      file=sys.stderr, flush=True)
    return out


def spread(xs, fmt="%g", unit=""):
    """'median[unit] (min-max)'"""
    return ("%s%s (%s-%s)" % (fmt, unit, fmt, fmt)) % (statistics.median(xs), min(xs), max(xs))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wait", type=float, default=5.0, help="seconds the receiver refuses (default 5)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--against", help="another checkout whose device code is the baseline")
    a = ap.parse_args()
    codes = [("this checkout", ROOT)] + ([("baseline: " + a.against, os.path.abspath(a.against))] if a.against else [])
    mp = bool(shutil.which("micropython"))
    pairs = [("cpython", "micropython"), ("micropython", "cpython")] if mp else [("cpython", "cpython")]
    interps = ["cpython"] + (["micropython"] if mp else [])
    pipes = alternating(a.rounds, codes, pairs, lambda code, pair: one(code, pair[0], pair[1], a.wait))
    regs = alternating(a.rounds, codes, interps, lambda code, interp: refused_registrations(code, interp, a.wait))
    print("%d s of refusals, %d rounds, medians (min-max)" % (a.wait, a.rounds))
    print("%-26s %-40s %22s %26s %8s" % ("sender -> receiver", "device code", "connections refused",
                                         "first value after deploy", "ratio"))
    for pair in pairs:
        base = statistics.median(x[0] for x in pipes[(pair, codes[-1][0])])
        for label, _ in codes[::-1]:
            n = [x[0] for x in pipes[(pair, label)]]
            t = [x[1] for x in pipes[(pair, label)] if x[1] is not None]
            print("%-26s %-40s %22s %26s %8.2f" % ("%s -> %s" % pair, label, spread(n),
                                                   spread(t, "%.2f", " s") if t else "none arrived",
                                                   statistics.median(n) / base if base else 0))
    print()
    print("%-26s %-40s %22s %8s" % ("registering device", "device code", "connections refused", "ratio"))
    for interp in interps:
        base = statistics.median(regs[(interp, codes[-1][0])])
        for label, _ in codes[::-1]:
            n = regs[(interp, label)]
            print("%-26s %-40s %22s %8.2f" % (interp, label, spread(n), statistics.median(n) / base if base else 0))


if __name__ == "__main__":
    main()
