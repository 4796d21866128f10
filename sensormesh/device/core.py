# The device process: one event loop, the configured sensors, and everyone who connects to it.
#
# A connection's first message says what it is for:
#   {"data-request": {...}}   the sensor stream of the original design (datarequest.py) until the socket closes
#   {"hello": {...}}          a control session (controller, tools): info, status, deploy, stop...
#   {"pipe": {...}}           data from another device's pipe_out into one of our pipe_in steps
# A device with keys (config "identity" + "trust"; sensormesh/device/secure/__init__.py) first runs the handshake
# of sensormesh/device/secure/handshake.py on every connection: the first message must be a hello, every later
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

from sensormesh.device import codec, sensors, transport
from sensormesh.device import compat
from sensormesh.device.compat import MICROPYTHON, forget, implementation, unload

VERSION = "0.1.0"

# Connections a device accepts at once. An ESP32 has about 8 sockets in all (lwIP), one of which
# is the listener; CPython devices can afford many more.
DEFAULT_MAX_CONNS = 6 if MICROPYTHON else 256


def log(name, text):
    sys.stderr.write("[%s] %s\n" % (name, text))


class Inbound:
    """The protocol object of one accepted connection."""

    def __init__(self, device):
        self.device = device
        self.conn = None
        self.kind = None      # None until the first message: "stream", "control", "pipe"
        self.stream = None
        self.handler = None   # a pipe_in or other runtime object receiving this connection's data
        self.role = None      # devices with keys: the authenticated peer's role, name, key fingerprint
        self.peer_name = None
        self.peer_fp = None
        self.hs = None        # devices with keys: the handshake deadline while waiting for the hello
        self.hs_host = None   # devices with keys: the peer host that slot is counted for
        self.logged = False   # why it closes was logged already (on_close says nothing more)

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
        if type(msg) is list:
            self.fail(conn, "unexpected-data", "data message received before any request on this connection")
            return
        if len(msg) != 1:
            self.fail(conn, "bad-request", "a control message must have exactly one key, got %d (%s)"
                      % (len(msg), ", ".join(sorted(msg)) or "none"))
            return
        for key in msg:
            body = msg[key]
        if sec is not None and not sec.permit(self, key):
            return
        if self.kind == "stream":
            self.fail(conn, "bad-request", "this connection is streaming; open another connection for %r" % key)
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
        if self.hs is not None:
            self.device.security.release(self)
        if self.stream:
            self.stream.stop()
            self.device.streams.remove(self.stream)
            self.stream = None
        if self.handler is not None and hasattr(self.handler, "on_close"):
            self.handler.on_close(conn, reason)
        if reason not in ("closed by peer", "closed") and not self.logged:
            # an accepted Unix-socket connection has no peer address: no gap in the sentence
            text = "connection%s closed: %s" % (" %s" % (conn.peer,) if conn.peer else "", reason)
            if self.device.security is not None and self.role is None:
                self.device.log_unauthenticated(text)
            else:
                self.device.log(text)


