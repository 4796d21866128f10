"""Control paths: how the controller talks to each device, and the requests waiting for replies.

A device is reached over a link (a connection the controller dialed, or one the device opened
to register) and, behind gateways, through one `forward` per gateway (docs/topology.md). With
keys every link runs the handshake and carries tokens; a device behind gateways gets a session
of its own with the controller, end to end (`_E2E`), which the gateways relay without reading.

`Control` is the part of the Supervisor that owns links, paths and request queues. What it
hears that concerns health (a closed link, a gateway's "unreachable") it reports through
`self._suspect` (watch.py); deliveries go to `self._on_deliver`, device errors to `self._event`.
"""
from __future__ import annotations

import socket
import time
from collections import deque

from sensormesh.device import codec, transport
from sensormesh.controller.deploy import DeployError
from sensormesh.controller.routing import RoutingError, hop_address
from sensormesh.controller.topology import CONTROLLER
from sensormesh.device.runtime import parts_sender as assignment_parts
from sensormesh.device.secure.handshake import HandshakeError, plain_limit

# Refusals of a secure session (handshake.CODES but the connection limits): reported with their code.
HANDSHAKE_CODES = ("unknown-key", "bad-signature", "stale-timestamp", "replay", "revoked", "wrong-role",
                   "malformed", "plaintext-refused")

# Bytes a gateway's forward adds around the message it carries (its keys, the target's address).
FORWARD_OVERHEAD = 256

REGISTERED = "registered:"        # link key prefix of a device that dialed in to register
# said of a device that must register when the controller takes no registrations
NO_LISTENER = "it dials out to register, and nothing listens for registrations here: give --listen HOST:PORT, " \
              "the address it registers at"
NOT_DIALED = "not connecting"     # ends the error of a device the controller's trust store refuses


class SupervisorError(DeployError):
    """Deployment along the control routes failed (a device unreachable or refusing)."""


class Request:
    """One control message sent to one device, waiting for a reply with one of `keys`."""

    __slots__ = ("device", "keys", "deadline", "reply", "error", "done", "link_lost", "expired", "t_done", "on_done",
                 "code", "answered")

    def __init__(self, device, keys, deadline):
        self.device = device
        self.keys = keys
        self.deadline = deadline
        self.reply = None
        self.error = None
        self.done = False
        self.link_lost = False      # failed because the controller's connection (to a gateway) closed
        self.expired = False        # failed because no answer came before its deadline
        self.t_done = None          # time.monotonic() when the reply (or the error) came
        self.on_done = None         # fn(request), called once when it is done (metrics, clock sync)
        self.code = None            # the code of the device's error answer ("out-of-memory", ...)
        # the device itself answered (its reply, or its error answer): it is up, whatever it said
        self.answered = False

    def finish(self, reply=None, error=None, link_lost=False, expired=False, code=None, answered=False):
        if not self.done:
            self.t_done = time.monotonic()
            self.done = True
            self.reply = reply
            self.error = error
            self.link_lost = link_lost
            self.expired = expired
            self.code = code
            self.answered = answered or reply is not None
            if self.on_done is not None:
                self.on_done(self)


class ControlPath:
    """How the controller talks to one device: the link it sends on (an address it dialed, or
    "registered:NAME") and the forward targets after it (addresses, or names registered with a
    gateway), with the ControlRoute it follows."""

    def __init__(self, device, first, targets, route, names=None):
        self.device = device
        self.first = first
        self.targets = tuple(targets)
        self.route = route
        # the device at first and at each target, whom a secure session there authenticates
        if names is None:
            names = [h.dst for h in route.hops] if route is not None else [device]
        self.names = tuple(names)

    @property
    def key(self):
        return (self.first, self.targets)

    def describe(self):
        return self.route.explain() if self.route is not None else "%s at %s" % (self.device, self.first)

    def __eq__(self, other):
        return isinstance(other, ControlPath) and self.key == other.key and self.device == other.device

    def __repr__(self):
        return "ControlPath(%s: %s)" % (self.device, " -> ".join((self.first,) + self.targets))


