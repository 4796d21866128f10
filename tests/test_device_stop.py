"""Stopping a CPython device with SIGTERM or Ctrl-C (sensormesh/device/options.py,
stop_on_signals): the stop takes effect between two steps of the loop, never inside one.

A gateway stopped with SIGTERM while it relayed a stream once delivered a few values twice: the
handler raised KeyboardInterrupt wherever the process happened to be, here between the socket
taking a frame's bytes and the connection's buffer dropping them, and the closing flush sent
those bytes again; the receiver, which numbers values by their order, took them as new ones.
The tests force that moment (the signal raised from inside the socket's send), so they do not
depend on when a loaded machine delivers a signal. CPython only: MicroPython has no signals."""
import os
import signal
import socket
import threading
import time

import pytest

from sensormesh.device import codec
from sensormesh.device.options import stop_on_signals
from sensormesh.device.transport import Connection, Loop


@pytest.fixture
def handlers():
    """The device's handlers installed in this process, the previous ones put back after."""
    old = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    stop_on_signals()
    try:
        yield signal.getsignal(signal.SIGTERM)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        Loop.halt = False
        Loop.waiting = False


class SignalledSocket(socket.socket):
    """A socket that receives SIGTERM right after send() has taken the bytes (once)."""
    armed = False

    def send(self, data, *flags):
        n = super().send(data, *flags)
        if self.armed:
            self.armed = False
            signal.raise_signal(signal.SIGTERM)    # the handler runs here, before send returns
        return n


class Quiet:
    """A connection's owner that wants nothing."""


def frames(sock):
    """Every frame the peer sent until it closed, decoded (bounded: 10 s)."""
    sock.settimeout(10)
    dec = codec.Decoder()
    out = []
    while True:
        data = sock.recv(65536)
        if not data:
            break
        dec.feed(data)
        m = dec.next()
        while m is not None:
            out.append(m)
            m = dec.next()
    return out


def test_a_stop_signal_inside_a_send_never_sends_its_bytes_twice(handlers):
    a, b = socket.socketpair()
    sock = SignalledSocket(a.family, a.type, fileno=a.detach())
    sock.setblocking(False)
    loop = Loop()
    conn = Connection(loop, sock, Quiet())
    loop.register(sock, conn)
    conn.send([296, 297, 298, 299])
    conn.send({"seq": [300, 7, None, 4000]})
    sock.armed = True
    stopped = False
    try:
        for _ in range(3):
            loop.run_once(0)       # the first turn flushes: SIGTERM arrives inside its send
    except KeyboardInterrupt:
        stopped = True
    assert not sock.armed, "the flush never sent"
    conn.close_after_flush("pipeline stopped")      # what a stopping device does with it
    try:
        got = frames(b)
    finally:
        b.close()
    # each frame once: the receiver numbers values by their order
    assert got == [[296, 297, 298, 299], {"seq": [300, 7, None, 4000]}], got
    assert stopped, "the stop asked during the send never took effect"


def test_a_stop_signal_while_the_loop_waits_stops_it_at_once(handlers):
    loop = Loop()
    late = []
    loop.call_later(60000, lambda: (late.append(True), loop.stop()))   # bounds the test only
    main = threading.get_ident()

    def kill_when_waiting():
        deadline = time.monotonic() + 30
        while not Loop.waiting and time.monotonic() < deadline:
            time.sleep(0.001)             # until the loop is inside poll()
        signal.pthread_kill(main, signal.SIGTERM)
    t = threading.Thread(target=kill_when_waiting)
    t.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            loop.run()
    finally:
        t.join(30)
    assert not late


def test_a_second_signal_stops_at_once(handlers):
    on_stop = handlers
    on_stop(signal.SIGTERM, None)            # inside a step: only asked
    assert Loop.halt
    with pytest.raises(KeyboardInterrupt):
        on_stop(signal.SIGINT, None)         # asked again (a step that never ends): now
    assert signal.getsignal(signal.SIGINT) is on_stop


def test_a_device_process_stopped_by_sigterm_says_so():
    import sys
    from procs import Proc, free_port
    port = free_port()
    p = Proc([sys.executable, "-m", "sensormesh.device", "--port", str(port), "--host", "127.0.0.1",
              "--name", "d", "--sensors", "counter@0"])
    try:
        p.wait_line("listening on", timeout=30)
        os.kill(p.p.pid, signal.SIGTERM)
        assert p.p.wait(30) == 0
        assert "stopped" in p.p.stderr.read()
    finally:
        if p.p.poll() is None:
            p.p.kill()
            p.p.wait(10)
