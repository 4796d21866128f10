"""The shaping relay on loopback, no root: the delay it adds (within 10%), loss as TCP sees it
(retransmission stalls at about the configured rate), the rate limit, order and integrity, and
that it ends when the process that started it is gone. Shaper's arithmetic is tested without
sockets."""
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

import pytest

from procs import ROOT
from sensormesh.netlab.shaping import Shaper, spawn
from sensormesh.netlab.spec import Condition


# --- the arithmetic ------------------------------------------------------------------------------

def test_shaper_delay_jitter_keeps_order():
    # chunks further apart than the jitter's spread: each keeps its own draw
    sh = Shaper(Condition(delay=0.05, jitter=0.02), random.Random(1))
    times = [sh.release(i * 0.05, 100) for i in range(1000)]
    assert times == sorted(times)
    waits = [t - i * 0.05 for i, t in enumerate(times)]
    assert min(waits) >= 0.03 - 1e-9 and max(waits) <= 0.07 + 1e-9
    assert statistics.median(waits) == pytest.approx(0.05, abs=0.002)
    # dense chunks: order is kept (TCP), so a chunk waits for a slower one before it; the
    # delay then lies between delay and delay + jitter (docs/experiments.md, accuracy)
    sh = Shaper(Condition(delay=0.05, jitter=0.02), random.Random(1))
    times = [sh.release(i * 0.001, 100) for i in range(1000)]
    assert times == sorted(times)
    waits = [t - i * 0.001 for i, t in enumerate(times)]
    assert min(waits) >= 0.03 - 1e-9 and max(waits) <= 0.07 + 1e-9


def test_shaper_rate_serialises_chunks():
    sh = Shaper(Condition(rate=1e6), random.Random(1))
    # 10 chunks of 12500 bytes at once: each takes 0.1 s on a 1 Mbit/s wire
    times = [sh.release(0.0, 12500) for _ in range(10)]
    assert times == pytest.approx([0.1 * (i + 1) for i in range(10)])
    assert sh.read_size() == 1448       # 10 ms of a 1 Mbit/s wire is less than a segment


def test_shaper_loss_stalls_per_segment():
    c = Condition(loss=0.05, rto=0.1)
    sh = Shaper(c, random.Random(7))
    n = 20000
    stalled = sum(1 for i in range(n) if sh.release(i * 1.0, 100) - i > 0.05)
    assert sh.stalls == stalled
    assert stalled / n == pytest.approx(0.05, rel=0.1)
    # a chunk of 10 segments loses something with probability 1 - 0.95^10 (40%)
    big = Shaper(c, random.Random(8))
    for i in range(5000):
        big.release(i * 1.0, 14480)
    assert big.stalls / 5000 == pytest.approx(1 - 0.95 ** 10, rel=0.1)


# --- the relay process on loopback ---------------------------------------------------------------

class Server:
    """A TCP server in a thread: 'echo' sends back what it reads; 'sink' counts bytes and
    answers b"done" once it has `expect` of them."""

    def __init__(self, mode="echo", expect=0):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(30)
        self.address = "127.0.0.1:%d" % self.sock.getsockname()[1]
        self.mode, self.expect = mode, expect
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        try:
            while True:
                c, _ = self.sock.accept()
                threading.Thread(target=self._serve, args=(c,), daemon=True).start()
        except OSError:
            pass

    def _serve(self, c):
        c.settimeout(30)
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        got = 0
        with c:
            try:
                while True:
                    data = c.recv(65536)
                    if not data:
                        return
                    if self.mode == "echo":
                        c.sendall(data)
                    else:
                        got += len(data)
                        if got >= self.expect:
                            c.sendall(b"done")
            except OSError:
                pass

    def close(self):
        self.sock.close()


def start_relay(tmp_path, target, cond, backward=None, seed=1):
    r = spawn([{"name": "r", "listen": "127.0.0.1:0", "target": target, "forward": cond,
                "backward": backward or cond, "seed": seed}], str(tmp_path / "relay.json"))
    r.wait_ready()
    assert r.lines == ["relay r listening on %s" % r.addresses["r"], "relays ready"]
    host, _, port = r.addresses["r"].rpartition(":")
    return r, (host, int(port))


@pytest.fixture
def relays():
    procs = []
    yield procs
    for r in procs:
        r.stop()


