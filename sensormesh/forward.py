# Control forwarding through gateways (device side; CPython and MicroPython, same code).
#
# {"forward": {"to": "host:port", "message": M, "timeout": ms}}
#     The gateway opens (or reuses) a control connection of its own to `to`, sends M, and
#     relays every reply back to the requesting session as
#         {"forwarded": {"from": "host:port", "message": reply}}
#     M may itself be a "forward" (multi-gateway paths): replies come back nested.
#     `to` may also name a device that registered with this gateway (see below).
#     Cannot connect within `timeout` ms (default 5000), or the connection drops:
#         {"error": {"code": "unreachable", "message": "...", "to": "host:port"}}
# {"register": {"name": NAME}}
#     Sent by a device that can only dial out (config/option `register: "host:port"`): it keeps
#     that connection open and serves the control messages arriving on it as if it had
#     accepted it. The gateway remembers the connection under NAME, so that
#     {"forward": {"to": NAME, ...}} reaches the device.
from sensormesh import transport

CONNECT_MS = 5000
RETRY_MS = (200, 500, 1000, 2000, 5000)


class Upstream:
    """A gateway's control connection to one target on behalf of one requesting session."""

    def __init__(self, fw, requester, target, timeout):
        self.fw = fw
        self.requester = requester
        self.target = target
        self.up = False
        self.timer = None
        self.conn = transport.dial(fw.dev.loop, target, self)
        if timeout:
            self.timer = fw.dev.loop.call_later(timeout, self._timeout)

    def _timeout(self):
        self.timer = None
        if not self.up and not self.conn.closed:
            self.conn.close("no connection within the time limit")

    def on_connect(self, conn):
        self.up = True

    def on_message(self, conn, msg):
        r = self.requester.conn
        if r is None or r.closed:
            conn.close("requester gone")
            return
        r.send({"forwarded": {"from": self.target, "message": msg}})

    def on_close(self, conn, reason):
        if self.timer:
            self.timer.cancel()
            self.timer = None
        self.fw.drop(self)
        r = self.requester.conn
        if r is None or r.closed or reason == "requester gone":
            return
        what = "lost the connection to" if self.up else "cannot reach"
        unreachable(r, self.target, "gateway %s %s %s: %s" % (self.fw.dev.name, what, self.target, reason))


class Registered:
    """The gateway's side of a connection a device opened to register: replies go to the
    session that last forwarded something to it."""

    def __init__(self, fw, name, conn):
        self.fw = fw
        self.name = name
        self.conn = conn
        self.requester = None

    def on_message(self, conn, msg):
        r = self.requester
        if r is not None and r.conn is not None and not r.conn.closed:
            r.conn.send({"forwarded": {"from": self.name, "message": msg}})

    def on_close(self, conn, reason):
        if self.fw.registered.get(self.name) is self:
            del self.fw.registered[self.name]
        self.fw.dev.log("registered device %s gone: %s" % (self.name, reason))


class Forwarder:
    def __init__(self, dev):
        self.dev = dev
        self.ups = []          # Upstream objects
        self.registered = {}   # name -> Registered

    def drop(self, up):
        if up in self.ups:
            self.ups.remove(up)

    def forward(self, session, body):
        if type(body) is not dict or type(body.get("to")) is not str or type(body.get("message")) is not dict:
            session.conn.send({"error": {"code": "bad-request",
                                         "message": "forward needs {\"to\": \"host:port\", \"message\": {...}}"}})
            return
        target = body["to"]
        msg = body["message"]
        reg = self.registered.get(target)
        if reg is not None:
            reg.requester = session
            reg.conn.send(msg)
            return
        for u in list(self.ups):   # forget connections whose requester has gone
            if u.requester.conn is None or u.requester.conn.closed:
                u.conn.close("requester gone")
        for u in self.ups:
            if u.requester is session and u.target == target and not u.conn.closed:
                u.conn.send(msg)
                return
        if ":" not in target:
            unreachable(session.conn, target, "gateway %s has no registered device %r and it is not a host:port"
                        % (self.dev.name, target))
            return
        timeout = body.get("timeout", CONNECT_MS)
        try:
            u = Upstream(self, session, target, timeout)
        except (OSError, ValueError, IndexError) as e:
            unreachable(session.conn, target, "gateway %s cannot reach %s: %s" % (self.dev.name, target, e))
            return
        self.ups.append(u)
        u.conn.send(msg)

    def register(self, session, body):
        name = body.get("name") if type(body) is dict else None
        if type(name) is not str or not name:
            session.fail(session.conn, "bad-request", "register needs {\"name\": NAME}")
            return
        old = self.registered.get(name)
        reg = Registered(self, name, session.conn)
        if old is not None:
            reg.requester = old.requester
            old.conn.close("replaced by a new registration")
        self.registered[name] = reg
        session.kind = "registered"
        session.handler = reg
        session.conn.send({"registered": {"name": name, "by": self.dev.name}})
        self.dev.log("device %s registered from %s" % (name, session.conn.peer))


def unreachable(conn, target, text):
    conn.send({"error": {"code": "unreachable", "message": text, "to": target}})


def forwarder(dev):
    fw = getattr(dev, "forwarder", None)
    if fw is None:
        fw = dev.forwarder = Forwarder(dev)
    return fw


def handle(dev, session, key, body):
    """Device dispatch entry for "forward" and "register"."""
    fw = forwarder(dev)
    if key == "forward":
        fw.forward(session, body)
    else:
        fw.register(session, body)


# -- the dialing side of a registration ---------------------------------------------------------
class Registration:
    """A device behind a one-way link keeps a control connection open to `upstream` (a
    controller or a gateway) and serves what arrives on it; redials when it drops."""

    def __init__(self, dev, upstream):
        self.dev = dev
        self.upstream = upstream
        self.session = None
        self.retries = 0
        self.conn = None
        self.dial()

    def dial(self):
        from sensormesh.device import Session
        self.session = Session(self.dev)
        self.session.kind = "control"
        self.conn = transport.dial(self.dev.loop, self.upstream, self)
        self.session.on_open(self.conn)
        self.conn.send({"register": {"name": self.dev.name}})

    def on_connect(self, conn):
        self.retries = 0
        self.dev.log("registered with %s" % self.upstream)

    def on_message(self, conn, msg):
        if type(msg) is dict and ("registered" in msg or "error" in msg) and self.session.handler is None:
            return   # the upstream's answer to our register
        self.session.on_message(conn, msg)

    def on_drain(self, conn):
        self.session.on_drain(conn)

    def on_close(self, conn, reason):
        self.session.on_close(conn, reason)
        delay = RETRY_MS[self.retries if self.retries < len(RETRY_MS) else -1]
        self.retries += 1
        if self.retries == 1:
            self.dev.log("registration with %s: %s; redialing" % (self.upstream, reason))
        self.dev.loop.call_later(delay, self.dial)


def register(dev, upstream):
    dev.registration = Registration(dev, upstream)
    return dev.registration
