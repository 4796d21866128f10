"""The shaping relay: a TCP relay that makes one connection behave like a slower network.

This kernel has no `netem` qdisc, so delay, jitter and loss are emulated in user space. A
relay listens where the devices of an emulated network dial a listener, opens a connection
to the real listener for every connection it accepts, and pumps bytes both ways. Each
direction has its own `Shaper`, which gives every chunk it reads a release time:

    serialised  = max(now, end of the previous chunk on the wire) + bytes * 8 / rate
    release     = serialised + delay + uniform(-jitter, +jitter)
                  + one retransmission stall (RTO) with probability 1 - (1 - loss)^segments
    release     = max(release, previous release)            (TCP keeps order)

and the writer sends the chunk when its time comes. A loss is modelled as TCP sees it: the
bytes arrive, late by one RTO, and everything behind them waits too (head-of-line blocking).
At most MAX_QUEUED bytes wait per direction; beyond that the relay stops reading, so a fast
sender is slowed by TCP's own flow control as on a real slow link.

Run as a process (one per emulated network, or per namespace):

    python -m sensormesh.netlab.shaping CONFIG.json

CONFIG: {"relays": [{"name", "listen": "HOST:PORT" (port 0: any), "target": "HOST:PORT" or
"unix:PATH", "forward": Condition dict (listener-bound bytes), "backward": Condition dict,
"seed": int}], "parent": PID}. It prints "relay NAME listening on HOST:PORT" for each relay,
then "relays ready", and exits when its parent process is gone (the controller crashed), on
SIGTERM or SIGINT. CPython only (asyncio).
"""
from __future__ import annotations

import asyncio
import json
import math
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time

from sensormesh.netlab.spec import MSS, Condition

# Bytes held per direction before the relay stops reading: enough for a 1 Gbit/s path with
# 2 ms of delay, small enough that a rate limit is felt by the sender within a few chunks.
MAX_QUEUED = 256 * 1024
# Largest single read. Rate-limited directions read at most 10 ms worth of bytes, so the
# token bucket releases smooth small chunks instead of one burst per read.
READ_SIZE = 64 * 1024
CONNECT_TIMEOUT = 5.0       # to the real listener; a dialer retries after a refused relay
PARENT_CHECK = 0.5          # seconds between checks that the controller still runs


def split_address(text):
    """'HOST:PORT' or 'unix:PATH' -> ("tcp", host, port) or ("unix", path)."""
    if text.startswith("unix:"):
        return ("unix", text[5:])
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError("bad address %r: expected HOST:PORT or unix:PATH" % text)
    return ("tcp", host or "127.0.0.1", int(port))


class Shaper:
    """Release times for the chunks of one direction of one connection (pure, testable)."""

    def __init__(self, condition, rng=None):
        self.c = condition
        self.rng = rng or random.Random()
        self.stall = condition.stall()
        self.last_release = 0.0
        self.wire_free = 0.0
        self.chunks = 0
        self.stalls = 0

    def read_size(self):
        if self.c.rate:
            return int(max(MSS, min(READ_SIZE, self.c.rate / 8 * 0.01)))
        return READ_SIZE

    def release(self, now, nbytes):
        """The time a chunk of nbytes read at `now` may be written on."""
        c = self.c
        self.chunks += 1
        t = now
        if c.rate:
            t = max(now, self.wire_free) + nbytes * 8.0 / c.rate
            self.wire_free = t
        t += c.delay
        if c.jitter:
            t += self.rng.uniform(-c.jitter, c.jitter)
        if c.loss:
            segments = max(1, math.ceil(nbytes / MSS))
            if self.rng.random() < 1 - (1 - c.loss) ** segments:
                self.stalls += 1
                t += self.stall
        t = max(t, now, self.last_release)
        self.last_release = t
        return t


async def _pump(reader, writer, shaper):
    """Read from `reader`, hold each chunk until its release time, write to `writer`."""
    loop = asyncio.get_running_loop()
    queue = asyncio.Queue()
    room = asyncio.Event()
    room.set()
    held = {"bytes": 0}

    async def write_out():
        while True:
            item = await queue.get()
            if item is None:
                break
            when, data = item
            wait = when - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()
            held["bytes"] -= len(data)
            if held["bytes"] < MAX_QUEUED:
                room.set()
        if writer.can_write_eof() and not writer.is_closing():
            try:
                writer.write_eof()        # pass the half-close on, after the held bytes
            except OSError:
                pass
    out = loop.create_task(write_out())
    try:
        size = shaper.read_size()
        while True:
            await room.wait()
            data = await reader.read(size)
            if not data:
                break
            queue.put_nowait((shaper.release(time.monotonic(), len(data)), data))
            held["bytes"] += len(data)
            if held["bytes"] >= MAX_QUEUED:
                room.clear()
        queue.put_nowait(None)
        await out
    finally:
        if not out.done():
            out.cancel()


