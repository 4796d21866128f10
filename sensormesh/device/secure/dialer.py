# The client side of one handshake while it runs, for processes that are not devices (the
# controller, tools; hello.py's ClientSession looks the server up in a trust store): the Dialer
# that runs a client session in front of a connection's protocol object until the session is
# up; start() sends the session's hello (dial_hello.py's), a failure is dial_failed.py's. A
# device's own dials do not use it: until the welcome their connection's protocol is
# dial_wait.py and the dial plain data (secure.dials; dial_hello.dial, dial_wait.on_message).
from sensormesh.device.secure import HELLO_MAX_FRAME, busy, load
from sensormesh.device.secure.basics import idle
from sensormesh.device.secure.wire import HandshakeError
from sensormesh.device.secure.welcome import wrap_limit


class Dialer:
    """A client session (`cs`: a hello.ClientSession) in front of another protocol object;
    start(dialer, conn) sends the hello. `first` leaves once the session is up, and
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
        conn.channel = self.cs.channel
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


def start(d, conn):
    """Dialer `d` sends its session's hello on `conn` and sets the welcome's deadline; a session
    that cannot start (no peer name; a server not trusted) fails with its error."""
    try:
        if type(d.peer) is not str:
            raise HandshakeError("unknown-key", "no name of the device to authenticate (a pipe's 'peer')")
        d.cs = d.session
        d.session = None
        busy[0] += 1
        hello = d.cs.start()
    except HandshakeError as e:
        d._failed(conn, e)
        return
    except MemoryError:
        d._no_memory(conn)      # the session is let go (busy back) and the connection closes
        raise
    conn.decoder.max_frame = HELLO_MAX_FRAME
    conn.send(hello)
    conn.held = []
    d.conn = conn
    d.timer = d.loop.call_later(d.handshake_ms, d._expire)
    idle()     # the hello is out: the code that made it is garbage until the welcome