def connect(addr):
    s = socket.create_connection(addr, timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def recv_exactly(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise AssertionError("connection closed after %d of %d bytes" % (len(buf), n))
        buf += chunk
    return buf


def round_trips(addr, n, size=32):
    s = connect(addr)
    out = []
    with s:
        for i in range(n):
            msg = (b"%08d" % i).ljust(size, b".")
            t0 = time.monotonic()
            s.sendall(msg)
            assert recv_exactly(s, size) == msg
            out.append(time.monotonic() - t0)
    return out


def test_delay_round_trip_within_10_percent(tmp_path, relays):
    srv = Server()
    proc, addr = start_relay(tmp_path, srv.address, Condition(delay=0.05))
    relays.append(proc)
    rtts = round_trips(addr, 20)
    # 50 ms each way: a round trip through the relay takes 100 ms
    assert statistics.median(rtts) == pytest.approx(0.100, rel=0.10)
    assert min(rtts) >= 0.100
    srv.close()


def test_jitter_keeps_order_and_bytes(tmp_path, relays):
    srv = Server()
    proc, addr = start_relay(tmp_path, srv.address, Condition(delay=0.01, jitter=0.01))
    relays.append(proc)
    s = connect(addr)
    payload = b"".join(b"%06d|" % i for i in range(20000))
    with s:
        def send():
            for i in range(0, len(payload), 700):      # many small chunks, each with its jitter
                s.sendall(payload[i:i + 700])
        t = threading.Thread(target=send)
        t.start()
        got = recv_exactly(s, len(payload))
        t.join(10)
    assert got == payload
    srv.close()


def test_loss_stalls_at_about_the_configured_rate(tmp_path, relays):
    srv = Server()
    loss, rto, n = 0.10, 0.04, 300
    proc, addr = start_relay(tmp_path, srv.address, Condition(loss=loss, rto=rto), seed=3)
    relays.append(proc)
    rtts = round_trips(addr, n)
    stalled = sum(1 for r in rtts if r > rto / 2)
    expected = n * (1 - (1 - loss) ** 2)     # a round trip crosses the relay twice
    assert 0.6 * expected <= stalled <= 1.5 * expected, (stalled, expected)
    # a stall costs about one RTO, never a lost byte
    slow = sorted(r for r in rtts if r > rto / 2)
    assert statistics.median(slow) == pytest.approx(rto, rel=0.5)
    srv.close()


def test_no_loss_no_stalls(tmp_path, relays):
    srv = Server()
    # a stall would hold a round trip back by a whole RTO (1 s here): far above what a busy
    # machine's scheduling adds to a 2 ms round trip
    proc, addr = start_relay(tmp_path, srv.address, Condition(delay=0.001, rto=1.0), seed=3)
    relays.append(proc)
    rtts = round_trips(addr, 200)
    assert max(rtts) < 1.0, max(rtts)
    assert statistics.median(rtts) < 0.05, statistics.median(rtts)
    srv.close()


def test_rate_limit_holds(tmp_path, relays):
    size, rate = 400_000, 2e6                       # 1.6 s at 2 Mbit/s
    srv = Server("sink", expect=size)
    proc, addr = start_relay(tmp_path, srv.address, Condition(rate=rate))
    relays.append(proc)
    s = connect(addr)
    with s:
        t0 = time.monotonic()
        s.sendall(b"x" * size)
        assert recv_exactly(s, 4) == b"done"
        took = time.monotonic() - t0
    # never faster than the rate; slower only by what a busy machine adds
    assert size * 8 / rate * 0.95 <= took <= size * 8 / rate * 1.5, took
    srv.close()


def test_relay_ends_when_its_parent_is_gone(tmp_path):
    """The controller crashed (SIGKILL): the relay it started notices and exits by itself."""
    srv = Server()
    starter = tmp_path / "starter.py"
    cfg = tmp_path / "relay.json"
    cfg.write_text(json.dumps({"relays": [{"name": "r", "listen": "127.0.0.1:0",
                                           "target": srv.address, "forward": {}, "backward": {}}]}))
    starter.write_text(
        "import json, os, subprocess, sys, time\n"
        "c = json.load(open(%r)); c['parent'] = os.getpid(); json.dump(c, open(%r, 'w'))\n"
        "p = subprocess.Popen([sys.executable, '-m', 'sensormesh.netlab.shaping', %r],\n"
        "                     stdout=subprocess.PIPE, text=True)\n"
        "p.stdout.readline(); p.stdout.readline()\n"
        "print(p.pid, flush=True)\n"
        "time.sleep(60)\n" % (str(cfg), str(cfg), str(cfg)))
    env = dict(os.environ, PYTHONPATH=ROOT, PYTHONUNBUFFERED="1")
    boss = subprocess.Popen([sys.executable, str(starter)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        relay_pid = int(boss.stdout.readline())
        os.kill(boss.pid, signal.SIGKILL)
        boss.wait(5)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                with open("/proc/%d/stat" % relay_pid) as f:
                    if f.read().rpartition(")")[2].split()[0] == "Z":
                        break
            except OSError:
                break
            time.sleep(0.05)
        else:
            os.kill(relay_pid, signal.SIGKILL)
            pytest.fail("the relay still ran 5 s after its parent was killed")
    finally:
        if boss.poll() is None:
            boss.kill()
        boss.stdout.close()
        srv.close()
