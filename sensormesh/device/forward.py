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
# {"forward": {"to": T, "token": "<Fernet token>", "timeout": ms}}
#     With keys the controller runs a secure session of its own with T, end to end: its hello
#     and T's welcome (or refusal) travel as "message" like above. From T's welcome on, this
#     gateway's connection to T is a relay (transport.Connection.relay): each "token" leaves as
#     one raw frame, and each frame from T comes back as
#         {"forwarded": {"from": T, "token": "<Fernet token>"}}
#     The gateway holds no key for T and never sees what the tokens say. A token for a target
#     with no such session open here (its connection was lost) gets "unreachable": the
#     controller starts again with a hello. A secure session's hello always goes on a
#     connection of its own (a new one to a dialed target, a fresh registration, see below), so
#     no plaintext ever enters a session.
# {"register": {"name": NAME}}
#     Sent by a device that can only dial out (config/option `register: "host:port"`): it keeps
#     that connection open and serves the control messages arriving on it as if it had
#     accepted it. The gateway remembers the connection under NAME, so that
#     {"forward": {"to": NAME, ...}} reaches the device. A keyed gateway takes it in plaintext as
#     the first message of a connection: the device's secure session is with the controller,
#     end to end, and the first thing relayed to it must be the controller's hello.
#     A registration that carries (or has begun) a secure session belongs to the requester that
#     opened it; a new hello for it closes it (the previous requester gets "unreachable"), and
#     the hello waits (within its timeout) for the device to register again on a fresh
#     connection. So does anything forwarded to a name that was registered here and is
#     momentarily not (the device is redialing).
from sensormesh.device import codec, transport
from sensormesh.device.compat import MICROPYTHON
from sensormesh.device.schedule import LOG_EVERY_REDIALS

CONNECT_MS = 5000
# Redial delays of a registration (ms): slower than a pipe's and up to 5 s, since every redial
# makes the upstream gateway or controller take a new connection and registration.
RETRY_MS = (200, 500, 1000, 2000, 5000)


class Redial:
    """Backoff for a connection that is dialed again when it drops: the delays of `table` in
    turn, then its last one; `connected()` starts over, so a link that dropped after working
    is redialed quickly again (a registration: once the upstream said "registered"; one it
    refuses goes on backing off)."""

    def __init__(self, table):
        self.table = table
        self.tries = 0       # redials since the last successful connection

    def delay(self):
        """ms to wait before the next redial (counts it)."""
        t = self.table
        d = t[self.tries] if self.tries < len(t) else t[-1]
        self.tries += 1
        return d

    def connected(self):
        self.tries = 0


# Registration names are chosen by whoever registers: bounded in length, and the gateway
# remembers at most SEEN_MAX of the names that registered at some time (oldest forgotten).
NAME_MAX = 64
SEEN_MAX = 16 if MICROPYTHON else 1024


def secure_hello(msg):
    """Is msg the hello of a secure session (not the plain {"hello": {}} of a control session)?"""
    return type(msg) is dict and type(msg.get("hello")) is dict and "from" in msg["hello"]


def relay_back(requester, target, conn, msg):
    """Hand what conn (to target) received to the requesting session; False if it is gone."""
    r = requester.conn if requester is not None else None
    if r is None or r.closed:
        return False
    if conn.relay:
        try:
            out = {"forwarded": {"from": target, "token": msg.decode()}}
        except UnicodeError:
            conn.close("a frame from %s is not a token" % target)
            return True
    else:
        out = {"forwarded": {"from": target, "message": msg}}
        if type(msg) is dict and "welcome" in msg:
            conn.relay = True   # the target's last plaintext frame: its secure session is up
    try:
        r.send(out)
    except codec.ProtocolError as e:
        conn.close("cannot relay a reply of %s: %s" % (target, e.args[0]))
    return True


class Upstream:
    """A gateway's control connection to one target on behalf of one requesting session."""

    def __init__(self, fw, requester, target, timeout):
        self.fw = fw
        self.requester = requester
        self.target = target
        self.up = False
        self.quiet = False     # closed by us for a new session: no "unreachable" for it
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
        if not relay_back(self.requester, self.target, conn, msg):
            conn.close("requester gone")

    def on_close(self, conn, reason):
        if self.timer:
            self.timer.cancel()
            self.timer = None
        self.fw.drop(self)
        r = self.requester.conn
        if r is None or r.closed or reason == "requester gone" or self.quiet:
            return
        what = "lost the connection to" if self.up else "cannot reach"
        unreachable(r, self.target, "gateway %s %s %s: %s" % (self.fw.dev.name, what, self.target, reason))


