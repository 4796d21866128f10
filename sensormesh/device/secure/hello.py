# The client side of the handshake: ClientSession (the hello, the welcome's check) and the Dialer
# that runs it in front of a connection's protocol object. A device dialing another one (a pipe)
# loads this module and wire.py for its handshake (and keys.py unless the peer was prepared at
# the deployment: keys.prepare), and forgets them once no dial is in progress (wire.idle()); the
# server side (server.py, admit.py) stays unloaded meanwhile.
import os

from sensormesh.device import codec, transport
from sensormesh.device.secure import DEFAULT_HANDSHAKE_MS, HELLO_MAX_FRAME, busy
from sensormesh.device.secure.channel import b64encode, equal, hmac_sha256, wrap_limit
from sensormesh.device.secure.wire import (_NONCE, CODES, VERSION, HandshakeError, _bin, _body, _check_role, _keys,
                                           _name, _Side, _transcript, idle)


class ClientSession(_Side):
    """Connecting side. start() -> hello to send; receive(reply) -> None when done, or HandshakeError.

    server: the name of the side we connect to (its public key must be in our trust store).
    roles:  the server roles we accept (None: any).
    pairs:  a keys.PairCache shared by this process's connections (None: one for this session).
    known:  instead of trust and pairs, the server's (role, pair key, key fingerprint), already
            looked up in the trust store and computed (a device's prepared dial, keys.prepare).
    """

    def __init__(self, identity, trust, server, roles=None, clock=None, pairs=None, known=None):
        _Side.__init__(self, identity, trust, roles, clock)
        self.server = server
        self.pairs = pairs
        self.known = known
        self._pending = None

    def start(self):
        self._check_state()
        if self._pending is not None:
            raise HandshakeError("malformed", "hello already sent")
        try:
            if self.known is None:
                self.known = self._look_up()
            role, pair, fp = self.known
            _check_role(role, self.roles, "server", self.server)
        except HandshakeError as e:
            self._fail(e)
        me = self.identity.name
        ts = int(self.clock())
        nonce = os.urandom(_NONCE)
        transcript = _transcript(me, self.server, ts, nonce)
        mac = hmac_sha256(pair, transcript)
        self._pending = (pair, nonce, transcript, mac, role, fp)
        return {"hello": {"v": VERSION, "from": me, "to": self.server, "ts": ts,
                          "nonce": b64encode(nonce).decode(), "mac": b64encode(mac).decode()}}

    def _look_up(self):
        role, key = self.trust.lookup(self.server, "server")
        _check_role(role, self.roles, "server", self.server)     # before the costly pair key
        pairs = self.pairs
        if pairs is None:
            from sensormesh.device.secure.keys import PairCache
            pairs = PairCache(1)
        return role, pairs.get(self.identity, key), key.fingerprint()

    def receive(self, msg):
        self._check_state()
        try:
            self._welcome(msg)
        except HandshakeError as e:
            self._fail(e)

    def _welcome(self, msg):
        if self._pending is None:
            raise HandshakeError("malformed", "start() the handshake before receiving")
        if type(msg) is dict and "error" in msg:
            err = msg["error"]
            code = err.get("code") if type(err) is dict else None
            text = err.get("message") if type(err) is dict else None
            if code not in CODES:
                code = "malformed"
            raise HandshakeError(code, "refused by %s: %s" % (self.server, text if type(text) is str else err))
        body = _body(msg, "welcome")
        if body is None:
            raise HandshakeError("malformed", "expected a welcome from %r" % self.server)
        if _name(body, "from") != self.server:
            raise HandshakeError("unknown-key", "welcome comes from %r, expected %r" % (body["from"], self.server))
        snonce = _bin(body, "nonce", _NONCE)
        proof = _bin(body, "proof", 32)
        pair, nonce, transcript, mac, role, fp = self._pending
        c2s, s2c, expect = _keys(pair, nonce, snonce, transcript, mac, self.server)
        if not equal(proof, expect):
            raise HandshakeError("bad-signature", "%r could not prove it holds its private key "
                                 "(wrong key-confirmation proof)" % self.server)
        self._pending = None
        self.peer = self.server
        self.role = role
        self.peer_fp = fp
        self._finish(c2s, s2c)


class ClientKeys:
    """What Dialer needs: an identity, a trust store, a PairCache and the handshake's deadline.
    A process that is not a device (e.g. the controller's loop) takes them from its
    session.Credentials, a device from its secure.Security (dial_device), which may instead know
    the server's role, pair key and fingerprint already (`known`: see ClientSession)."""

    def __init__(self, identity, trust, pairs, handshake_ms=DEFAULT_HANDSHAKE_MS, known=None):
        self.identity = identity
        self.trust = trust
        self.pairs = pairs
        self.handshake_ms = handshake_ms
        self.known = known


