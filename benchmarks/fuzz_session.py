"""Coverage-guided fuzzing (atheris) of what a peer controls before and after a handshake.

Three targets, each fed the fuzzer's bytes; the only exceptions allowed are the protocol's own
(codec.ProtocolError, session.HandshakeError). Anything else stops the run with the input that
caused it (atheris writes it to crash-*).

    frames     codec.Decoder: length-prefixed frames, JSON, limits (bytes in any split)
    handshake  a device's ServerSession.receive on the decoded first frame (a hello or not)
    channel    Channel.unwrap of an established session on arbitrary tokens; after each input
               a real token must still open (junk does not disturb the session)

    pip install atheris   (scripts/dev fuzz does it)
    python benchmarks/fuzz_session.py [--runs 20000] [--target all|frames|handshake|channel]

Prints a table: target, inputs run, seconds, inputs/s, coverage edges seen, failures.
The property tests in tests/test_security.py (hypothesis) are the CI part; this is the
longer, coverage-guided search.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests", "device"))

TARGETS = ("frames", "handshake", "channel")


def make_target(name):
    from sensormesh.device import codec
    from sensormesh.device.secure import handshake as session
    if name == "frames":
        def run(data):
            dec = codec.Decoder(4096)
            try:
                cut = data[0] % (len(data) + 1) if data else 0
                for part in (data[1:cut], data[cut:]):
                    dec.feed(part)
                    while dec.next() is not None:
                        pass
                dec.close()
            except codec.ProtocolError:
                pass
        return run

    import test_session as fx   # the test keys (public in the repository, tests only)
    f = fx.fixture()
    trust = session.load_trust(fx.trust_json())
    pairs = session.PairCache(4)
    if name == "handshake":
        def run(data):
            try:
                msg = codec.decode_payload(data)
            except codec.ProtocolError:
                return
            s = session.ServerSession(f["dev-a"], trust, replay=session.ReplayCache(), pairs=pairs,
                                      clock=lambda: fx.NOW)
            try:
                s.receive(msg)
            except session.HandshakeError as e:
                assert e.code in session.CODES, e.code
        return run

    c = session.ClientSession(f["controller"], trust, "dev-a", clock=lambda: fx.NOW)
    s = session.ServerSession(f["dev-a"], trust, clock=lambda: fx.NOW)
    c.receive(s.receive(c.start()))

    def run(data):
        try:
            s.unwrap(data)
            raise AssertionError("an arbitrary token opened: %r" % data)
        except codec.ProtocolError:
            pass
        assert s.unwrap(c.wrap(b"[1]")) == b"[1]"
    return run


def seeds(name, directory):
    """Valid inputs to start from, so the search begins past the JSON and base64 checks."""
    from sensormesh.device import codec
    from sensormesh.device.secure import handshake as session
    import test_session as fx
    f = fx.fixture()
    trust = session.load_trust(fx.trust_json())
    c = session.ClientSession(f["controller"], trust, "dev-a", clock=lambda: fx.NOW)
    hello = c.start()
    if name == "frames":
        items = [codec.encode(hello), codec.encode([1, 2.5, "x"]) + codec.encode({"stop": {}})]
    elif name == "handshake":
        items = [codec.dumps(hello), codec.dumps({"hello": {}}), codec.dumps({"welcome": {"v": 2}})]
    else:
        s = session.ServerSession(f["dev-a"], trust, clock=lambda: fx.NOW)
        c.receive(s.receive(hello))
        items = [c.wrap(b"[1]"), s.wrap(b'{"deploy":{}}')]
    os.makedirs(directory, exist_ok=True)
    for i, b in enumerate(items):
        with open(os.path.join(directory, "seed%d" % i), "wb") as fh:
            fh.write(b if isinstance(b, (bytes, bytearray)) else b.encode())


def child(name, runs, corpus):
    """One target in this process (atheris takes over the process and exits it)."""
    import atheris
    with atheris.instrument_imports():
        from sensormesh.device import codec  # noqa: F401
        from sensormesh.device.secure import fernet
        from sensormesh.device.secure import handshake as session
        from sensormesh.device.secure import x25519
    run = make_target(name)
    seeds(name, corpus)
    atheris.Setup([sys.argv[0], "-atheris_runs=%d" % runs, "-print_final_stats=1", corpus], run)
    atheris.Fuzz()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20000)
    ap.add_argument("--target", default="all", choices=("all",) + TARGETS)
    ap.add_argument("--child")
    ap.add_argument("--corpus")
    a = ap.parse_args()
    if a.child:
        return child(a.child, a.runs, a.corpus)
    try:
        import atheris  # noqa: F401
    except ImportError:
        sys.exit("atheris is not installed: pip install atheris (or bash scripts/dev fuzz)")
    rows = []
    for name in (TARGETS if a.target == "all" else (a.target,)):
        corpus = tempfile.mkdtemp(prefix="sm-fuzz-%s-" % name)
        t0 = time.perf_counter()
        try:
            r = subprocess.run([sys.executable, __file__, "--child", name, "--runs", str(a.runs),
                                "--corpus", corpus], capture_output=True, text=True, cwd=ROOT, timeout=3600)
        finally:
            shutil.rmtree(corpus, ignore_errors=True)
        dt = time.perf_counter() - t0
        log = r.stdout + r.stderr
        edges = "-"
        for line in log.splitlines():
            if "cov:" in line:
                edges = line.split("cov:")[1].split()[0]   # the last report counts
        failed = r.returncode != 0
        rows.append((name, a.runs, dt, edges, failed))
        if failed:
            print(log[-3000:])
    print("%-10s %10s %9s %10s %9s %9s" % ("target", "inputs", "seconds", "inputs/s", "edges", "failures"))
    for name, n, dt, edges, failed in rows:
        print("%-10s %10d %9.1f %10.0f %9s %9d" % (name, n, dt, n / dt, edges, 1 if failed else 0))
    print(json.dumps({"failures": sum(1 for r in rows if r[4])}))
    sys.exit(1 if any(r[4] for r in rows) else 0)


if __name__ == "__main__":
    main()
