# The client side of one handshake while it runs, for processes that are not devices (the
# controller, tools; hello.py's ClientSession looks the server up in a trust store): the Dialer
# that runs a client session in front of a connection's protocol object until the session is
# up. Its hello is dial_hello.py's (start), a failure dial_failed.py's. A device's own dials do
# not use it: its Security is their connection's protocol and the dial plain data until the
# welcome (secure/__init__.py, dial_hello.dial, wire.welcome).
from sensormesh.device.secure import busy, load
from sensormesh.device.secure.basics import HandshakeError, idle
from sensormesh.device.secure.channel import wrap_limit


class Dialer:
    """A client session (`cs`: a hello.ClientSession) in front of another protocol object;
    dial_hello.start(dialer, conn) sends the hello. `first` leaves once the session is up, and
    so do messages sent meanwhile. Then it hands the connection to that object (conn.protocol)
    and is garbage. A refusal reaches inner.on_message as {"error": ...}, then the connection
    closes."""

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
        self.conn = None         # the connection, once the hello is sent
        self.up = False

    def _done(self):
        # this dial's handshake is over (up, failed, expired or closed): its session is garbage
        if self.cs is not None:
            self.cs = None
            busy[0] -= 1
            idle()

    def _failed(self, conn, e):
        # the handshake failed (HandshakeError e): what follows is dial_failed.py's, loaded for it
        try:
            load("dial_failed").dialer_failed(self, conn, e)
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
        conn.peer_max_frame = wrap_limit(conn.peer_max_frame)   # tokens within the peer's limit
        conn.protocol = self.inner     # from now on the pipe's own: this Dialer is garbage
        self._done()
        if self.first is not None:
            conn.held.insert(0, self.first)
        # The held messages leave (sealed) and the protocol's on_connect runs on this loop turn,
        # once this call has returned and this Dialer and its session are garbage.
        self.loop.call_soon(conn.release)

    def on_close(self, conn, reason):
        if self.timer:
            self.timer.cancel()
            self.timer = None
        self._done()
        h = getattr(self.inner, "on_close", None)
        if h:
            h(conn, reason)