def dial(loop, address, protocol, creds, server, roles=None, handshake_ms=DEFAULT_HANDSHAKE_MS,
         max_frame=None, log=None):
    """secure.dial: for a process that is not a device (session.Credentials as `creds`)."""
    max_frame = max_frame or codec.DEFAULT_MAX_FRAME
    return dial_as(client_keys(creds, handshake_ms), transport.dial(loop, address, None, max_frame), protocol,
                   server, None, roles, max_frame, log)


def client_keys(creds, handshake_ms=DEFAULT_HANDSHAKE_MS):
    """ClientKeys of a session.Credentials."""
    return ClientKeys(creds.identity, creds.trust, creds.pairs, handshake_ms)


def dial_device(sec, conn, protocol, peer, first, known):
    """Security.dial: a device dials another one as its own identity (conn: the connection just
    opened, transport.dial without a protocol yet). `known`: the peer's role,
    pair key and fingerprint as keys.prepare_peer() found them; None if the peer is not trusted
    as a device, and the handshake looks it up (keys.py) to refuse it with its error."""
    if known is not None:
        keys = ClientKeys(sec.identity, None, None, sec.handshake_ms, known)
    else:
        from sensormesh.device.secure.keys import device_identity, device_pairs, device_trust
        keys = ClientKeys(device_identity(sec), device_trust(sec), device_pairs(sec), sec.handshake_ms)
    dev = sec.dev
    return dial_as(keys, conn, protocol, peer, first, ("device",), dev.max_frame, dev.log)


def dial_as(keys, conn, protocol, peer, first, roles, max_frame, log):
    """Put a Dialer in front of `protocol` on `conn`, a connection just opened (transport.dial
    without a protocol: nothing of it has run yet), as `keys` (a ClientKeys); `first` leaves once
    the session is up."""
    d = Dialer(keys, conn.loop, protocol, peer, first, roles, max_frame, log)
    conn.protocol = d
    d.start(conn)
    return conn


class Dialer:
    """The client side of the handshake in front of another protocol object (a pipe's). Once the
    session is up it hands the connection to that object (conn.protocol) and is garbage: a board
    keeps no handshake code for its open pipes."""

    def __init__(self, keys, loop, inner, peer, first, roles, max_frame, log):
        self.keys = keys
        self.loop = loop
        self.inner = inner
        self.peer = peer
        self.first = first
        self.roles = roles
        self.max_frame = max_frame
        self.log = log
        self.cs = None
        self.timer = None
        self.up = False

    def start(self, conn):
        keys = self.keys
        try:
            if type(self.peer) is not str:
                raise HandshakeError("unknown-key", "no name of the device to authenticate (a pipe's 'peer')")
            self.cs = ClientSession(keys.identity, keys.trust, self.peer, roles=self.roles, pairs=keys.pairs,
                                    known=keys.known)
            busy[0] += 1
            hello = self.cs.start()
        except HandshakeError as e:
            self._failed(conn, e)
            return
        conn.decoder.max_frame = HELLO_MAX_FRAME
        conn.send(hello)
        conn.held = []
        self.timer = self.loop.call_later(keys.handshake_ms, lambda: self._expire(conn))

    def _done(self):
        # this dial's handshake is over (up, failed, expired or closed): its session is garbage
        if self.cs is not None:
            self.cs = None
            busy[0] -= 1
            idle()

    def _failed(self, conn, e):
        self._done()
        conn.held = None
        if self.log:
            self.log("handshake with %s failed: %s" % (self.peer, e))
        h = getattr(self.inner, "on_message", None)
        if h:
            h(conn, e.to_message())
        self.loop.call_soon(lambda: conn.close("handshake with %s failed: %s" % (self.peer, e)))

    def _expire(self, conn):
        self.timer = None
        if not self.up:
            self._done()
        if not self.up and not conn.closed:
            conn.held = None
            conn.close("no welcome from %s within %d ms" % (self.peer, self.keys.handshake_ms))

    def on_message(self, conn, msg):
        if self.up:
            self.inner.on_message(conn, msg)
            return
        if self.cs is None:
            return
        if self.timer:
            self.timer.cancel()
            self.timer = None
        try:
            self.cs.receive(msg)
        except HandshakeError as e:
            self._failed(conn, e)
            return
        self.up = True
        conn.decoder.max_frame = self.max_frame
        conn.wrap = self.cs.wrap
        conn.unwrap = self.cs.unwrap
        conn.wrap_limit = wrap_limit(conn.peer_max_frame)
        conn.protocol = self.inner     # from now on the pipe's own: this Dialer is garbage
        self._done()
        held = conn.held or ()
        conn.held = None
        if self.first is not None:
            conn.send(self.first)
        for m in held:
            conn.send(m)
        h = getattr(self.inner, "on_connect", None)
        if h:
            h(conn)

    def on_drain(self, conn):
        h = getattr(self.inner, "on_drain", None)
        if self.up and h:
            h(conn)

    def on_close(self, conn, reason):
        if self.timer:
            self.timer.cancel()
            self.timer = None
        self._done()
        h = getattr(self.inner, "on_close", None)
        if h:
            h(conn, reason)
