"""The supervisor: deploys a placement along the controller's control routes and keeps it running.

    sup = Supervisor(model, "optimal", timeout=5.0)      # or Supervisor(model, placement)
    sup.deploy()                                          # all or nothing, downstream first
    sup.watch(on_deliver, until, on_event=print)          # deliveries, failures, re-routes
    per_device, areas = sup.status()
    final = sup.stop(); sup.close()

How it reaches a device follows `topology.control_routes()` (docs/topology.md):

  * direct / local: the controller dials the device and opens a control session (`hello`);
  * forwarded: the controller's session with the first gateway carries
    `{"forward": {"to": ADDR, "message": M}}` (nested once per further gateway); replies come
    back wrapped in `{"forwarded": {"from": ADDR, "message": ...}}` (sensormesh/device/forward.py).
    With keys (`creds`) the controller runs a session of its own with every device, end to end:
    the hello and the welcome travel as "message", then each level is a "token" of the
    controller's session with that hop's device, which the gateways relay without reading;
  * register: the device dials out. To a gateway: the gateway forwards to its name. To the
    controller: give `listen="host:port"` and configure the device with `register:` that address
    (with keys the controller then runs the client side of the handshake on that connection).

Everything runs on one `transport.Loop` in the calling thread; every wait is bounded by
`timeout` seconds. While watching, each device gets a `status` request every `interval`
seconds; a device whose session closes, that does not answer within `timeout`, or that a
gateway reports unreachable is checked once more and, failing that, counted as failed. Then:

  1. `topology.affected_by(failed, pipes, steps)` describes the damage; its sentences go to
     `on_event` (and stay in `status()`);
  2. control of devices behind the failed gateway moves to their new control route (and their
     callback deliveries are subscribed again there);
  3. the placement is redone on the degraded network: steps stay where they are and broken
     pipes take another route (`re-routed`); when steps were lost with a failed device the
     whole pipeline is placed again on what is left. Devices whose assignment changed, and every
     device piped to them (pipes check the epoch), are stopped (their final pipe counts give
     the values lost), then deployed at a new epoch and started downstream first;
  4. what has no route left is reported as a cut-off area and left alone; the rest keeps
     running.
"""
from __future__ import annotations

import socket
import time
from collections import deque
from typing import Callable

from sensormesh.device import codec, transport
from sensormesh.controller.deploy import DeployError, device_order, dispatch
from sensormesh.controller.errors import PipelineError
from sensormesh.controller.keys import add_pipe_peers
from sensormesh.controller.routing import RoutingError, hop_address, hop_edge_id
from sensormesh.controller.topology import CONTROLLER, Route, Topology
from sensormesh.device.secure.handshake import HandshakeError

# Refusals of a secure session (handshake.CODES but the connection limits): reported with their code.
HANDSHAKE_CODES = ("unknown-key", "bad-signature", "stale-timestamp", "replay", "revoked", "wrong-role",
                   "malformed", "plaintext-refused")

DEFAULT_TIMEOUT = 5.0
PING_INTERVAL = 1.0
REGISTERED = "registered:"        # link key prefix of a device that dialed in to register


class SupervisorError(DeployError):
    """Deployment along the control routes failed (a device unreachable or refusing)."""


class Request:
    """One control message sent to one device, waiting for a reply with one of `keys`."""

    __slots__ = ("device", "keys", "deadline", "reply", "error", "done", "link_lost")

    def __init__(self, device, keys, deadline):
        self.device = device
        self.keys = keys
        self.deadline = deadline
        self.reply = None
        self.error = None
        self.done = False
        self.link_lost = False      # failed because the controller's connection (to a gateway) closed

    def finish(self, reply=None, error=None, link_lost=False):
        if not self.done:
            self.done = True
            self.reply = reply
            self.error = error
            self.link_lost = link_lost


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


class _Link:
    """Protocol object of one connection the controller holds."""

    def __init__(self, sup, key):
        self.sup = sup
        self.key = key
        self.conn = None
        self.closed = None

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


def _strip_epoch(asg):
    if asg is None:
        return None
    return {k: v for k, v in asg.items() if k != "epoch"}


def _hop_edges(asg):
    """Edge ids of every pipe end in an assignment."""
    out = set()
    for s in (asg or {}).get("steps", []):
        if s.get("type") in ("pipe_in", "pipe_out"):
            e = (s.get("params") or {}).get("edge")
            if e is not None:
                out.add(e)
    return out


