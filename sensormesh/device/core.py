# The device process: one event loop, the configured sensors, and everyone who connects to it.
#
# A connection's first message says what it is for:
#   {"data-request": {...}}   the sensor stream of the original design (datarequest.py) until the socket closes
#   {"hello": {...}}          a control session (controller, tools): info, status, deploy, stop...
#   {"pipe": {...}}           data from another device's pipe_out into one of our pipe_in steps
# A device with keys (config "identity" + "trust"; sensormesh/device/secure/__init__.py) first runs the handshake
# (sensormesh/device/secure/admit.py, server.py) on every connection: the first message must be a hello, every later
# frame is a Fernet token, and each control message is checked against the peer's role. The
# one plaintext exception is {"register": ...} from a device behind a one-way link (forward.py):
# its secure session is with the controller, end to end, through this device as a gateway.
# Control messages that do not need a session ("info", "status", "ping") are answered on any
# connection that has not started streaming. Bad input gets an {"error": ...} naming the problem;
# it never stops the device or disturbs other connections.
#
# Run it:  micropython -m sensormesh.device --port 7000 --sensors dht11,co2
#          python -m sensormesh.device --port 7000   (CPython, same code; argv: __main__.py)
#          sensormesh worker --port 7000             (the CLI's wrapper around start())
import sys

from sensormesh.device import codec, compat, transport
from sensormesh.device.compat import MICROPYTHON, forget, unload

VERSION = "0.1.0"

# Connections a device accepts at once. An ESP32 has about 8 sockets in all (lwIP), one of which
# is the listener; CPython devices can afford many more.
DEFAULT_MAX_CONNS = 6 if MICROPYTHON else 256
# Errors of the loop's handlers logged one by one; after these, the 32nd, 64th, 128th... (all are
# counted in the status reply's "errors"). MicroPython's compiler puts the number in place of the
# name (const() of a name starting with _ costs no global); CPython runs it.
if not MICROPYTHON:
    const = int
_LOGGED_ERRORS = const(16)

# Control messages the assignment runtime (sensormesh/device/runtime/__init__.py) answers. Those
# of control.py are loaded with it for each message (control.KNOWN); "ping", "clock",
# "metrics" (metrics.py) and "status" (status.py) are answered here. A list, not a tuple: its short
# names are made as interned names (the runtime's code holds them anyway), where a tuple constant
# would hold those not yet interned as string objects of their own (~64 B each, for good).
RUNTIME_MESSAGES = ["deploy", "deploy-part", "start", "stop", "pipe", "pull", "undeploy", "subscribe", "delivered"]


def log(name, text):
    sys.stderr.write("[%s] %s\n" % (name, text))


class Inbound:
    """The protocol object of one accepted connection."""

    # Defaults, set on a connection's own object only when they change (a smaller dict on a board).
    conn = None
    kind = None       # None until the first message: "stream", "control", "pipe"
    stream = None
    handler = None    # a pipe_in or other runtime object receiving this connection's data
    role = None       # devices with keys: the authenticated peer's role, name, key fingerprint
    peer_name = None
    peer_fp = None
    hs = None         # devices with keys: the handshake deadline while waiting for the hello
    hs_host = None    # devices with keys: the peer host that slot is counted for
    logged = False    # why it closes was logged already (on_close says nothing more)

    def __init__(self, device):
        self.device = device

    def on_open(self, conn):
        self.conn = conn
        sec = self.device.security
        if sec is not None:
            sec.on_open(self, conn)

    def on_message(self, conn, msg):
        if self.handler is not None:
            self.handler.on_message(conn, msg)
            return
        sec = self.device.security
        if sec is not None and self.role is None:
            if self.kind is None and type(msg) is dict and len(msg) == 1 and "register" in msg:
                # A device behind a one-way link registers in plaintext: its secure session is
                # with the controller, end to end, relayed by this gateway (forward.py). Until
                # that session's welcome passes, it stays bounded like any unauthenticated
                # connection: its slot, its deadline, small frames (Security.hold).
                self.device.dispatch(self, "register", msg["register"])
                return
            sec.handshake(self, conn, msg)
            return
        if type(msg) is list or len(msg) != 1:
            self.device.dispatch(self, None, msg)   # refused (control.py says why)
            return
        for key in msg:
            body = msg[key]
        if sec is not None and not sec.permit(self, key):
            return
        if self.kind == "stream":   # refused: a streaming connection takes no control message
            from sensormesh.device import control
            control.streaming(self, key)
            forget(control)
            return
        self.device.dispatch(self, key, body)

    def fail(self, conn, code, message, extra=None):
        err = {"code": code, "message": message}
        if extra:
            for k in extra:
                err[k] = extra[k]
        conn.send({"error": err})
        conn.close_after_flush(code + ": " + message)

    def on_drain(self, conn):
        if self.stream:
            self.stream.on_drain()
        elif self.handler is not None and hasattr(self.handler, "on_drain"):
            self.handler.on_drain(conn)

    def on_close(self, conn, reason):
        dev = self.device
        if self.hs is not None:
            dev.security.release(self)
        if self.stream:
            self.stream.stop()
            dev.streams.remove(self.stream)
            self.stream = None
        if self.handler is not None and hasattr(self.handler, "on_close"):
            self.handler.on_close(conn, reason)
        if reason not in ("closed by peer", "closed") and not self.logged:
            # why it closed, logged by control.py (its sentences loaded for them); a device
            # short of memory for that logs the reason alone
            try:
                from sensormesh.device import control
                control.closed(self, conn, reason)
                forget(control)
            except MemoryError:
                dev.log(reason)