class _E2E:
    """The controller's own secure session with a device behind gateways (end to end): the
    gateways relay its hello and welcome as messages, then its tokens, which they cannot read."""

    __slots__ = ("cs", "up", "held", "deadline", "link", "names")

    def __init__(self, cs, deadline, link, names):
        self.cs = cs                # handshake.ClientSession
        self.up = False             # welcome received
        self.held = []              # (message, timeout ms) to send once it is up
        self.deadline = deadline    # time.monotonic() by which the welcome must come
        self.link = link
        self.names = names


def session_failed(code, message):
    """The words for a secure session that could not be opened (the caller names the device)."""
    return "secure session failed (%s): %s" % (code, message)


# Request.code of a device that answered the controller's secure hello in plaintext: it runs
# without keys (up --insecure, a worker without --identity). It is up, it only does not speak
# the controller's language: not counted failed.
PLAINTEXT = "plaintext"


def runs_without_keys(device):
    """The words for a device that answered the controller's secure hello in plaintext."""
    return ("%s runs without keys (plaintext): it answered the controller's secure hello in plaintext; "
            "use --insecure to talk to it" % device)


def plaintext_answer(msg):
    """Is msg what a device without keys answers a secure hello with (its info, in plaintext)?"""
    return type(msg) is dict and "info" in msg and "error" not in msg


class _HelloWatch:
    """The protocol of a link the controller dialed with keys while its handshake runs, in front
    of the Dialer: notes on the link (`plaintext`) when the device answers the hello in
    plaintext, which the Dialer reports as a malformed welcome only. Once the session is up the
    Dialer hands the connection to the link and this is garbage."""

    def __init__(self, dialer, link):
        self.dialer = dialer
        self.link = link

    def on_message(self, conn, msg):
        if not self.dialer.up and plaintext_answer(msg):
            self.link.plaintext = True
        self.dialer.on_message(conn, msg)

    def __getattr__(self, name):         # on_close, on_drain, ...: the Dialer's
        return getattr(self.dialer, name)


class _Link:
    """Protocol object of one connection the controller holds."""

    def __init__(self, sup, key):
        self.sup = sup
        self.key = key
        self.conn = None
        self.closed = None
        self.plaintext = False      # the device answered the controller's secure hello in plaintext

    def on_connect(self, conn):
        pass

    def on_open(self, conn):            # accepted (a device registering with the controller)
        self.conn = conn

    def on_message(self, conn, msg):
        self.sup._link_message(self, msg)

    def on_drain(self, conn):
        pass

    def on_close(self, conn, reason):
        self.closed = reason
        self.sup._link_closed(self, reason)



