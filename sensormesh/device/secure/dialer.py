# The client side of one handshake while it runs, as small as a device's pipe needs it: the
# Dialer that runs a client session in front of a connection's protocol object until the session
# is up; a device's dial to a peer its deployment prepared is its own session (the server, its
# role, pair key and key fingerprint as known, the hello sent). Its steps are modules of their
# own, loaded for each and forgotten after (basics.idle()): a device's dial and its hello
# (dial_hello.py), the check of the welcome and the session's keys (wire.py), a failure
# (dial_failed.py). While a dial waits for its welcome a board holds this module and basics.py
# only. Looking the server up in a trust store is hello.py's ClientSession (processes that are
# not devices, and a device's dial to a peer it does not trust as a device, refused with its
# error).
from sensormesh.device.compat import unix_time
from sensormesh.device.secure import busy, load
from sensormesh.device.secure.basics import HandshakeError, idle
from sensormesh.device.secure.channel import wrap_limit


class Dialer:
    """A client session (`cs`: a hello.ClientSession, or with cs None the Dialer itself) in front
    of another protocol object (a pipe's); dial_hello.start(dialer, conn) sends the hello.
    `first` leaves once the session is up, and so do messages sent meanwhile. Then it hands the
    connection to that object (conn.protocol) and is garbage: a board keeps no handshake code for
    its open pipes. A refusal reaches inner.on_message as {"error": ...}, then the connection
    closes.

    As its own session (a device's dial to a peer its deployment prepared: `me`, the device's
    name; `known`, the server's (role, pair key, fingerprint)) it is what hello.Hello is, with no
    object of its own: start() -> the hello to send (dial_hello.py); receive(reply) checks the
    welcome (wire.check_welcome; HandshakeError if it fails) and sets wrap/unwrap and done."""

    def __init__(self, cs, handshake_ms, loop, inner, peer, first, max_frame, log, me=None, known=None):
        self.session = cs if cs is not None else self
        self.handshake_ms = handshake_ms
        self.loop = loop
        self.inner = inner
        self.peer = peer
        self.first = first
        self.max_frame = max_frame
        self.log = log
        self.cs = None           # the session while its handshake runs
        self.timer = None
        self.conn = None         # the connection, once the hello is sent
        self.up = False
        if cs is None:
            self.me = me
            self.server = peer
            self.known = known
            self.clock = unix_time
            self._pending = None     # (nonce, transcript, mac) of the hello sent

    def start(self):
        return load("dial_hello").hello(self)

    def receive(self, msg):
        load("wire").check_welcome(self, msg)

    def _done(self):
        # this dial's handshake is over (up, failed, expired or closed): its session is garbage
        if self.cs is not None:
            self.cs = None
            busy[0] -= 1
            idle()

    def _failed(self, conn, e):
        # the handshake failed (HandshakeError e): what follows is dial_failed.py's, loaded for it
        try:
            load("dial_failed").failed(self, conn, e)
        except MemoryError:
            self._no_memory(conn)

    def _no_memory(self, conn):
        # no memory free for the handshake's next step: close (the pipe dials again)
        self._done()
        conn.held = None
        conn.close("no memory free for the handshake with %s" % (self.peer,))

    def _expire(self):
        conn = self.conn
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
        except MemoryError:       # (loading the welcome's check)
            self._no_memory(conn)
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

    def on_close(self, conn, reason):
        if self.timer:
            self.timer.cancel()
            self.timer = None
        self._done()
        h = getattr(self.inner, "on_close", None)
        if h:
            h(conn, reason)