class Device:
    """A device: its sensors, its listeners, and the dispatch of every control message (the
    rare ones answered by control.py, loaded for each)."""

    waiting = None    # a status or stopped reply waiting for heap free to be sent (replies.py)

    def __init__(self, name="device", sensor_specs=None, max_conns=DEFAULT_MAX_CONNS,
                 max_frame=codec.DEFAULT_MAX_FRAME, loop=None):
        self.name = name
        self.loop = loop or transport.Loop()
        self.loop.on_error = self._on_loop_error
        self.max_conns = max_conns
        self.max_frame = max_frame
        self.listeners = []
        self.streams = []
        self.sensors = {}     # name -> (sensor object, rate Hz)
        self.sensor_kinds = {}
        self.runtime = None   # the assignment runtime, imported on first deploy
        self.security = None  # secure.Security once keys are configured (secure())
        self.errors = 0
        self.metrics = True   # sampled step times, origin stamps, loop busy time (metrics.py)
        if sensor_specs is None or sensor_specs:
            # building sensors from specs runs once: a board forgets that code afterwards
            from sensormesh.device.sensors import registry
            registry.add(self, sensor_specs)
            forget(registry)

    def log(self, text):
        log(self.name, text)

    def _on_loop_error(self, exc, where):
        n = self.errors = self.errors + 1
        if n > _LOGGED_ERRORS and n & (n - 1):
            return      # counted (status: "errors"); a handler failing on every turn floods no log
        try:     # a report that finds no heap is counted only: it must not end the loop
            self.log("error in %s: %s: %s%s" % (getattr(where, "__name__", where), type(exc).__name__, exc,
                     "" if n < _LOGGED_ERRORS else " (%d so far; more logged at every doubling)" % n))
            if MICROPYTHON:
                sys.print_exception(exc)
            else:
                import traceback
                traceback.print_exception(type(exc), exc, exc.__traceback__)
        except MemoryError:
            pass

    def dial(self, address, protocol, peer, first):
        """Open a connection to another device and send `first`; with keys, as this device's
        identity to the device named `peer` (first leaves once the session is up)."""
        if self.security is not None:
            return self.security.dial(address, protocol, peer, first)
        conn = transport.dial(self.loop, address, protocol)
        conn.send(first)
        return conn

    # -- listening ----------------------------------------------------------------------
    def make_inbound(self):
        """The protocol object of a new connection (accepted, or dialed out by forward.py)."""
        return Inbound(self)

    def close(self):
        for s in self.streams:
            s.stop()
        if self.runtime is not None and self.runtime.nodes:    # (a stopped one: no stop.py to load)
            self.runtime.shutdown()
        for lst in self.listeners:
            lst.close()
        self.listeners = []

    # -- control messages ---------------------------------------------------------------
    def dispatch(self, session, key, body):
        if self.waiting is not None:
            self.waiting(True)     # a reply waiting for heap goes first (replies.py)
        if key in RUNTIME_MESSAGES:
            if key == "deploy" and self.security is not None:
                self.security.prepare(body, session)   # while the heap is low (secure/keys.py)
            self.runtime_handler(key)(session, body)
        elif key == "ping":
            session.conn.send({"pong": body})
        elif key == "clock":
            # the tick clock now, for the controller's offset estimate (controller/clocksync.py)
            session.conn.send({"clock": {"t0": body.get("t0") if type(body) is dict else None,
                                         "tick_us": compat.ticks_us(), "period": compat.TICK_PERIOD}})
        elif key == "metrics":
            # asked for every few seconds while a controller watches: loaded without control.py
            from sensormesh.device import metrics
            session.conn.send({"metrics": metrics.report(self)})
            unload(metrics)   # a board frees its code between two polls
        elif key == "status":
            # polled too, and its reply is the largest a running device sends: made without
            # control.py, and status.py let go of before the assignment's counts are gathered
            from sensormesh.device import status
            forget(status)
            st = status.reply(self, session)
            status = None
            if st is not None:
                self.status_reply(session, st)
        else:
            from sensormesh.device import control   # the rare messages: their code is freed after
            control.handle(self, session, key, body)
            forget(control)

    def status_reply(self, session, st):
        """Send a status reply (status.py made `st`): the assignment's counts are gathered
        (runtime/report.py) and the reply sealed and sent (replies.py) each with no other
        module of the reply loaded, as the heap of a board is then at its fullest."""
        rt = self.runtime
        if rt is not None:
            st["assignment"] = rt.status()
        from sensormesh.device import replies
        forget(replies)
        replies.send_stats(rt, session.conn, "status", st)

    def runtime_handler(self, key):
        if self.runtime is None:
            from sensormesh.device.runtime import Runtime
            self.runtime = Runtime(self)
        return self.runtime.handler(key)

    def on_poll(self, ev):
        # `exit_with_stdin` (boot.py registers the device for its standard input): the process
        # that started this device holds the other end and writes nothing to it. When that
        # process ends, even killed with SIGKILL, the input closes and the device stops, so no
        # device outlives the controller that ran it. (Here, not in code loaded for it: a
        # device whose heap is full must still stop.)
        data = sys.stdin.buffer.read(1) if ev & 1 else b""
        if not data:        # end of input (or hang-up): the starter is gone
            self.loop.unregister(sys.stdin)
            try:
                from sensormesh.device import control   # its log line (once, at the end)
                control.starter_gone(self)
            except MemoryError:
                pass
            raise KeyboardInterrupt

    def run(self):
        try:
            self.loop.run()
        finally:
            self.close()


def start(cfg):
    """Build a device from a configuration dict and start listening; returns it. The code that
    does it (boot.py) runs once: a board running .mpy files forgets it afterwards."""
    from sensormesh.device import boot
    dev = boot.start(cfg)
    forget(boot)
    return dev