class Control:
    """Links, control paths and request queues of a Supervisor (mixed into it).

    State it owns (set up by `_init_control`): loop, links, queues, by_key, paths, lost_paths,
    path_errors, server_of, e2e, _registered, _listener."""

    # fn() -> why the run that is being watched ends now ("interrupted", "duration"), or None;
    # set by watch(): a re-route or recovery in progress then stops waiting for devices at once
    cut_short = None

    def _ending(self):
        f = self.cut_short
        return f() if f is not None else None

    def _loop_error(self, e, fn):
        """A handler raised on what came from a device (a message of a shape no check foresaw):
        that connection is closed, saying why, and the controller goes on serving the others
        (its requests on it fail as for any closed connection)."""
        if e is getattr(self, "_user_error", None):
            self._user_error = None
            raise e           # the user's own callback raised: theirs to see
        what = "%s: %s" % (type(e).__name__, e)
        conn = getattr(fn, "__self__", None)
        if isinstance(conn, transport.Connection) and not conn.closed:
            conn.close("the controller could not handle what came on it (%s)" % what)
        self._event("controller: a message from %s could not be handled and its connection was closed: %s"
                    % (getattr(conn, "peer", None) or "a device", what))

    def _init_control(self, listen):
        self.loop = transport.Loop()
        self.loop.on_error = self._loop_error
        self.links = {}          # link key -> _Link
        self.queues = {}         # device -> deque of Requests
        self.by_key = {}         # (link key, targets) -> device
        self.paths = {}          # device -> ControlPath
        self.lost_paths = {}     # device -> the ControlPath it had before a failure cut it off
        self.path_errors = {}    # device -> why it has no control path
        self.server_of = {}      # link address -> the device listening there (whom the handshake expects)
        self._registered = {}    # name -> _Link of devices that registered with the controller
        self.e2e = {}            # (link key, targets) -> _E2E: sessions with devices behind gateways
        self._listener = None
        self._next_expiry = 0.0  # time.monotonic() before which no queued request can expire
        # deployed devices whose control session closed: their subscription to callback values
        # went with it (device -> None, or the `subscribe` Request on the next session)
        self.unsubscribed = {}
        if isinstance(listen, str) and listen:
            kind, host, port = transport.parse_address(listen)
            self._listener = transport.listen_tcp(self.loop, host, port, self._accept)
        elif listen is not None:       # a socket bound and listening already (registrations.py)
            from sensormesh.device.listen import listener
            self._listener = listener(self.loop, listen, self._accept)

    # -- addresses and control paths -----------------------------------------------------------

    def _set_paths(self, topo):
        """Control paths for every device topo's controller reaches; returns {device: path}."""
        inv = self.model.routing_inventory()
        paths = {}
        self.path_errors = {}
        for dev, route in topo.control_routes().items():
            p = self._path(dev, route, inv)
            if p is not None:
                paths[dev] = p
        for dev, p in paths.items():
            old = self.paths.get(dev)
            if old is not None and self.by_key.get(old.key) == dev:
                del self.by_key[old.key]
            self.paths[dev] = p
            self.by_key[p.key] = dev
        for dev in list(self.paths):
            if dev not in paths:
                old = self.paths.pop(dev)
                self.lost_paths[dev] = old
                if self.by_key.get(old.key) == dev:
                    del self.by_key[old.key]
        used = {(p.first, p.targets[:i]) for p in self.paths.values() for i in range(1, len(p.targets) + 1)}
        for key in [k for k in self.e2e if k not in used]:     # sessions over routes given up
            del self.e2e[key]
        return paths

    def _path(self, dev, route, inv):
        """The ControlPath along route, or None (the reason in path_errors[dev])."""
        first, targets = None, []
        for i, hop in enumerate(route.hops):
            if hop.dialer == hop.dst:          # the device dials out: it registered
                if hop.src == CONTROLLER:
                    first = REGISTERED + hop.dst
                else:
                    targets.append(hop.dst)
                continue
            if i == 0 and hop.dst in self.overrides:
                addr = self.overrides[hop.dst]
            else:
                try:
                    addr = hop_address(hop.dst, hop, inv)
                except RoutingError as e:
                    self.path_errors[dev] = "no address to reach it for control: %s" % e
                    return None
            if i == 0:
                first = addr
                self.server_of[addr] = hop.dst
            else:
                targets.append(addr)
        return ControlPath(dev, first, targets, route)

    def _accept(self):
        return _Link(self, None)

    def _link(self, key):
        """The open link for key, dialing it when needed (registered links cannot be dialed)."""
        link = self.links.get(key)
        if link is not None and link.closed is None:
            return link
        if key.startswith(REGISTERED):
            link = self._registered.get(key[len(REGISTERED):])
            if link is None or link.closed is not None:
                return None
            return link
        link = _Link(self, key)
        try:
            link.conn = self._dial(key, link)
        except (OSError, ValueError, IndexError) as e:
            link.closed = "cannot connect to %s: %s" % (key, e)
            self.links[key] = link
            return None
        self.links[key] = link
        return link

    def _dial(self, address, protocol):
        """A connection to address. Unix sockets connect at once (blocking, bounded): a refused
        local connect then raises here, where the caller reports it."""
        kind = transport.parse_address(address)
        server = self.server_of.get(address)
        if self.creds is not None and server is not None:
            from sensormesh.device.secure import hello
            try:   # an unknown or revoked name is found out here, without a connection
                self.creds.trust.lookup(server, "device")
            except HandshakeError as e:
                raise ValueError("%s; %s" % (e.message.replace("this side's", "the controller's"), NOT_DIALED))
            if kind[0] != "unix":
                conn = hello.dial(self.loop, address, protocol, self.creds, server)
                if not conn.closed and conn.protocol is not protocol:
                    conn.protocol = _HelloWatch(conn.protocol, protocol)
                return conn
        if kind[0] != "unix":
            return transport.dial(self.loop, address, protocol)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(kind[1])
        except OSError:
            sock.close()
            raise
        if self.creds is not None and server is not None:
            from sensormesh.device import codec
            from sensormesh.device.secure import hello
            d = hello.Dialer(hello.client_keys(self.creds), self.loop, protocol,
                              server, None, None, codec.DEFAULT_MAX_FRAME, None)
            conn = transport.Connection(self.loop, sock, _HelloWatch(d, protocol), peer=address)
            hello.start(d, conn)
            return conn
        return transport.Connection(self.loop, sock, protocol, peer=address)

    # -- requests ------------------------------------------------------------------------------

    def _send(self, device, msg, keys, timeout=None):
        """Send msg to device along its control path; returns the Request for its reply."""
        t = self.timeout if timeout is None else timeout
        req = Request(device, keys, time.monotonic() + t)
        if req.deadline < self._next_expiry:
            self._next_expiry = req.deadline
        path = self.paths.get(device)
        if path is None or device in self.cut_off:
            req.finish(error="the controller has no control route to %s" % device)
            return req
        if self.creds is not None:
            try:   # a device the controller cannot authenticate is found out before any connection
                self.creds.trust.lookup(device, "device")
            except HandshakeError as e:
                req.finish(error="the controller cannot authenticate %s: %s (%s); %s"
                           % (device, e.message.replace("this side's", "the controller's"), e.code, NOT_DIALED))
                return req
        link = self._link(path.first)
        if link is None:
            why = self.links[path.first].closed if path.first in self.links else \
                "%s has not registered with the controller" % device
            if path.first not in self.links and self._listener is None and path.first.startswith(REGISTERED):
                why += " (%s)" % NO_LISTENER
            req.finish(error="cannot reach %s (%s): %s" % (device, path.describe(), why))
            return req
        self.queues.setdefault(device, deque()).append(req)
        try:
            self._forward(link, path.first, path.targets, path.names, msg, int(t * 1000))
        except HandshakeError as e:
            self._drop_request(req, "%s: %s" % (device, session_failed(e.code, e.message)))
        except codec.ProtocolError as e:
            self._drop_request(req, "cannot send to %s (%s): %s" % (device, path.describe(), e))
        return req

    def _post(self, device, msg):
        """Send msg to device along its control path, expecting no answer (a confirmation of
        callback values); if the path is gone the device sends them again on the next one."""
        path = self.paths.get(device)
        if path is None or device in self.cut_off:
            return
        link = self._link(path.first)
        if link is None:
            return
        try:
            self._forward(link, path.first, path.targets, path.names, msg, int(self.timeout * 1000))
        except (HandshakeError, codec.ProtocolError):
            pass

    def _forward(self, link, first, targets, names, msg, ms):
        """Send msg over link to the device at the end of (first, targets): one forward per
        gateway. With creds each level carries a token of the controller's own session with that
        level's device, so every gateway relays what only that device can read; a device's first
        forwarded message is that session's hello, and what is sent before its welcome waits."""
        if not targets:
            link.conn.send(msg)
            return
        fw = {"to": targets[-1], "timeout": ms}
        if self.creds is None:
            fw["message"] = msg
        else:
            key = (first, targets)
            st = self.e2e.get(key)
            if st is not None and not st.up and time.monotonic() > st.deadline:
                st = None                       # no welcome in time: start again
            if st is None:
                cs = self.creds.client(names[-1])
                fw["message"] = cs.start()      # HandshakeError if the controller does not trust it
                st = self.e2e[key] = _E2E(cs, time.monotonic() + ms / 1000.0, link, names)
                st.held.append((msg, ms))
            elif not st.up:
                st.held.append((msg, ms))
                return
            else:
                fw["token"] = st.cs.wrap(codec.dumps(msg)).decode()
        self._forward(link, first, targets[:-1], names[:-1], {"forward": fw}, ms)

    def _open(self, first, targets, f):
        """The message inside one level of "forwarded" from the device at (first, targets),
        opened with the controller's session with it; None when there is nothing more to do
        (a handshake reply handled here, or something refused)."""
        key = (first, targets)
        st = self.e2e.get(key)
        dev = self.by_key.get(key) or str(targets[-1])
        if st is None:
            return None                         # no session of ours: a late reply
        token = f.get("token")
        if not st.up:
            if token is None:
                self._welcome(key, st, dev, f.get("message"))
            return None
        if type(token) is not str:
            self._e2e_failed(key, dev, "a plaintext message came through the gateway inside the secure "
                                       "session (refused)")
            return None
        try:
            return codec.decode_payload(st.cs.unwrap(token.encode()))
        except (codec.ProtocolError, UnicodeError) as e:
            self._e2e_failed(key, dev, "%s" % (e.args[0] if e.args else e))
            return None

    def _welcome(self, key, st, dev, msg):
        try:
            st.cs.receive(msg)
        except HandshakeError as e:
            self.e2e.pop(key, None)
            if plaintext_answer(msg):
                self._fail_queue(dev, runs_without_keys(dev), code=PLAINTEXT)
            else:
                self._fail_queue(dev, session_failed(e.code, e.message))
            return
        st.up = True
        held, st.held = st.held, []
        for m, ms in held:
            if st.link.conn is None or st.link.conn.closed:
                break
            try:
                self._forward(st.link, key[0], key[1], st.names, m, ms)
            except (HandshakeError, codec.ProtocolError) as e:
                self._fail_queue(dev, "cannot send: %s" % e)

    def _e2e_failed(self, key, dev, why):
        self._drop_e2e(key[0], key[1])
        self._fail_queue(dev, "secure session broken: %s" % why)

    def _drop_e2e(self, first, prefix=()):
        """Forget the sessions over link `first` with the device at prefix and those behind it."""
        n = len(prefix)
        for k in [k for k in self.e2e if k[0] == first and k[1][:n] == prefix]:
            del self.e2e[k]

    def _room(self, device):
        """Bytes of JSON one control message to device may take on every link of its control
        path: the frame every device accepts (codec.MIN_MAX_FRAME), less what each keyed link's
        token and each gateway's forward add around it."""
        path = self.paths.get(device)
        room = codec.MIN_MAX_FRAME
        for i in range(1 + (len(path.targets) if path is not None else 0)):
            if i:
                room -= FORWARD_OVERHEAD
            if self.creds is not None:
                room = plain_limit(room)
        return room

    def _send_deploy(self, device, assignment, timeout=None):
        """Send device its assignment: one deploy message when it fits the control path, else
        in parts (sensormesh/device/runtime/parts.py), each sent once the device has received
        the one before; the device applies it only when the last one is in. Returns a Request
        that finishes with the answer to the last part (or the first error)."""
        msg = {"deploy": {"assignment": assignment, "acks": True}}
        room = self._room(device)
        if len(codec.dumps(msg)) <= room:
            return self._send(device, msg, ("deployed",), timeout)
        ident = ("%s@%s" % (assignment.get("pipeline"), assignment.get("epoch")))[:64]
        msgs = assignment_parts.split(codec.dumps(assignment).decode(), room, ident)
        t = self.timeout if timeout is None else timeout
        whole = Request(device, ("deployed",), time.monotonic() + t * len(msgs))
        self._send_part(whole, msgs, 0, timeout)
        return whole

    def _send_part(self, whole, msgs, i, timeout):
        if whole.done:               # given up (its time ran out)
            return
        last = i == len(msgs) - 1
        r = self._send(whole.device, msgs[i], ("deployed",) if last else ("received",), timeout)

        def answered(r):
            if r.error is not None:
                whole.finish(error=r.error, link_lost=r.link_lost, code=r.code, answered=r.answered)
            elif last:
                whole.finish(reply=r.reply)
            else:
                self._send_part(whole, msgs, i + 1, timeout)
        if r.done:
            answered(r)
        else:
            r.on_done = answered

    def _wait(self, reqs, timeout=None):
        """Run the loop until every request is answered or its time is up (then: timeout)."""
        reqs = [r for r in reqs if r is not None]
        if not reqs:
            return reqs
        deadline = max(r.deadline for r in reqs)
        t = self.timeout if timeout is None else timeout
        deadline = min(deadline, time.monotonic() + t)
        why = None
        while not all(r.done for r in reqs):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            why = self._ending()
            if why:
                break
            self.loop.run_once(min(int(left * 1000) + 1, 50))
            self._expire()
        for r in reqs:
            if r.done:
                continue
            if why:      # not the device's fault: the run ends (no miss counted against it)
                self._drop_request(r, "no answer from %s before the run ended (%s)" % (r.device, why))
            else:
                self._drop_request(r, "no answer from %s within %gs" % (r.device, t), expired=True)
        return reqs

    def _call(self, device, msg, keys, timeout=None):
        req = self._wait([self._send(device, msg, keys, timeout)], timeout)[0]
        if req.error is not None:
            raise SupervisorError(req.error)
        return req.reply

    def _drop_request(self, req, error, expired=False):
        q = self.queues.get(req.device)
        if q is not None and req in q:
            q.remove(req)
        req.finish(error=error, expired=expired)

    def _expire(self):
        """Requests past their deadline fail. Called at every turn of the loop: it looks at the
        queues only once the earliest deadline it saw has passed (a request sent since then has
        a later one: every request waits at most `timeout`)."""
        now = time.monotonic()
        if now < self._next_expiry:
            return
        nxt = now + self.timeout
        for dev, q in self.queues.items():
            while q and q[0].deadline < now and not q[0].done:
                r = q.popleft()
                r.finish(error="no answer from %s within %gs" % (dev, self.timeout), expired=True)
            if q and q[0].deadline < nxt:
                nxt = q[0].deadline
        self._next_expiry = nxt

    # -- incoming --------------------------------------------------------------------------------

    def _link_message(self, link, msg):
        if link.key is None:                      # an accepted connection: must register first
            body = msg.get("register") if type(msg) is dict else None
            name = body.get("name") if type(body) is dict else None
            if not isinstance(name, str) or not name:
                link.conn.send({"error": {"code": "bad-request",
                                          "message": "this is a controller: register first"}})
                link.conn.close_after_flush("not a registration")
                return
            old = self._registered.get(name)
            link.key = REGISTERED + name
            self._registered[name] = link
            self.links[link.key] = link
            link.conn.send({"registered": {"name": name, "by": CONTROLLER}})
            if self.creds is not None:       # the device is the server of the handshake
                from sensormesh.device.secure import hello
                d = hello.Dialer(hello.client_keys(self.creds), self.loop, link,
                                  name, None, None, codec.DEFAULT_MAX_FRAME, None)
                link.conn.protocol = d
                hello.start(d, link.conn)
            if old is not None and old.conn is not None and old is not link:
                old.conn.close("replaced by a new registration")
            return
        chain = []
        while type(msg) is dict and len(msg) == 1 and "forwarded" in msg:
            f = msg["forwarded"]
            if type(f) is not dict:
                break
            chain.append(f.get("from"))
            msg = f.get("message")
            if self.creds is not None:
                msg = self._open(link.key, tuple(chain), f)
                if msg is None:
                    return
        if type(msg) is dict and "error" in msg and type(msg["error"]) is dict \
                and msg["error"].get("code") == "unreachable" and msg["error"].get("to"):
            self._drop_e2e(link.key, tuple(chain) + (msg["error"]["to"],))
            dev = self.by_key.get((link.key, tuple(chain) + (msg["error"]["to"],)))
            if dev is not None:
                self._fail_queue(dev, msg["error"].get("message") or "unreachable")
                self._suspect(dev, msg["error"].get("message") or "unreachable")
                return
        dev = self.by_key.get((link.key, tuple(chain)))
        if dev is None:
            return                                # a late reply over a path no longer in use
        if type(msg) is dict and "deliver" in msg:
            d = msg["deliver"]
            if type(d) is not dict:
                return
            values, confirm = self.deliveries.take(dev, d, via=link)
            if confirm is not None:
                self._post(dev, confirm)
            for text in self.deliveries.news():
                self._event(text)
            if not values:
                return
            if self._on_deliver is None:
                self.pending.append((dev, {"deliver": dict(d, values=values)}))
            else:
                self._user_call(self._on_deliver, dev, d.get("step"), values)
            return
        q = self.queues.get(dev)
        if type(msg) is dict and "status" in msg and type(msg["status"]) is dict:
            self.last_status[dev] = msg["status"]
        if q:
            head = q[0]
            if type(msg) is dict and "error" not in msg and not any(k in msg for k in head.keys):
                # A device may answer out of order (a reply it holds for a moment, waiting for a
                # handshake to end or for heap free, while it answers the next request): the
                # reply is the oldest waiting request's that takes its key.
                later = next((r for r in q if any(k in msg for k in r.keys)), None)
                if later is not None:
                    q.remove(later)
                    later.finish(reply=msg)
                    return
            if type(msg) is dict and ("error" in msg or any(k in msg for k in head.keys)):
                q.popleft()
                if "error" in msg:
                    e = msg["error"]
                    code = e.get("code") if isinstance(e, dict) else None
                    if code == "malformed" and link.plaintext and not chain:
                        # the Dialer's "expected a welcome": the device answered in plaintext
                        head.finish(error="%s: %s" % (dev, runs_without_keys(dev)), code=PLAINTEXT)
                        self._fail_queue(dev, runs_without_keys(dev), code=PLAINTEXT)
                    elif code in HANDSHAKE_CODES:
                        head.finish(error="%s: %s" % (dev, session_failed(e["code"], e.get("message"))), code=code)
                    else:       # the device's own error answer to this request
                        head.finish(error="%s: %s" % (dev, e.get("message", e) if isinstance(e, dict) else e),
                                    code=code, answered=code != "unreachable")
                else:
                    head.finish(reply=msg)
                return
        if type(msg) is dict and "error" in msg:
            e = msg["error"]
            self._event("device %s: %s" % (dev, e.get("message", e) if isinstance(e, dict) else e))

    def _fail_queue(self, dev, why, link_lost=False, code=None):
        q = self.queues.get(dev)
        while q:
            q.popleft().finish(error="%s: %s" % (dev, why), link_lost=link_lost, code=code)

    def _link_closed(self, link, reason):
        if link.key is None:
            return
        self._drop_e2e(link.key)
        if link.key.startswith(REGISTERED):
            name = link.key[len(REGISTERED):]
            if self._registered.get(name) is link:
                del self._registered[name]
        for (key, targets), dev in list(self.by_key.items()):
            if key == link.key:
                if dev in self.deployed:
                    self.unsubscribed[dev] = None    # subscribed again on its next session (reroute.py)
                self._fail_queue(dev, "control connection %s closed: %s" % (link.key, reason), True)
                if not targets:
                    self._suspect(dev, "its control session closed (%s)" % reason)


    def _close_links(self):
        for link in list(self.links.values()) + list(self._registered.values()):
            if link.conn is not None and not link.conn.closed:
                link.conn.close("controller done")
        self.links = {}
        self._registered = {}
        self.e2e = {}
        if self._listener is not None:
            self._listener.close()
            self._listener = None