class Device:
    """A device: its sensors, its listeners, and the handlers of every control message."""

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
        self.unauth_closed = 0   # closed connections of unauthenticated peers (logged sparsely)
        if sensor_specs is None:
            sensor_specs = [k for k in sensors.SIM_KINDS if k not in ("counter", "clock")]
        for spec in sensor_specs:
            self.add_sensor(spec)
        self.handlers = {
            "data-request": self.on_data_request,
            "hello": self.on_hello,
            "info": self.on_info,
            "status": self.on_status,
            "ping": self.on_ping,
            "metrics": self.on_metrics,
            "clock": self.on_clock,
            "forward": lambda s, b: self.on_forward(s, "forward", b),
            "register": lambda s, b: self.on_forward(s, "register", b),
        }

    def log(self, text):
        log(self.name, text)

    def log_unauthenticated(self, text):
        # Anyone can open connections: log the 1st, 2nd, 4th, 8th... so a flood cannot fill the log.
        n = self.unauth_closed = self.unauth_closed + 1
        if n & (n - 1) == 0:
            self.log("%s (%d closed before authenticating so far)" % (text, n))

    def _on_loop_error(self, exc, where):
        self.errors += 1
        self.log("error in %s: %s: %s" % (getattr(where, "__name__", where), type(exc).__name__, exc))
        if hasattr(sys, "print_exception"):
            sys.print_exception(exc)
        else:
            import traceback
            traceback.print_exception(type(exc), exc, exc.__traceback__)

    def add_sensor(self, spec):
        if type(spec) is str:
            spec = sensors.parse_spec(spec)
        obj = sensors.make(spec)
        name = spec.get("name") or spec["kind"]
        if name in self.sensors:
            raise sensors.SensorError("sensor name %r is configured twice" % name)
        self.sensors[name] = (obj, sensors.rate_of(obj, spec))
        self.sensor_kinds[name] = spec.get("kind", name)

    def sensor_names(self):
        return sorted(self.sensors)

    def secure(self, cfg):
        """Require authenticated, encrypted sessions: cfg has "identity" and "trust" (files or
        dicts), optionally "revoked", "max_handshakes", "handshake_ms" (docs/security.md)."""
        from sensormesh.device.secure import Security   # crypto is loaded only by devices with keys
        self.security = Security(self, cfg)
        return self.security

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

    def listen_tcp(self, host, port):
        lst = transport.listen_tcp(self.loop, host, port, self.make_inbound,
                                   max_frame=self.max_frame, max_conns=self.max_conns)
        self.listeners.append(lst)
        return lst

    def listen_unix(self, path):
        lst = transport.listen_unix(self.loop, path, self.make_inbound,
                                    max_frame=self.max_frame, max_conns=self.max_conns)
        self.listeners.append(lst)
        return lst

    def close(self):
        for s in self.streams:
            s.stop()
        if self.runtime is not None:
            self.runtime.shutdown()
        for lst in self.listeners:
            lst.close()
        self.listeners = []

    # -- control messages ---------------------------------------------------------------
    def dispatch(self, session, key, body):
        h = self.handlers.get(key)
        if h is None and self.runtime_handles(key):
            h = self.runtime_handler(key)
        if h is None:
            known = sorted(self.handlers) + list(RUNTIME_MESSAGES)
            session.fail(session.conn, "unknown-message", "unknown control message %r (known: %s)"
                         % (key, ", ".join(sorted(known))))
            return
        h(session, body)

    def runtime_handles(self, key):
        return key in RUNTIME_MESSAGES

    def runtime_handler(self, key):
        if self.runtime is None:
            from sensormesh.device.runtime import Runtime
            self.runtime = Runtime(self)
        return self.runtime.handler(key)

    def info(self):
        sens = {}
        for n in self.sensors:
            s, rate = self.sensors[n]
            sens[n] = e = {"kind": self.sensor_kinds[n], "rate": rate, "unit": getattr(s, "UNIT", "")}
            e.update(sensors.measures(s))
        return {"name": self.name, "version": VERSION, "implementation": implementation(),
                "sensors": sens, "unix": not sys.platform.startswith("esp"),
                "secure": self.security is not None, "max-frame": self.max_frame}

    def on_info(self, session, body):
        session.conn.send({"info": self.info()})

    def on_hello(self, session, body):
        # "max-frame": the largest frame the peer takes (a controller on CPython takes far more
        # than the 16 KiB assumed otherwise), so a status of hundreds of steps fits one reply
        mf = body.get("max-frame") if type(body) is dict else None
        if type(mf) is int and mf > codec.MIN_MAX_FRAME:
            self.peer_limit(session.conn, mf)
        session.kind = "control"
        session.conn.send({"info": self.info()})

    def peer_limit(self, conn, mf):
        """The peer accepts frames of mf bytes: send up to that (at most 4 times our own limit)."""
        conn.peer_max_frame = mf if mf < codec.DEFAULT_MAX_FRAME * 4 else codec.DEFAULT_MAX_FRAME * 4
        if conn.wrap is not None:
            conn.wrap_limit = self.security.wrap_limit(conn.peer_max_frame)

    def on_forward(self, session, key, body):
        from sensormesh.device import forward   # control forwarding through gateways
        forward.handle(self, session, key, body)

    def on_ping(self, session, body):
        session.conn.send({"pong": body})

    def set_metrics(self, on):
        """Metrics on (the default) or off: off, the loop does not time its waits and a deployed
        pipeline runs without sampling (its counters still count)."""
        self.metrics = bool(on)
        self.loop.timing = self.metrics
        if self.runtime is not None:
            self.runtime.metrics = self.metrics

    def on_metrics(self, session, body):
        from sensormesh.device import metrics
        session.conn.send({"metrics": metrics.report(self)})
        unload("sensormesh.device.metrics")   # a board frees its code between two polls

    def on_clock(self, session, body):
        # the tick clock now, for the controller's offset estimate (controller/clocksync.py)
        session.conn.send({"clock": {"t0": body.get("t0") if type(body) is dict else None,
                                     "tick_us": compat.ticks_us(), "period": compat.TICK_PERIOD}})

    def on_status(self, session, body):
        st = {"name": self.name, "streams": [s.stats() for s in self.streams],
              "connections": sum(len(lst.conns) for lst in self.listeners), "errors": self.errors}
        try:
            import gc
            if MICROPYTHON:
                gc.collect()     # live heap, not the garbage since the last collection
                st["mem_free"] = gc.mem_free()
                st["mem_alloc"] = gc.mem_alloc()
        except (ImportError, AttributeError):
            pass
        if self.runtime is not None:
            st["assignment"] = self.runtime.status()
        if self.security is not None:
            st["security"] = self.security.status()
        fw = getattr(self, "forwarder", None)
        if fw is not None:
            st["registered"] = sorted(fw.registered)   # devices that registered with this gateway
        if self.runtime is not None:
            self.runtime.send_stats(session.conn, "status", st)
        else:
            session.conn.send({"status": st})

    def on_data_request(self, session, body):
        # Loaded on the first data request: a board that only runs deployed steps never pays for it.
        from sensormesh.device.datarequest import RequestError, Stream, parse
        try:
            name, tf, vpf, mf = parse(body, self.sensor_names())
        except RequestError as e:
            # logged here, once (the client may close first); on_close then stays silent, also
            # when the close below completes at once
            peer = session.conn.peer
            self.log("refused data request%s (%s): %s" % (" from %s" % (peer,) if peer else "", e.code, e.message))
            session.logged = True
            session.conn.send(e.to_message())
            session.conn.close_after_flush("refused data request (%s): %s" % (e.code, e.message))
            return
        sensor, rate = self.sensors[name]
        if mf:
            self.peer_limit(session.conn, mf)
        session.kind = "stream"
        stream = Stream(self.loop, session.conn, sensor, rate, tf, vpf)
        session.stream = stream
        self.streams.append(stream)
        stream.start()

    def run(self):
        try:
            self.loop.run()
        finally:
            self.close()