class Supervisor:
    """Deploys a model's placement along the control routes, watches it, re-routes on failure.

    model: a controller Model (its `topology`, or one domain when it has no `network:`).
    placement: a Placement, or a strategy name ("central", "edge", "optimal") to place with.
    addresses: {device: "host:port" | "unix:PATH"} the controller dials for that device's own
        control session (overrides the inventory, e.g. ports chosen by `sensormesh up`).
    timeout: seconds any one wait may take. interval: seconds between status requests while
    watching. listen: "host:port" where devices that must dial out register with the controller.
    epoch: the first deployment's epoch (default: seconds since 1970, so a redeploy is newer).
    creds: the controller's credentials (controller/keys.load_controller): every control link
        then runs the handshake and carries Fernet tokens (devices with keys refuse anything else);
        a device behind gateways gets a session of its own with the controller, end to end, the
        gateways relaying its tokens; a device that registers with the controller is the server
        of the handshake on the connection it opened."""

    def __init__(self, model, placement="optimal", addresses=None, timeout=DEFAULT_TIMEOUT,
                 interval=PING_INTERVAL, listen=None, epoch=None, place_options=None, creds=None):
        self.model = model
        self.creds = creds       # session.Credentials of the controller: authenticated, encrypted links
        self.server_of = {}      # link address -> the device listening there (whom the handshake expects)
        self.topology = model.topology if model.topology is not None else \
            Topology.single_domain(list(model.devices))
        self._place_options = dict(place_options or {})
        if isinstance(placement, str):
            self.strategy = placement
            self.placement = None
        else:
            self.strategy = placement.strategy
            self.placement = placement
        self.overrides = dict(addresses or {})
        self.timeout = float(timeout)
        self.interval = float(interval)
        self.epoch = int(time.time()) if epoch is None else int(epoch)
        self.loop = transport.Loop()
        self.links = {}          # link key -> _Link
        self.queues = {}         # device -> deque of Requests
        self.by_key = {}         # (link key, targets) -> device
        self.paths = {}          # device -> ControlPath
        self.lost_paths = {}     # device -> the ControlPath it had before a failure cut it off
        self.assignments = {}    # device -> assignment it runs (as deployed)
        self.deployed = set()    # devices running our assignment
        self.failed = set()      # devices found down
        self.cut_off = set()     # devices the controller cannot reach any more
        self.impact = None       # topology.Impact of the failures so far
        self.events = []         # every event text, in order
        self.losses = []         # one dict per pipe that lost values in a re-route
        self.reroutes = 0
        self.recoveries = 0      # redeployments after failed devices answered again
        self.recover_every = 5 * self.interval   # seconds between probes of the failed devices
        self._original = None    # the placement of the first deployment (restored once all are back)
        self.last_status = {}    # device -> last status reply
        self.info = {}           # device -> its answer to hello (name, implementation, sensors)
        self.pending = []        # (device, message) delivered before watch() had a callback
        self._suspects = {}      # device -> why
        self._pings = {}         # device -> outstanding status Request
        self._on_deliver = None
        self._on_event = None
        self._handling = False
        self._listener = None
        self._registered = {}    # name -> _Link of devices that registered with the controller
        self.e2e = {}            # (link key, targets) -> _E2E: sessions with devices behind gateways
        if listen:
            kind, host, port = transport.parse_address(listen)
            self._listener = transport.listen_tcp(self.loop, host, port, self._accept)
        self._set_paths(self.topology)

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
            from sensormesh.device import secure
            if kind[0] != "unix":
                return secure.dial(self.loop, address, protocol, self.creds, server)
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
            from sensormesh.device import codec, secure
            d = secure.Dialer(secure.ClientKeys(self.creds, secure.DEFAULT_HANDSHAKE_MS), self.loop, protocol,
                              server, None, None, codec.DEFAULT_MAX_FRAME, None)
            conn = transport.Connection(self.loop, sock, d, peer=address)
            d.start(conn)
            return conn
        return transport.Connection(self.loop, sock, protocol, peer=address)

    # -- requests ------------------------------------------------------------------------------

    def _send(self, device, msg, keys, timeout=None):
        """Send msg to device along its control path; returns the Request for its reply."""
        t = self.timeout if timeout is None else timeout
        req = Request(device, keys, time.monotonic() + t)
        path = self.paths.get(device)
        if path is None or device in self.cut_off:
            req.finish(error="the controller has no control route to %s" % device)
            return req
        link = self._link(path.first)
        if link is None:
            why = self.links[path.first].closed if path.first in self.links else \
                "%s has not registered with the controller" % device
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
            why = e.message
            if isinstance(msg, dict) and "info" in msg:
                why = "it answered in plaintext: it runs without keys (or with --insecure)"
            self.e2e.pop(key, None)
            self._fail_queue(dev, session_failed(e.code, why))
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

    def _wait(self, reqs, timeout=None):
        """Run the loop until every request is answered or its time is up (then: timeout)."""
        reqs = [r for r in reqs if r is not None]
        if not reqs:
            return reqs
        deadline = max(r.deadline for r in reqs)
        t = self.timeout if timeout is None else timeout
        deadline = min(deadline, time.monotonic() + t)
        while not all(r.done for r in reqs):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.loop.run_once(min(int(left * 1000) + 1, 50))
            self._expire()
        for r in reqs:
            if not r.done:
                self._drop_request(r, "no answer from %s within %gs" % (r.device, t))
        return reqs

    def _call(self, device, msg, keys, timeout=None):
        req = self._wait([self._send(device, msg, keys, timeout)], timeout)[0]
        if req.error is not None:
            raise SupervisorError(req.error)
        return req.reply

    def _drop_request(self, req, error):
        q = self.queues.get(req.device)
        if q is not None and req in q:
            q.remove(req)
        req.finish(error=error)

    def _expire(self):
        now = time.monotonic()
        for dev, q in self.queues.items():
            while q and q[0].deadline < now and not q[0].done:
                r = q.popleft()
                r.finish(error="no answer from %s within %gs" % (dev, self.timeout))

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
                from sensormesh.device import secure
                d = secure.Dialer(secure.ClientKeys(self.creds, secure.DEFAULT_HANDSHAKE_MS), self.loop, link,
                                  name, None, None, codec.DEFAULT_MAX_FRAME, None)
                link.conn.protocol = d
                d.start(link.conn)
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
            if self._on_deliver is None:
                self.pending.append((dev, msg))
            else:
                d = msg["deliver"]
                self._on_deliver(dev, d.get("step"), d.get("values", []))
            return
        q = self.queues.get(dev)
        if type(msg) is dict and "status" in msg and type(msg["status"]) is dict:
            self.last_status[dev] = msg["status"]
        if q:
            head = q[0]
            if type(msg) is dict and ("error" in msg or any(k in msg for k in head.keys)):
                q.popleft()
                if "error" in msg:
                    e = msg["error"]
                    if isinstance(e, dict) and e.get("code") in HANDSHAKE_CODES:
                        head.finish(error="%s: %s" % (dev, session_failed(e["code"], e.get("message"))))
                    else:
                        head.finish(error="%s: %s" % (dev, e.get("message", e) if isinstance(e, dict) else e))
                else:
                    head.finish(reply=msg)
                return
        if type(msg) is dict and "error" in msg:
            e = msg["error"]
            self._event("device %s: %s" % (dev, e.get("message", e) if isinstance(e, dict) else e))

    def _fail_queue(self, dev, why, link_lost=False):
        q = self.queues.get(dev)
        while q:
            q.popleft().finish(error="%s: %s" % (dev, why), link_lost=link_lost)

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
                self._fail_queue(dev, "control connection %s closed: %s" % (link.key, reason), True)
                if not targets:
                    self._suspect(dev, "its control session closed (%s)" % reason)

    def _suspect(self, dev, why):
        if dev in self.failed or dev in self.cut_off:
            return
        if self._on_event is not None and (dev in self.deployed or self._forwards_for_deployed(dev)):
            self._suspects.setdefault(dev, why)

    def _forwards_for_deployed(self, dev):
        for d in self.deployed:
            p = self.paths.get(d)
            if p is not None and p.route is not None and dev in p.route.relays:
                return True
        return False

    def _event(self, text):
        self.events.append(text)
        if self._on_event is not None:
            self._on_event(text)

    # -- deployment ------------------------------------------------------------------------------

    def place(self):
        """The placement in use (placed now if the Supervisor was given a strategy)."""
        if self.placement is None:
            self.placement = self.model.place(self.strategy, **self._place_options)
        return self.placement

    def _hello(self, devices, timeout=None):
        """Open control sessions (parents first); returns {device: error text} for failures."""
        errors = {}
        depth = lambda d: len(self.paths[d].targets) if d in self.paths else 0  # noqa: E731
        for d in devices:
            if d not in self.paths:
                errors[d] = "the controller has no control route to %s: %s" % (
                    d, self._why_unreachable(d))
        waiting = [d for d in devices if d in self.paths and self.paths[d].first.startswith(REGISTERED)]
        if waiting:      # devices that dial the controller: wait (bounded) until they registered
            t = self.timeout if timeout is None else timeout
            self.loop.run_until(lambda: all(self._link(self.paths[d].first) is not None for d in waiting),
                                int(t * 1000))
        for level in sorted({depth(d) for d in devices if d in self.paths}):
            batch = []
            for d in devices:
                if d in self.paths and depth(d) == level:
                    p = self.paths[d]
                    down = [g for g in (p.route.relays if p.route is not None else ()) if g in errors]
                    if down:
                        errors[d] = "device %s (%s) is not reachable: its gateway %s is not" % (
                            d, p.describe(), down[0])
                    else:
                        batch.append(d)
            reqs = {d: self._send(d, {"hello": {}}, ("info",), timeout) for d in batch}
            self._wait(list(reqs.values()), timeout)
            for d, r in reqs.items():
                if r.error is not None:
                    p = self.paths[d]
                    where = "at %s" % p.first if not p.targets else "(%s)" % p.describe()
                    errors[d] = "device %s %s is not reachable: %s" % (d, where, r.error)
                else:
                    self.info[d] = r.reply["info"]
        return errors

    def _why_unreachable(self, d):
        if d in getattr(self, "path_errors", {}):
            return self.path_errors[d]
        if self.topology.control_route(d) is None:
            return "the network: section gives it no control route"
        return "it is behind %s, which failed" % ", ".join(sorted(self.failed)) if self.failed else "unknown"

    def control_devices(self, devices):
        """devices plus every gateway their control goes through, parents first."""
        out = []
        for d in devices:
            p = self.paths.get(d)
            for r in (p.route.relays if p is not None and p.route is not None else ()):
                if r not in out:
                    out.append(r)
        for d in devices:
            if d not in out:
                out.append(d)
        return out

    def deploy(self, epoch=None):
        """Place (if given a strategy), deploy every assignment and start them downstream first.
        All or nothing: if a device is unreachable or refuses, the ones already deployed are
        stopped again and SupervisorError (a DeployError) names the device and its route."""
        pl = self.place()
        if epoch is not None:
            self.epoch = int(epoch)
        asg = add_pipe_peers(pl.assignments(epoch=self.epoch, include_empty=False))
        if not asg:
            raise SupervisorError("nothing to deploy: the placement gives no device a step")
        errors = self._hello(self.control_devices(list(asg)))
        if errors:
            self.close()
            raise SupervisorError("; ".join(errors[d] for d in sorted(errors)))
        if epoch is None:
            # newer than whatever the devices run, even for two deployments in one second:
            # pipes refuse peers of another epoch, so old connections never join the new one
            running = []
            for d in asg:
                try:
                    st = self._call(d, {"status": {}}, ("status",)).get("status") or {}
                except SupervisorError:
                    continue
                e = (st.get("assignment") or {}).get("epoch")
                if isinstance(e, int):
                    running.append(e)
            if running and max(running) >= self.epoch:
                self.epoch = max(running) + 1
                asg = add_pipe_peers(pl.assignments(epoch=self.epoch, include_empty=False))
        order = device_order(asg)
        done = []
        try:
            for phase, msg_of, key in (("deploy", lambda d: {"deploy": {"assignment": asg[d]}}, "deployed"),
                                       ("start", lambda d: {"start": {}}, "started")):
                for d in order:
                    try:
                        self._call(d, msg_of(d), (key,))
                    except SupervisorError as e:
                        verb = "refused its assignment" if phase == "deploy" else "did not start"
                        raise SupervisorError("device %s (%s) %s: %s" % (
                            d, self.paths[d].describe(), verb, e)) from None
                    if phase == "deploy":
                        done.append(d)
        except SupervisorError:
            for d in reversed(done):
                self._wait([self._send(d, {"stop": {}}, ("stopped",))])
            self.close()
            raise
        self.assignments = dict(asg)
        self.deployed = set(asg)
        if self._original is None:
            self._original = pl
        return order

    # -- watching --------------------------------------------------------------------------------

    def watch(self, on_deliver: Callable[[str, str, list], None], until: Callable[[], bool],
              timeout: float | None = None, on_event: Callable[[str], None] | None = None) -> None:
        """Read deliveries and watch the devices until until() is true (or timeout seconds pass).

        on_deliver(device, step, values): callback-sink values. on_event(text): failures, the
        affected area, re-routes and the values they lost (also kept in self.events)."""
        if on_event is None:
            on_event = lambda text: on_deliver("", "", [{"error": text}])  # noqa: E731
        self._on_deliver, self._on_event = on_deliver, on_event
        try:
            for dev, m in self.pending:
                dispatch(dev, m, on_deliver, on_event)
            self.pending = []
            deadline = None if timeout is None else time.monotonic() + timeout
            next_ping = time.monotonic() + self.interval
            next_probe = time.monotonic() + self.recover_every
            while not until():
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    return
                if now >= next_ping:
                    self._ping()
                    next_ping = now + self.interval
                wait = min(next_ping - now, 0.05)
                if deadline is not None:
                    wait = min(wait, deadline - now)
                self.loop.run_once(max(0, int(wait * 1000)))
                self._expire()
                self._check_pings()
                if self._suspects and not self._handling:
                    self._handle_suspects()
                if self.failed and not self._handling and time.monotonic() >= next_probe:
                    self._probe_failed()
                    next_probe = time.monotonic() + self.recover_every
        finally:
            self._on_deliver, self._on_event = None, None

    def _watched(self):
        return [d for d in self.control_devices(sorted(self.deployed))
                if d not in self.failed and d not in self.cut_off]

    def _ping(self):
        for d in self._watched():
            r = self._pings.get(d)
            if r is None or r.done:
                self._pings[d] = self._send(d, {"status": {}}, ("status",))

    def _check_pings(self):
        for d, r in list(self._pings.items()):
            if r.done:
                del self._pings[d]
                if r.error is not None and not r.link_lost:   # a closed link suspects its own end
                    self._suspect(d, r.error)

    def _handle_suspects(self):
        """Check the suspects once more (gateways first); the ones that stay silent failed."""
        self._handling = True
        try:
            for _ in range(len(self.model.devices) + 1):
                suspects, self._suspects = self._suspects, {}
                suspects = {d: w for d, w in suspects.items() if d not in self.failed and d not in self.cut_off}
                if not suspects:
                    return
                order = sorted(suspects, key=lambda d: len(self.paths[d].targets) if d in self.paths else 0)
                down = {}
                for d in order:
                    p = self.paths.get(d)
                    if p is not None and p.route is not None and set(p.route.relays) & set(down):
                        continue          # behind a gateway that failed: handled by its re-route
                    if self._hello([d]):
                        down[d] = suspects[d]
                    else:
                        self._event("%s answered again after %s" % (d, suspects[d]))
                if down:
                    for d, why in down.items():
                        self._event("%s failed: %s" % (d, why))
                    self._on_failure(set(down))
        finally:
            self._handling = False

    # -- failures --------------------------------------------------------------------------------

    def _pipes(self, placement):
        return [(p.edge, p.src, p.dst, p.route_obj if isinstance(p.route_obj, Route) else tuple(p.route))
                for p in placement.pipes]

    def _on_failure(self, new_failed):
        self.failed |= set(new_failed)
        pl = self.place()
        for _ in range(len(self.model.devices) + 1):
            impact = self.topology.affected_by(sorted(self.failed), self._pipes(pl), dict(pl.device_of))
            degraded = self.topology.without(self.failed)
            old_paths = dict(self.paths)
            self._set_paths(degraded)
            self.cut_off = set(impact.unreachable)
            # control moves to the new routes: reopen the session, subscribe to deliveries again
            moved = self._moved_control(old_paths)
            errors = self._hello(moved)
            if errors:
                for d, e in errors.items():
                    self._event("%s failed: %s" % (d, e))
                self.failed |= set(errors)
                continue
            self._subscribe(moved)
            break
        self.impact = impact
        for line in impact.lines():
            self._event(line)
        self._reroute(impact)

    def _degraded_link(self, failed):
        """link(a, b) of the network without the failed devices (None: no route)."""
        degraded = self.topology.without(failed)

        def link(a, b):
            if a == b:
                return 0, Route((a,))
            if a in failed or b in failed:
                return None
            return degraded.link(a, b)
        return link

    def _place_with(self, link, old):
        """The whole pipeline placed again with old's strategy and headroom over link."""
        from sensormesh.controller.placement import place
        opts = dict(self._place_options)
        opts.setdefault("cpu_headroom", old.cpu_headroom)
        return place(self.model, old.strategy, link=link, **opts)

    def _moved_control(self, before, skip=()):
        """Deployed devices (and their gateways) still reachable whose control path is no
        longer the one in before."""
        return [d for d in self.control_devices(sorted(self.deployed))
                if d not in self.failed and d not in self.cut_off and d not in skip
                and before.get(d) != self.paths.get(d)]

    def _subscribe(self, devices):
        """Callback deliveries of these devices come to the controller over their (new) paths."""
        for d in devices:
            if d in self.deployed:
                self._wait([self._send(d, {"subscribe": {}}, ("subscribed",))])

    def _replan(self):
        """(new placement, how) on the network without the failed devices."""
        from sensormesh.controller.placement import Placement
        old = self.place()
        failed = set(self.failed)
        link = self._degraded_link(failed)
        note = ""
        if any(d in failed for d in old.device_of.values()):
            try:
                pl = self._place_with(link, old)
                if not any(d in failed for d in pl.device_of.values()):
                    return pl, "placed again without %s" % ", ".join(sorted(failed))
                note = "placing the lost steps again would still need %s" % ", ".join(sorted(failed))
            except PipelineError as e:
                note = "the lost steps cannot be placed again: %s" % e

        def keep(a, b):
            # steps stay; a pipe with no route left keeps its old one (its ends are cut off)
            r = link(a, b)
            return r if r is not None else old.link(a, b)

        pl = Placement(self.model, old.strategy, old.device_of, old.reasons, keep, old.cpu_headroom,
                       old.solver)
        return pl, note or "steps stay where they are"

    def _reroute(self, impact):
        try:
            new_pl, how = self._replan()
        except PipelineError as e:
            self._event("no re-routing: %s; the rest keeps running" % e)
            return
        self._redeploy(new_pl, how, impact)

    def _redeploy(self, new_pl, how, impact=None):
        """Move the running pipeline to new_pl at a new epoch: the devices whose assignment
        changes, and every device piped to them, are stopped (upstream first, losses reported)
        and deployed again (downstream first). impact: the failure that led here, if any."""
        epoch = self.epoch + 1
        new_asg = add_pipe_peers(new_pl.assignments(epoch=epoch, include_empty=False))
        alive = [d for d in self.paths if d not in self.failed and d not in self.cut_off]
        changed = {d for d in alive
                   if _strip_epoch(new_asg.get(d)) != _strip_epoch(self.assignments.get(d))}
        # Pipes join only ends of one epoch: a device that was cut off while its neighbours moved
        # to a newer epoch still runs the old one, so such pairs move too.
        running = {d: (self.assignments.get(d) or {}).get("epoch") for d in alive if d in self.deployed}
        for d in running:
            for e in running:
                if running[d] != running[e] and _hop_edges(new_asg.get(d)) & _hop_edges(new_asg.get(e)):
                    changed |= {d, e}
        if impact is not None and impact.lost_steps and not how.startswith("placed again"):
            self._event("steps lost with %s stay down: %s" % (", ".join(sorted(self.failed)), how))
        if not changed:
            if impact is not None and (impact.areas or any(e.status == "cut" for e in impact.edges)):
                self._event("nothing can be re-routed; the cut-off area stays down until a device "
                            "named above is back; the rest keeps running")
            return
        # pipes check the epoch: everything piped to a changed device moves to the new epoch too
        group = set(changed)
        grow = True
        while grow:
            grow = False
            edges = set()
            for d in group:
                edges |= _hop_edges(self.assignments.get(d)) | _hop_edges(new_asg.get(d))
            for d in alive:
                if d not in group and (_hop_edges(self.assignments.get(d)) | _hop_edges(new_asg.get(d))) & edges:
                    group.add(d)
                    grow = True
        old_run = {d: self.assignments[d] for d in group if d in self.assignments and d in self.deployed}
        final = {}
        for d in reversed(device_order(old_run)):          # upstream first: senders flush first
            r = self._wait([self._send(d, {"stop": {}}, ("stopped",))])[0]
            final[d] = r.reply["stopped"] if r.error is None else {"error": r.error}
        self._report_losses(self.place(), final)
        new_run = {d: new_asg[d] for d in group if d in new_asg}
        order = device_order(new_run)
        for phase, msg_of, key in (("deploy", lambda d: {"deploy": {"assignment": new_run[d]}}, "deployed"),
                                   ("start", lambda d: {"start": {}}, "started")):
            for d in order:
                r = self._wait([self._send(d, msg_of(d), (key,))])[0]
                if r.error is not None:
                    self._event("re-route at epoch %d: %s failed on %s: %s" % (epoch, phase, d, r.error))
                    self._suspect(d, r.error)
                    return
        for d in group:
            if d in new_run:
                self.assignments[d] = new_run[d]
                self.deployed.add(d)
            else:
                self.assignments.pop(d, None)
                self.deployed.discard(d)
        self.epoch = epoch
        self.placement = new_pl
        if impact is None:
            self.recoveries += 1
        else:
            self.reroutes += 1
        moved = [e for e in impact.edges if e.status == "rerouted"] if impact is not None else []
        for e in moved:
            self._event("re-routed edge %s: %s" % (e.edge, e.new_route.explain()))
        self._event("redeployed %s at epoch %d (%s; downstream first)"
                    % (", ".join(order), epoch, how))

    # -- recovery ------------------------------------------------------------------------------

    def _probe_failed(self):
        """Ask each failed device (briefly, over the network without the other failed ones)
        whether it answers again; the ones that do are taken back into the pipeline."""
        self._handling = True
        try:
            before = dict(self.paths)
            back = []
            probe = min(self.timeout, max(1.0, self.interval))
            inv = self.model.routing_inventory()
            for d in sorted(self.failed):
                # only d gets a path for the probe: the others' paths (and replies) stay as they are
                route = self.topology.without(self.failed - {d} - set(back)).control_routes().get(d)
                p = self._path(d, route, inv) if route is not None else None
                if p is None or self.by_key.get(p.key, d) != d:
                    continue
                self.paths[d] = p
                self.by_key[p.key] = d
                if self._hello([d], probe):
                    del self.paths[d]
                    self.by_key.pop(p.key, None)
                else:
                    back.append(d)
            if back:
                self._set_paths(self.topology.without(self.failed - set(back)))
                self._on_recovery(back, before)
        finally:
            self._handling = False

    def _on_recovery(self, back, before):
        self.failed -= set(back)
        for d in back:
            self._event("%s answers again" % d)
        degraded = self.topology.without(self.failed)
        self.cut_off = set(degraded.unreachable()) if self.failed else set()
        # control of the devices behind a device that is back moves to the old routes again
        moved = self._moved_control(before, skip=back)
        errors = self._hello(moved)
        self._subscribe([d for d in moved if d not in errors])
        for d, e in errors.items():
            self._suspect(d, e)
        # a device that is back restarted (it runs nothing) or was cut off (it runs an old epoch):
        # either way it starts afresh
        for d in back:
            if d in self.deployed:
                self._wait([self._send(d, {"stop": {}}, ("stopped",))])
                self.deployed.discard(d)
                self.assignments.pop(d, None)
        pl = self.place()
        self.impact = self.topology.affected_by(sorted(self.failed), self._pipes(pl),
                                                dict(pl.device_of)) if self.failed else None
        try:
            new_pl, how = self._recovery_plan(back)
        except PipelineError as e:
            self._event("%s is back but the pipeline cannot be placed again: %s; the rest keeps running"
                        % (", ".join(back), e))
            return
        self._redeploy(new_pl, how)

    def _recovery_plan(self, back):
        """(placement, how) for the network with the devices that came back."""
        names = ", ".join(back)
        if not self.failed and self._original is not None:
            return self._original, "%s back: the placement before the failures" % names
        failed = set(self.failed)
        pl = self._place_with(self._degraded_link(failed), self.place())
        if any(d in failed for d in pl.device_of.values()):
            return self.place(), "%s back; steps stay where they are (placing them again would need %s)" % (
                names, ", ".join(sorted(failed)))
        return pl, "%s back: placed again without %s" % (names, ", ".join(sorted(failed)))

    def _report_losses(self, placement, final):
        """Per pipe whose both ends were stopped: what the sender took in and the receiver never got."""
        for p in placement.pipes:
            snd, rcv = final.get(p.src), final.get(p.dst)
            if not snd or not rcv or "error" in snd or "error" in rcv:
                if p.src in self.failed or p.dst in self.failed:
                    self._event("edge %s (%s -> %s): values lost with %s are not known (it failed)"
                                % (p.edge, p.src, p.dst, p.src if p.src in self.failed else p.dst))
                continue
            n = len(p.route) - 1
            out_id = "out:" + hop_edge_id(p.edge, 0, n)
            in_id = "in:" + hop_edge_id(p.edge, n - 1, n)
            o = (snd.get("steps") or {}).get(out_id)
            i = (rcv.get("steps") or {}).get(in_id)
            if not isinstance(o, dict) or not isinstance(i, dict):
                continue
            sent, got = o.get("in", 0), i.get("in", 0)
            pending, dropped = o.get("pending", 0), o.get("dropped", 0)
            unshipped = o.get("unshipped", sent - o.get("out", 0) - pending - dropped)
            transit = o.get("out", 0) - got
            loss = {"edge": p.edge, "src": p.src, "dst": p.dst, "route": list(p.route),
                    "sent": sent, "received": got, "lost": sent - got, "in_transit": transit,
                    "pending": pending, "unshipped": unshipped, "dropped": dropped}
            if loss["lost"] == 0 and not set(p.route[1:-1]) & self.failed:
                continue
            self.losses.append(loss)
            via = " through %s" % ", ".join(p.route[1:-1]) if len(p.route) > 2 else ""
            self._event(
                "edge %s (%s -> %s): %d value%s lost: %d sent into the old route%s and never arrived, "
                "%d waiting at %s for a connection (pending), %d in the unshipped rest of the current "
                "time frame, %d dropped on overflow" % (
                    p.edge, p.src, p.dst, loss["lost"], "" if loss["lost"] == 1 else "s", transit, via,
                    pending, p.src, unshipped, dropped))

    # -- status and stop -------------------------------------------------------------------------

    def status(self):
        """(per-device status dicts, affected-area sentences).

        Devices are asked gateways first; one that does not answer while its gateways do is
        counted as failed, and the devices behind it are asked again over their new control
        routes. So a fresh Supervisor (e.g. `sensormesh status FILE`) finds the same areas as a
        watching one. A device the controller cannot reach gets {"error": "..."} saying why."""
        devices = list(self.model.devices)
        out = {}
        refused = {}                  # device -> why it refused the controller's secure session
        for _ in range(len(devices) + 1):
            todo = [d for d in self.control_devices(devices)
                    if d in self.paths and d not in out and d not in self.failed]
            new_failed = set()
            depth = lambda d: len(self.paths[d].targets)  # noqa: E731
            for level in sorted({depth(d) for d in todo}):
                reqs = {}
                for d in todo:
                    behind = set(self.paths[d].route.relays) if self.paths[d].route is not None else set()
                    if depth(d) == level and not behind & (new_failed | self.failed):
                        reqs[d] = self._send(d, {"status": {}}, ("status",))
                self._wait(list(reqs.values()))
                for d, r in reqs.items():
                    if r.error is None:
                        out[d] = r.reply["status"]
                    else:
                        new_failed.add(d)
                        out.pop(d, None)
                        if "secure session failed" in r.error:
                            refused[d] = r.error
            if not new_failed:
                break
            self.failed |= new_failed
            self._set_paths(self.topology.without(self.failed))
        self.cut_off = set(self.topology.without(self.failed).unreachable()) if self.failed else set()
        lines = []
        if self.failed:
            try:
                pl = self.place()
                pipes, steps = self._pipes(pl), dict(pl.device_of)
            except PipelineError:
                pipes, steps = [], {}
            self.impact = self.topology.affected_by(sorted(self.failed), pipes, steps)
            self.cut_off = set(self.impact.unreachable)
            lines = self.impact.lines()
        for d in devices:
            if d in self.failed:
                p = self.paths.get(d) or self.lost_paths.get(d)
                how = p.describe() if p is not None else "its control route"
                if d in refused:
                    out[d] = {"error": "%s does not accept the controller over %s: %s" % (d, how, refused[d])}
                else:
                    out[d] = {"error": "%s is down: it does not answer over %s" % (d, how)}
            elif d not in out:
                out[d] = {"error": "unreachable: " + (self._area_of(d) if d in self.cut_off
                                                       else self._why_unreachable(d))}
        return out, lines

    def _area_of(self, d):
        if self.impact is not None:
            for a in self.impact.areas:
                if d in a.devices:
                    return a.sentence
        return "the controller has no control route to %s" % d

    def stop(self, devices=None, drain_timeout=3.0):
        """Stop the pipeline without losing what is in flight; returns {device: final stats or
        {"error": ...}}.

        devices: the ones to stop (default: the deployed ones; a Supervisor that did not deploy,
        e.g. `sensormesh stop FILE`, stops every device of the model it reaches). Devices stop
        upstream first (each flushes its last frames); before a device stops, the controller
        waits (at most drain_timeout seconds) until each of its pipe_ins has received what the
        already stopped sender sent."""
        if devices is None:
            devices = sorted(self.deployed) if self.deployed else list(self.model.devices)
        known = dict(self.assignments)
        if not known:
            try:
                known = add_pipe_peers(self.place().assignments(epoch=self.epoch, include_empty=False))
            except PipelineError:
                known = {}
        planned = [d for d in reversed(device_order({d: a for d, a in known.items() if d in devices}))]
        order = planned + sorted(d for d in devices if d not in planned)
        outs, ins = {}, {}
        for dev, a in known.items():
            for st in a.get("steps", []):
                edge = (st.get("params") or {}).get("edge")
                if st.get("type") == "pipe_out" and edge is not None:
                    outs[edge] = (dev, st["id"])
                elif st.get("type") == "pipe_in" and edge is not None:
                    ins[edge] = (dev, st["id"])
        sent = {}
        final = {}
        for d in order:
            if d in self.failed or d in self.cut_off:
                final[d] = {"error": "not stopped: %s" % (
                    "it failed" if d in self.failed else self._area_of(d))}
                continue
            waits = [(e, pin) for e, (dev, pin) in ins.items() if dev == d and e in sent]
            deadline = time.monotonic() + drain_timeout
            while waits and time.monotonic() < deadline:
                r = self._wait([self._send(d, {"status": {}}, ("status",))])[0]
                if r.error is not None:
                    break
                steps = (r.reply["status"].get("assignment") or {}).get("steps") or {}
                waits = [(e, p) for e, p in waits if (steps.get(p) or {}).get("in", 0) < sent[e]]
                if waits:            # let the last frames arrive (and deliveries come in)
                    self.loop.run_once(20)
            r = self._wait([self._send(d, {"stop": {}}, ("stopped",))])[0]
            if r.error is not None:
                final[d] = {"error": r.error}
                continue
            final[d] = r.reply["stopped"]
            self.deployed.discard(d)
            for e, (dev, pout) in outs.items():
                if dev == d:
                    sent[e] = ((final[d].get("steps") or {}).get(pout) or {}).get("out", 0)
        return final

    def close(self):
        for link in list(self.links.values()) + list(self._registered.values()):
            if link.conn is not None and not link.conn.closed:
                link.conn.close("controller done")
        self.links = {}
        self._registered = {}
        self.e2e = {}
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
