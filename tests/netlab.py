"""The network lab for integration tests: sensormesh/netlab/namespaces.py (the product's
namespace builder) plus what tests need on top: echo servers, plain TCP relays and probes.

    with NetLab(topology_or_network_dict) as lab:
        srv = lab.echo_server("srv", 7000)
        assert lab.probe("pc", lab.addr("srv"), 7000)["result"] == "ok"
        proc = lab.run("esp-1", [sys.executable, "-m", "sensormesh.device", ...])
        lab.kill("gw-1")

Needs root, iproute2 (`ip`) and nftables (`nft`); otherwise `require()` fails the test with
the reason (it never skips).
"""

from __future__ import annotations

import json
import os
import shutil  # noqa: F401  (tests patch netlab.shutil.which)
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from sensormesh.netlab import namespaces as _lab  # noqa: E402
from sensormesh.netlab.namespaces import (  # noqa: E402,F401
    CMD_TIMEOUT, FAMILY, LAB_NET, NetLabError, NetLabUnavailable, cleanup_stale, namespaces,
    preflight)


def require():
    """For tests: fail (never skip) with the reason when the lab cannot run here."""
    try:
        preflight()
    except NetLabUnavailable as e:
        import pytest
        pytest.fail("network namespace tests cannot run here: %s" % e, pytrace=False)


# ---------------------------------------------------------------------------------------------
# Small programs run inside the namespaces (stdlib only, unbuffered, bounded)

ECHO_SERVER = r"""
import socket, sys, threading
host, port, greeting = sys.argv[1], int(sys.argv[2]), sys.argv[3]
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((host, port)); srv.listen(16)
print("LISTENING %s %d" % (host, port), flush=True)
def serve(c, peer):
    with c:
        c.settimeout(30)
        try:
            if greeting:
                c.sendall(greeting.encode())
            while True:
                data = c.recv(4096)
                if not data:
                    break
                c.sendall(data)
        except OSError:
            pass
while True:
    c, peer = srv.accept()
    print("ACCEPTED %s" % peer[0], flush=True)
    threading.Thread(target=serve, args=(c, peer), daemon=True).start()
"""

RELAY = r"""
import socket, sys, threading
lhost, lport, thost, tport = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((lhost, lport)); srv.listen(16)
print("LISTENING %s %d" % (lhost, lport), flush=True)
def pump(a, b):
    try:
        while True:
            data = a.recv(4096)
            if not data:
                break
            b.sendall(data)
    except OSError:
        pass
    for s in (a, b):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
while True:
    c, _ = srv.accept()
    up = socket.create_connection((thost, tport), timeout=5)
    up.settimeout(None)
    threading.Thread(target=pump, args=(c, up), daemon=True).start()
    threading.Thread(target=pump, args=(up, c), daemon=True).start()
"""

# Connects once (or until the deadline with wait=1), sends, reads what comes back, prints JSON:
# result: ok | refused | unreachable | timeout | error.
PROBE = r"""
import errno, json, socket, sys, time
ip, port, timeout, send, expect, wait = (sys.argv[1], int(sys.argv[2]), float(sys.argv[3]),
                                         sys.argv[4].encode(), int(sys.argv[5]), sys.argv[6] == "1")
deadline = time.monotonic() + timeout
out = {"result": "timeout", "data": ""}
for attempt in range(10000):
    left = deadline - time.monotonic()
    if left <= 0:
        break
    s = socket.socket()
    s.settimeout(left)
    try:
        s.connect((ip, port))
    except socket.timeout:
        out = {"result": "timeout", "data": ""}
    except ConnectionRefusedError:
        out = {"result": "refused", "data": ""}
    except OSError as e:
        kind = ("unreachable" if e.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH)
                else "error")
        out = {"result": kind, "data": str(e)}
    else:
        out = {"result": "ok", "data": ""}
        try:
            if send:
                s.sendall(send)
            got = b""
            while len(got) < expect:
                s.settimeout(max(0.01, deadline - time.monotonic()))
                chunk = s.recv(4096)
                if not chunk:
                    break
                got += chunk
            out["data"] = got.decode(errors="replace")
        except OSError as e:
            out = {"result": "error", "data": "after connect: %s" % e}
        s.close()
        break
    s.close()
    if not wait:
        break
    time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
print(json.dumps(out), flush=True)
"""


class NetLab(_lab.NetLab):
    """The product's NetLab with TCP helpers for tests."""

    # --- TCP helpers --------------------------------------------------------------------------

    def echo_server(self, host, port, bind="0.0.0.0", greeting="", timeout=10.0):
        """A TCP echo server on the host (sends `greeting` first if given); returns once it
        listens. Its stdout says ACCEPTED <peer ip> per connection."""
        proc = self.python(host, ECHO_SERVER, bind, port, greeting)
        self.wait_line(proc, "LISTENING", timeout)
        return proc

    def relay(self, host, listen_port, target_ip, target_port, bind="0.0.0.0", timeout=10.0):
        """An application-level TCP relay on the host: what a gateway's pass-through does."""
        proc = self.python(host, RELAY, bind, listen_port, target_ip, target_port)
        self.wait_line(proc, "LISTENING", timeout)
        return proc

    def probe(self, host, ip, port, timeout=2.0, send="", expect=0, wait=False):
        """From `host`, connect to ip:port once (or retry until `timeout` with wait=True), send
        `send`, read `expect` bytes. Returns {"result": ok|refused|unreachable|timeout|error,
        "data": what was read}."""
        res = self.exec(host, [sys.executable, "-c", PROBE, ip, port, timeout, send, expect,
                               "1" if wait else "0"], timeout=timeout + CMD_TIMEOUT)
        return json.loads(res.stdout.strip().splitlines()[-1])

    def wait_port(self, host, ip, port, timeout=10.0):
        """Wait (bounded) until `host` can connect to ip:port; True if it could."""
        return self.probe(host, ip, port, timeout=timeout, wait=True)["result"] == "ok"
