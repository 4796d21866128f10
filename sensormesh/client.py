# The test client of the original design (docs/design.md): a blocking connection that sends one request and reads messages.
#
# Small and dependency-free so it runs on MicroPython as well (device tests use it there).
#   c = Client("127.0.0.1:7000")
#   c.send({"data-request": {"sensor": "dht11", "time-frame": 1000}})
#   for msg in c.messages(): ...
#
# With an identity (a device that has keys), the constructor runs the handshake first (blocking)
# and every later frame is a Fernet token:
#   c = Client("127.0.0.1:7000", identity=session.load_credentials("prov-reader"), server="dev-a")
# identity: session.Credentials, or a path that load_credentials takes (a `sensormesh keys
# export` directory or an identity.json next to its trust.json). server: the device's name.
import socket

from sensormesh.device import codec
from sensormesh.device.transport import parse_address, unix_address


class DeviceError(Exception):
    """The device answered with an error control message."""

    def __init__(self, err):
        if type(err) is not dict:       # a peer that is not a sensormesh device, or a broken one
            err = {"code": "malformed", "message": "the peer sent an error that is not an object: %s" % repr(err)[:200]}
        super().__init__("%s: %s" % (err.get("code"), err.get("message")))
        self.code = err.get("code")
        self.message = err.get("message")
        self.body = err


class AuthError(DeviceError):
    """The secure handshake failed; code is one of handshake.CODES (or "plaintext")."""


class _SecureDecoder:
    """A codec.Decoder whose payloads are the session's tokens: feed()/next() as before."""

    def __init__(self, dec, unwrap):
        self.dec = dec
        self.unwrap = unwrap
        self.max_frame = dec.max_frame

    def feed(self, data):
        self.dec.feed(data)

    def next_payload(self):
        p = self.dec.next_payload()
        return None if p is None else self.unwrap(p)

    def next(self):
        p = self.dec.next_payload()
        if p is None:
            return None
        return codec.decode_payload(self.unwrap(p))

    def pending(self):
        return self.dec.pending()

    def close(self):
        self.dec.close()


class Client:
    def __init__(self, address, timeout=10.0, max_frame=codec.DEFAULT_MAX_FRAME, identity=None, server=None):
        self.address = address
        self.timeout = timeout
        self.max_frame = max_frame
        self.session = None
        self.sock = None
        self.decoder = None
        self.eof = False
        hello = None
        if identity is not None:
            # Check the device's name against our trust store (and make the hello) before any
            # connection: an unknown name is refused here, without touching the network.
            from sensormesh.device.secure import handshake as session   # crypto only for clients that use it
            if type(identity) is str:
                identity = session.load_credentials(identity)
            if type(server) is not str:
                raise ValueError("a secure connection needs the device's name (server=...)")
            cs = identity.client(server)
            try:
                hello = cs.start()
            except session.HandshakeError as e:
                raise AuthError({"code": e.code, "message": "%s; not connecting to %s" % (e.message, address)})
        self._connect()
        if identity is not None:
            try:
                self._secure(session, cs, hello)
            except BaseException:
                self.close()
                raise

    def _connect(self):
        addr = parse_address(self.address)
        if addr[0] == "unix":
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            target = unix_address(addr[1])
        else:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            target = socket.getaddrinfo(addr[1], addr[2])[0][-1]
        if self.timeout:
            self.sock.settimeout(self.timeout)
        self.sock.connect(target)
        self.decoder = codec.Decoder(self.max_frame)
        self.eof = False

    def _secure(self, session, cs, hello):
        self._handshake(session, cs, hello)
        self.session = cs
        self.peer_role = cs.role
        self.wrap_limit = session.wrap_limit(codec.MIN_MAX_FRAME)
        self.decoder = _SecureDecoder(self.decoder, cs.unwrap)

    def _handshake(self, session, cs, hello):
        server = cs.server
        try:
            self._sendall(codec.encode(hello))
            reply = self.recv()
            if reply is None:
                raise session.HandshakeError("malformed", "%s closed the connection during the handshake" % server)
            if type(reply) is dict and "info" in reply:
                raise AuthError({"code": "plaintext", "message": "device at %s answered without authentication: it "
                                 "runs without keys or with --insecure; not continuing in plaintext" % self.address})
            cs.receive(reply)
        except session.HandshakeError as e:
            raise AuthError({"code": e.code, "message": e.message})

    def send(self, msg):
        s = self.session
        if s is None:
            self._sendall(codec.encode(msg))
            return
        buf = bytearray()
        for p in codec.payloads(msg, self.wrap_limit):
            tok = s.wrap(p)
            buf += len(tok).to_bytes(4, "big")
            buf += tok
        self._sendall(buf)

    def _sendall(self, data):
        mv = memoryview(data)
        while len(mv):
            n = self.sock.send(mv)
            mv = mv[n:]

    def request_data(self, sensor, time_frame=0, values_per_frame=0):
        req = {"sensor": sensor}
        if time_frame:
            req["time-frame"] = time_frame
        if values_per_frame:
            req["values-per-time-frame"] = values_per_frame
        req["max-frame"] = self.max_frame
        self.send({"data-request": req})

    def recv(self):
        """The next message, or None at end of stream. Raises ProtocolError on a bad frame."""
        while True:
            msg = self.decoder.next()
            if msg is not None:
                return msg
            if self.eof:
                return None
            data = self.sock.recv(65536)
            if not data:
                self.eof = True
                self.decoder.close()
                return None
            self.decoder.feed(data)

    def messages(self, raise_errors=True):
        """Yield messages until the stream ends; an {"error": ...} raises DeviceError."""
        while True:
            msg = self.recv()
            if msg is None:
                return
            if raise_errors and type(msg) is dict and "error" in msg:
                raise DeviceError(msg["error"])
            yield msg

    def call(self, msg):
        """Send a control message and return the reply (an error reply raises DeviceError)."""
        self.send(msg)
        reply = self.recv()
        if reply is None:
            raise DeviceError({"code": "closed", "message": "connection closed before a reply"})
        if type(reply) is dict and "error" in reply:
            raise DeviceError(reply["error"])
        return reply

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