class Registered:
    """The gateway's side of a connection a device opened to register: replies go to the
    session that last forwarded something to it (with keys: the one whose hello it answered)."""

    def __init__(self, fw, name, conn, session):
        self.fw = fw
        self.name = name
        self.conn = conn
        self.session = session  # the gateway's Inbound for it (keyed: pre-authentication bounds)
        self.requester = None
        self.quiet = False
        self.hello = False     # a secure session's hello went out on this connection

    def on_message(self, conn, msg):
        relay_back(self.requester, self.name, conn, msg)
        if conn.relay and self.session.hs is not None:
            from sensormesh.device.secure import load
            load("admit").authenticated(self.fw.dev.security, self.session, conn)

    def on_close(self, conn, reason):
        if self.fw.registered.get(self.name) is self:
            del self.fw.registered[self.name]
        self.fw.dev.log("registered device %s gone: %s" % (self.name, reason))
        r = self.requester.conn if self.requester is not None else None
        if conn.relay and not self.quiet and r is not None and not r.closed:
            unreachable(r, self.name, "gateway %s lost registered device %s: %s"
                        % (self.fw.dev.name, self.name, reason))


class Forwarder:
    def __init__(self, dev):
        self.dev = dev
        self.ups = []          # Upstream objects
        self.registered = {}   # name -> Registered
        self.seen = []         # names that registered here at some time, oldest first (SEEN_MAX)
        self.waiting = {}      # name -> [session, message, timer]: waits for the name to register

    def drop(self, up):
        if up in self.ups:
            self.ups.remove(up)

    def forward(self, session, body):
        ok = type(body) is dict and type(body.get("to")) is str
        msg = body.get("message") if ok else None
        token = body.get("token") if ok else None
        if not ok or (type(msg) is dict) == (type(token) is str):
            session.conn.send({"error": {"code": "bad-request",
                                         "message": "forward needs {\"to\": \"host:port\", \"message\": {...}} "
                                                    "or {\"to\": \"host:port\", \"token\": \"...\"}"}})
            return
        target = body["to"]
        timeout = body.get("timeout", CONNECT_MS)
        if type(timeout) is not int or not 0 <= timeout <= 86400000:
            session.conn.send({"error": {"code": "bad-request",
                                         "message": "forward timeout must be a whole number of ms "
                                                    "from 0 to 86400000, got %r" % (timeout,)}})
            return
        payload = token.encode() if token is not None else None
        reg = self.registered.get(target)
        if reg is not None:
            self._to_registered(session, reg, msg, payload, timeout)
            return
        for u in list(self.ups):   # forget connections whose requester has gone
            if u.requester.conn is None or u.requester.conn.closed:
                u.conn.close("requester gone")
        for u in self.ups:
            if u.requester is session and u.target == target and not u.conn.closed:
                if payload is not None:
                    if u.conn.relay:
                        u.conn.send_payload(payload)
                        return
                    break
                if not u.conn.relay and not secure_hello(msg):
                    u.conn.send(msg)
                    return
                u.quiet = True     # a secure session starts on a connection of its own
                u.conn.close("replaced by a new session")
                break
        if payload is not None:
            unreachable(session.conn, target, "gateway %s has no secure session open to %s (its connection "
                        "was lost); start again with a hello" % (self.dev.name, target))
            return
        if target in self.seen:
            self._wait(session, target, msg, timeout)
            return
        if ":" not in target:
            unreachable(session.conn, target, "gateway %s has no registered device %r and it is not a host:port"
                        % (self.dev.name, target))
            return
        try:
            u = Upstream(self, session, target, timeout)
        except (OSError, ValueError, IndexError) as e:
            unreachable(session.conn, target, "gateway %s cannot reach %s: %s" % (self.dev.name, target, e))
            return
        self.ups.append(u)
        u.conn.send(msg)

    def _to_registered(self, session, reg, msg, payload, timeout):
        conn = reg.conn
        if payload is not None:
            if reg.requester is session and conn.relay:
                conn.send_payload(payload)
            else:
                unreachable(session.conn, reg.name, "registered device %s has no secure session with this "
                            "requester on gateway %s; start again with a hello" % (reg.name, self.dev.name))
            return
        hello = secure_hello(msg)
        if conn.relay or (hello and reg.hello):
            # It carries (or has begun) a secure session: a new one needs a fresh connection.
            # Close this one (the device registers again at once); the message waits until it has.
            self._wait(session, reg.name, msg, timeout)
            reg.quiet = reg.requester is session
            conn.close("a new session takes over the registration")
            return
        reg.requester = session
        reg.hello = reg.hello or hello
        conn.send(msg)

    def _wait(self, session, name, msg, timeout):
        old = self.waiting.get(name)
        if old is not None:
            old[2].cancel()
            if old[0] is not session and old[0].conn is not None and not old[0].conn.closed:
                unreachable(old[0].conn, name, "gateway %s: another session took over registered device %s"
                            % (self.dev.name, name))
        t = self.dev.loop.call_later(timeout or CONNECT_MS, lambda: self._gave_up(name))
        self.waiting[name] = [session, msg, t]

    def _gave_up(self, name):
        w = self.waiting.pop(name, None)
        if w is not None and w[0].conn is not None and not w[0].conn.closed:
            unreachable(w[0].conn, name, "gateway %s: device %s is not registered (it did not register again "
                        "in time)" % (self.dev.name, name))

    def register(self, session, body):
        name = body.get("name") if type(body) is dict else None
        if type(name) is not str or not name or len(name) > NAME_MAX:
            session.fail(session.conn, "bad-request", "register needs {\"name\": NAME} (1-%d characters)" % NAME_MAX)
            return
        old = self.registered.get(name)
        reg = Registered(self, name, session.conn, session)
        if old is not None:
            reg.requester = old.requester
            old.conn.close("replaced by a new registration")
        self.registered[name] = reg
        if name not in self.seen:
            self.seen.append(name)
            if len(self.seen) > SEEN_MAX:
                self.seen.pop(0)
        session.kind = "registered"
        session.handler = reg
        session.conn.send({"registered": {"name": name, "by": self.dev.name}})
        self.dev.log("device %s registered%s" % (name, " from %s" % (session.conn.peer,) if session.conn.peer else ""))
        w = self.waiting.pop(name, None)
        if w is not None:
            w[2].cancel()
            if w[0].conn is not None and not w[0].conn.closed:
                reg.requester = w[0]
                reg.hello = secure_hello(w[1])
                reg.conn.send(w[1])


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
    controller or a gateway) and serves what arrives on it; redials when it drops. With keys
    it is the server of the handshake on that connection: after the upstream's "registered",
    the first message must be the controller's hello (the small frame limit of a connection before its hello)."""

    def __init__(self, dev, upstream):
        self.dev = dev
        self.upstream = upstream
        self.session = None
        self.redial = Redial(RETRY_MS)
        self.conn = None
        self.dial()

    def dial(self):
        self.session = self.dev.make_inbound()
        self.session.kind = "control"
        self.conn = transport.dial(self.dev.loop, self.upstream, self)
        self.session.conn = self.conn
        if self.dev.security is not None:
            # After the upstream's answer the first message this connection serves must be a
            # hello, checked like an accepted connection's (trust, replay, roles), with the same
            # small frame limit until then. It takes no handshake slot and has no deadline: the
            # controller's hello may come long after the device registered, and only the
            # upstream the device chose to dial can hold this connection (it could cut it anyway).
            from sensormesh.device.secure import HELLO_MAX_FRAME
            self.conn.decoder.max_frame = HELLO_MAX_FRAME
        self.conn.send({"register": {"name": self.dev.name}})

    def on_message(self, conn, msg):
        if type(msg) is dict and ("registered" in msg or "error" in msg) and self.session.handler is None \
                and self.session.role is None:
            # the upstream's answer to our register: only a "registered" starts the redial
            # pauses over (a connection that came up to be refused is no link that worked)
            if "registered" in msg:
                self.redial.connected()
                self.dev.log("registered with %s" % self.upstream)
            else:
                n = self.redial.tries   # a refusal that lasts is logged now and then
                if n == 0 or n % LOG_EVERY_REDIALS == 0:
                    self.dev.log("registration with %s refused: %s" % (self.upstream, msg["error"]))
            return
        self.session.on_message(conn, msg)

    def on_drain(self, conn):
        self.session.on_drain(conn)

    def on_close(self, conn, reason):
        self.session.on_close(conn, reason)
        delay = self.redial.delay()
        if self.redial.tries == 1:
            self.dev.log("registration with %s: %s; redialing" % (self.upstream, reason))
        self.dev.loop.call_later(delay, self.dial)


def register(dev, upstream):
    dev.registration = Registration(dev, upstream)
    return dev.registration