# Control messages the assignment runtime (sensormesh/device/runtime/__init__.py) answers.
RUNTIME_MESSAGES = ("deploy", "deploy-part", "start", "stop", "pipe", "pull", "undeploy", "subscribe", "delivered")


def start(cfg):
    """Build a device from a configuration dict and start listening; returns it. The code that
    does it (boot.py) runs once: a board running .mpy files forgets it afterwards."""
    from sensormesh.device import boot
    dev = boot.start(cfg)
    forget("sensormesh.device.boot")
    return dev


class StdinWatch:
    """`exit_with_stdin`: the process that started this device holds the other end of its
    standard input. When that process ends, even killed with SIGKILL, the input closes and the
    device stops, so no device outlives the controller that ran it."""

    def __init__(self, dev):
        self.dev = dev
        dev.loop.register(sys.stdin, self)

    def on_poll(self, ev):
        data = sys.stdin.buffer.read(1) if ev & 1 else b""
        if not data:        # end of input (or hang-up): the starter is gone
            self.dev.loop.unregister(sys.stdin)
            self.dev.log("standard input closed: the process that started this device is gone")
            raise KeyboardInterrupt


def run(cfg):
    dev = start(cfg)
    try:
        dev.run()
    except KeyboardInterrupt:
        dev.log("stopped")
    return dev
