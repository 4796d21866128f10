# The seed's test client: a blocking connection that sends one request and reads messages.
#
# Small and dependency-free so it runs on MicroPython as well (device tests use it there).
#   c = Client("127.0.0.1:7000")
#   c.send({"data-request": {"sensor": "dht11", "time-frame": 1000}})
#   for msg in c.messages(): ...
import socket

from sensormesh import codec
from sensormesh.transport import parse_address, unix_address


class DeviceError(Exception):
    """The device answered with an error control message."""

    def __init__(self, err):
        super().__init__("%s: %s" % (err.get("code"), err.get("message")))
        self.code = err.get("code")
        self.message = err.get("message")
        self.body = err


class Client:
    def __init__(self, address, timeout=10.0, max_frame=codec.DEFAULT_MAX_FRAME):
        addr = parse_address(address)
        if addr[0] == "unix":
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            target = unix_address(addr[1])
        else:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            target = socket.getaddrinfo(addr[1], addr[2])[0][-1]
        if timeout:
            self.sock.settimeout(timeout)
        self.sock.connect(target)
        self.decoder = codec.Decoder(max_frame)
        self.max_frame = max_frame
        self.eof = False

    def send(self, msg):
        self._sendall(codec.encode(msg))

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
