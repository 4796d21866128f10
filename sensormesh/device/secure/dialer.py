# The client side of the handshake, as small as a device's pipe needs it: Hello (the hello to a
# server whose role, pair key and key fingerprint are known, the check of its welcome), the
# Dialer that runs a client session in front of a connection's protocol object, and a device's
# dial (Security.dial). A pipe's dial loads this module and wire.py (the messages' fields, the
# session keys) and nothing else of the handshake when the deployment prepared the peer
# (keys.prepare); they are forgotten once no dial is in progress (wire.idle()). Looking the
# server up in a trust store is hello.py's ClientSession, built on Hello (processes that are not
# devices, and a device's dial to a peer it does not trust as a device, refused with its error).
import os

from sensormesh.device.compat import unix_time
from sensormesh.device.secure import HELLO_MAX_FRAME, busy, load
from sensormesh.device.secure.channel import Channel, b64encode, equal, hmac_sha256, wrap_limit
from sensormesh.device.secure.wire import (_NONCE, CODES, VERSION, HandshakeError, _bin, _body, _keys, _name,
                                           _transcript, idle, stamps)


class Hello:
    """The client side of one handshake with `server`, whose (role, pair key, fingerprint) are
    `known`: start() -> the hello to send; receive(reply) checks the welcome (HandshakeError if it
    fails) and sets wrap/unwrap (Connection.wrap/unwrap) and done."""

    def __init__(self, me, server, known, clock=None):
        self.me = me
        self.server = server
        self.known = known
        self.clock = clock or unix_time
        self._pending = None     # (nonce, transcript, mac) of the hello sent
        self.done = False
        self.wrap = None
        self.unwrap = None

    def start(self):
        ts = int(self.clock())
        nonce = os.urandom(_NONCE)
        transcript = _transcript(self.me, self.server, ts, nonce)
        mac = hmac_sha256(self.known[1], transcript)
        self._pending = (nonce, transcript, mac)
        return {"hello": {"v": VERSION, "from": self.me, "to": self.server, "ts": ts,
                          "nonce": b64encode(nonce).decode(), "mac": b64encode(mac).decode()}}

    def receive(self, msg):
        if self._pending is None:
            raise HandshakeError("malformed", "start() the handshake before receiving")
        server = self.server
        if type(msg) is dict and "error" in msg:
            err = msg["error"]
            code = err.get("code") if type(err) is dict else None
            text = err.get("message") if type(err) is dict else None
            if code not in CODES:
                code = "malformed"
            raise HandshakeError(code, "refused by %s: %s" % (server, text if type(text) is str else err))
        body = _body(msg, "welcome")
        if body is None:
            raise HandshakeError("malformed", "expected a welcome from %r" % server)
        if _name(body, "from") != server:
            raise HandshakeError("unknown-key", "welcome comes from %r, expected %r" % (body["from"], server))
        snonce = _bin(body, "nonce", _NONCE)
        proof = _bin(body, "proof", 32)
        nonce, transcript, mac = self._pending
        role, pair, fp = self.known
        c2s, s2c, expect = _keys(pair, nonce, snonce, transcript, mac, server)
        if not equal(proof, expect):
            raise HandshakeError("bad-signature", "%r could not prove it holds its private key "
                                 "(wrong key-confirmation proof)" % server)
        self._pending = None
        self.peer = server       # the authenticated peer: its name, role and key's fingerprint
        self.role = role
        self.peer_fp = fp
        self.channel = Channel(c2s, s2c)
        self.wrap = self.channel.wrap
        self.unwrap = self.channel.unwrap
        self.done = True


def dial(sec, conn, protocol, peer, first):
    """Security.dial: run the handshake as this device's identity on `conn`, just opened to
    `peer`. A peer prepared at the deployment (keys.prepare: its role, pair key and key
    fingerprint, kept while the trust files are unchanged) needs only this module and wire.py;
    else keys.py looks it up again (the trust store re-read first if its files changed) and
    computes the pair key (x25519.py forgotten again at the end of the handshake). A peer not
    trusted as a device is refused by hello.py's ClientSession with the handshake's error."""
    dev = sec.dev
    try:
        known = sec.prepared.get(peer)
        if known is None or stamps(sec) != sec.stamps:
            known = load("keys").prepare_peer(sec, peer)
            if known is not None:
                sec.prepared[peer] = known
        if known is not None:
            cs = Hello(sec.identity.name, peer, known)
        else:
            cs = load("hello").device_session(sec, peer)
    except MemoryError:
        conn.close("no memory free for the handshake with %s" % peer)
        raise
    d = Dialer(cs, sec.handshake_ms, dev.loop, protocol, peer, first, dev.max_frame, dev.log)
    conn.protocol = d
    d.start(conn)
    return conn


class Dialer:
    """A client session (`cs`: a Hello, or hello.ClientSession) in front of another protocol
    object (a pipe's); start(conn) sends the hello. `first` leaves once the session is up, and so
    do messages sent meanwhile. Then it hands the connection to that object (conn.protocol) and is garbage: a
    board keeps no handshake code for its open pipes. A refusal reaches inner.on_message as
    {"error": ...}, then the connection closes."""

    def __init__(self, cs, handshake_ms, loop, inner, peer, first, max_frame, log):
        self.session = cs
        self.handshake_ms = handshake_ms
        self.loop = loop
        self.inner = inner
        self.peer = peer
        self.first = first
        self.max_frame = max_frame
        self.log = log
        self.cs = None           # the session while its handshake runs
        self.timer = None
        self.up = False

    def start(self, conn):
        try:
            if type(self.peer) is not str:
                raise HandshakeError("unknown-key", "no name of the device to authenticate (a pipe's 'peer')")
            self.cs = self.session
            self.session = None
            busy[0] += 1
            hello = self.cs.start()
        except HandshakeError as e:
            self._failed(conn, e)
            return
        conn.decoder.max_frame = HELLO_MAX_FRAME
        conn.send(hello)
        conn.held = []
        self.timer = self.loop.call_later(self.handshake_ms, lambda: self._expire(conn))

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
            conn.close("no welcome from %s within %d ms" % (self.peer, self.handshake_ms))

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
        if self.first is not None:
            conn.held.insert(0, self.first)
        # The held messages leave (sealed) and the pipe's on_connect runs on this loop turn, but
        # only once this call has returned: then this Dialer, its session and the handshake's
        # code (this module, wire.py) are garbage, and a board seals the pipe's first frames
        # without them (Connection.release).
        self.loop.call_soon(conn.release)

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
