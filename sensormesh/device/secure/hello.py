# The client side of the handshake for processes that are not devices (the controller, tools,
# tests): ClientSession looks the server up in a trust store and computes the pair key (keys.py)
# before the hello, then runs Hello; dial() puts it in front of a connection with dialer.py's
# Dialer. A device's dial needs none of this module (dial_hello.py, dial_wait.py and welcome.py
# only); it loads it only to refuse a peer it does not trust as a device.
from sensormesh.device import codec, transport
from sensormesh.device.compat import unix_time
from sensormesh.device.secure import DEFAULT_HANDSHAKE_MS, load
from sensormesh.device.secure import dialer
from sensormesh.device.secure.keys import HandshakeError, PairCache, _check_role, _Side


class Hello:
    """The client side of one handshake with `server`, whose (role, pair key, fingerprint) are
    `known`: start() -> the hello to send (dial_hello.make); receive(reply) checks the welcome
    (welcome.channel; HandshakeError if it fails: dial_failed.why) and sets channel (what a
    connection takes: Connection.channel), wrap, unwrap and done. Between the two it is plain data: no code of either step stays loaded."""

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
        """The hello to send (dial_hello.make): its nonce, transcript and MAC are kept for the
        welcome's check."""
        msg, self._pending = load("dial_hello").make(self.me, self.server, self.known[1], int(self.clock()))
        return msg

    def receive(self, msg):
        """Check the answer `msg` to the hello (welcome.channel): HandshakeError if it is a refusal or
        fails a check; else set wrap/unwrap, the peer, its role and key fingerprint, and done."""
        if self._pending is None:
            raise HandshakeError("malformed", "start() the handshake before receiving")
        ch = load("welcome").channel(self.server, self.known, self._pending, msg)
        if ch is None:
            raise load("dial_failed").why(self.server, msg)
        self.channel = ch
        self._pending = None
        self.peer = self.server       # the authenticated peer: its name, role and key's fingerprint
        self.role = self.known[0]
        self.peer_fp = self.known[2]
        self.wrap = self.channel.wrap
        self.unwrap = self.channel.unwrap
        self.done = True


class ClientSession(_Side, Hello):
    """Connecting side. start() -> hello to send; receive(reply) -> None when done, or HandshakeError.

    server: the name of the side we connect to (its public key must be in our trust store).
    roles:  the server roles we accept (None: any).
    pairs:  a keys.PairCache shared by this process's connections (None: one for this session).
    known:  instead of trust and pairs, the server's (role, pair key, key fingerprint), already
            looked up in the trust store and computed (a device's prepared dial, keys.prepare).
    """

    def __init__(self, identity, trust, server, roles=None, clock=None, pairs=None, known=None):
        _Side.__init__(self, identity, trust, roles, clock)
        Hello.__init__(self, identity.name, server, known, self.clock)
        self.pairs = pairs

    def start(self):
        self._check_state()
        if self._pending is not None:
            raise HandshakeError("malformed", "hello already sent")
        try:
            if self.known is None:
                self.known = self._look_up()
            _check_role(self.known[0], self.roles, "server", self.server)
        except HandshakeError as e:
            self._fail(e)
        return Hello.start(self)

    def _look_up(self):
        role, key = self.trust.lookup(self.server, "server")
        _check_role(role, self.roles, "server", self.server)     # before the costly pair key
        pairs = self.pairs if self.pairs is not None else PairCache(1)
        return role, pairs.get(self.identity, key), key.fingerprint()

    def receive(self, msg):
        self._check_state()
        try:
            Hello.receive(self, msg)
        except HandshakeError as e:
            self._fail(e)


class ClientKeys:
    """What Dialer needs: an identity, a trust store, a PairCache and the handshake's deadline,
    as a process that is not a device (e.g. the controller's loop) takes them from its
    session.Credentials (client_keys); `known`: see ClientSession."""

    def __init__(self, identity, trust, pairs, handshake_ms=DEFAULT_HANDSHAKE_MS, known=None):
        self.identity = identity
        self.trust = trust
        self.pairs = pairs
        self.handshake_ms = handshake_ms
        self.known = known


def dial(loop, address, protocol, creds, server, roles=None, handshake_ms=DEFAULT_HANDSHAKE_MS,
         max_frame=None, log=None):
    """transport.dial with the client side of the handshake in front, for a process that is not
    a device (the controller's loop, tools), with session.Credentials as `creds` and the device's
    name as `server`. Messages sent on the returned connection before the session is up are held
    and leave, encrypted, once it is; protocol.on_connect(conn) runs then. A refusal reaches
    protocol.on_message as {"error": ...}, then the connection closes."""
    max_frame = max_frame or codec.DEFAULT_MAX_FRAME
    conn = transport.dial(loop, address, None, max_frame)
    d = Dialer(client_keys(creds, handshake_ms), loop, protocol, server, None, roles, max_frame, log)
    conn.protocol = d
    start(d, conn)
    return conn


def client_keys(creds, handshake_ms=DEFAULT_HANDSHAKE_MS):
    """ClientKeys of a session.Credentials."""
    return ClientKeys(creds.identity, creds.trust, creds.pairs, handshake_ms)


def Dialer(keys, loop, inner, peer, first, roles, max_frame, log):
    """A dialer.Dialer running a ClientSession of `keys` (a ClientKeys) to `peer` in front of
    `inner`; start(dialer, conn) sends the hello."""
    cs = ClientSession(keys.identity, keys.trust, peer, roles=roles, pairs=keys.pairs, known=keys.known)
    return dialer.Dialer(cs, keys.handshake_ms, loop, inner, peer, first, max_frame, log)


def start(d, conn):
    """A Dialer() sends its session's hello on `conn` (its protocol now) and waits for the welcome."""
    dialer.start(d, conn)


def device_session(sec, peer):
    """A device's ClientSession to a peer keys.prepare_peer found not trusted as a device: its
    start() looks the peer up and fails with the handshake's error (dial_hello.dial)."""
    from sensormesh.device.secure.keys import device_identity, device_pairs, device_trust
    return ClientSession(device_identity(sec), device_trust(sec), peer, roles=("device",), pairs=device_pairs(sec))