class Relay:
    """One listening relay: every accepted connection is shaped towards `target`."""

    def __init__(self, name, listen, target, forward, backward, seed=None):
        self.name = name
        self.listen = listen
        self.target = target
        self.forward = forward
        self.backward = backward
        self.rng = random.Random(seed)
        self.server = None
        self.address = None
        self.connections = 0

    async def start(self):
        kind = split_address(self.listen)
        if kind[0] != "tcp":
            raise ValueError("relay %s: it listens on TCP, not %s" % (self.name, self.listen))
        self.server = await asyncio.start_server(self._serve, kind[1], kind[2], reuse_address=True)
        host, port = self.server.sockets[0].getsockname()[:2]
        self.address = "%s:%d" % (host, port)
        return self.address

    async def _open_target(self):
        kind = split_address(self.target)
        if kind[0] == "unix":
            coro = asyncio.open_unix_connection(kind[1])
        else:
            coro = asyncio.open_connection(kind[1], kind[2])
        return await asyncio.wait_for(coro, CONNECT_TIMEOUT)

    async def _serve(self, c_reader, c_writer):
        self.connections += 1
        try:
            t_reader, t_writer = await self._open_target()
        except (OSError, asyncio.TimeoutError):
            c_writer.close()          # the dialer sees a closed connection and dials again
            return
        for w in (c_writer, t_writer):
            sock = w.get_extra_info("socket")
            if sock is not None and sock.family != socket.AF_UNIX:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        fwd = Shaper(self.forward, random.Random(self.rng.random()))
        back = Shaper(self.backward, random.Random(self.rng.random()))
        tasks = [asyncio.ensure_future(_pump(c_reader, t_writer, fwd)),
                 asyncio.ensure_future(_pump(t_reader, c_writer, back))]
        try:
            done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for t in pending:
                if any(d.exception() for d in done):
                    t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            for w in (c_writer, t_writer):
                w.close()


async def _watch_parent(parent, stop):
    while not stop.is_set():
        if parent and os.getppid() != parent:
            stop.set()
            return
        try:
            await asyncio.wait_for(stop.wait(), PARENT_CHECK)
        except asyncio.TimeoutError:
            pass


async def serve(config, out=print):
    """Start every relay of config, report their addresses, run until stopped."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    relays = []
    for r in config["relays"]:
        relay = Relay(r["name"], r["listen"], r["target"], Condition.from_dict(r.get("forward") or {}),
                      Condition.from_dict(r.get("backward") or {}), r.get("seed"))
        out("relay %s listening on %s" % (relay.name, await relay.start()))
        relays.append(relay)
    out("relays ready")
    await _watch_parent(config.get("parent"), stop)
    for relay in relays:
        relay.server.close()


# --- starting relay processes (the controller side) ----------------------------------------

READY_TIMEOUT = 15.0        # a relay process reports its listeners within this
STOP_TIMEOUT = 5.0


class ShapingError(RuntimeError):
    """A relay process did not start; the message has its last lines."""


def _package_root():
    import sensormesh
    return os.path.dirname(os.path.dirname(os.path.abspath(sensormesh.__file__)))


class RelayProcess:
    """A started shaping relay process and the addresses it reported (see spawn)."""

    def __init__(self, argv, env, what):
        self.what = what
        self.lines = []
        self.addresses = {}
        self.ready = threading.Event()
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        self._reader = threading.Thread(target=self._read, name="relay-out", daemon=True)
        self._reader.start()

    def _read(self):
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.lines.append(line)
            if line.startswith("relay ") and " listening on " in line:
                name, _, addr = line[len("relay "):].partition(" listening on ")
                self.addresses[name] = addr
            elif line == "relays ready":
                self.ready.set()
        self.ready.set()

    def wait_ready(self, timeout=READY_TIMEOUT):
        if not self.ready.wait(timeout) or self.proc.poll() is not None:
            tail = "; ".join(self.lines[-5:]) or "no output"
            raise ShapingError("the shaping relay %s did not start: %s" % (self.what, tail))

    def stop(self, timeout=STOP_TIMEOUT):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        self._reader.join(timeout)
        if self.proc.stdout:
            self.proc.stdout.close()


def spawn(relays, config_path, what="", python=None, wrap=(), parent=None):
    """Start a relay process for `relays` (dicts as in the CONFIG above; Conditions may be
    given as Condition objects), writing its configuration to config_path. `wrap` goes in front
    of the command (e.g. `ip netns exec NS`); the process exits when `parent` (default: this
    process) is gone. Call wait_ready() on the result, stop() when done."""
    entries = []
    for r in relays:
        r = dict(r)
        for k in ("forward", "backward"):
            if isinstance(r.get(k), Condition):
                r[k] = r[k].to_dict()
        entries.append(r)
    with open(config_path, "w") as f:
        json.dump({"relays": entries, "parent": parent or os.getpid()}, f)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    root = _package_root()
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    argv = list(wrap) + [python or sys.executable, "-m", "sensormesh.netlab.shaping", config_path]
    return RelayProcess(argv, env, what or config_path)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m sensormesh.netlab.shaping CONFIG.json", file=sys.stderr)
        return 2
    with open(argv[0]) as f:
        config = json.load(f)
    try:
        asyncio.run(serve(config, lambda line: print(line, flush=True)))
    except (OSError, ValueError) as e:
        print("relay error: %s" % e, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
