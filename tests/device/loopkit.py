# Helpers for device tests that run a Device and its peers in one process and one loop
# (CPython and the MicroPython unix port alike).

PORTS = [47300]


class Collector:
    """A protocol object that keeps every message and the close reason."""

    def __init__(self):
        self.messages = []
        self.closed = None
        self.connected = False

    def on_connect(self, conn):
        self.connected = True

    def on_message(self, conn, msg):
        self.messages.append(msg)

    def on_close(self, conn, reason):
        self.closed = reason

    def replies(self, key):
        return [m[key] for m in self.messages if type(m) is dict and key in m]


def listen(dev):
    """Make dev listen on the next free loopback port; returns "127.0.0.1:PORT"."""
    from sensormesh.device import boot
    for _ in range(500):
        PORTS[0] += 1
        try:
            boot.listen_tcp(dev, "127.0.0.1", PORTS[0])
            return "127.0.0.1:%d" % PORTS[0]
        except OSError:
            pass
    raise AssertionError("no free loopback port from %d on" % (PORTS[0] - 500))


def raw_listener():
    """A plain listening socket on the next free loopback port: (socket, port)."""
    import socket
    for _ in range(500):
        PORTS[0] += 1
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(socket.getaddrinfo("127.0.0.1", PORTS[0])[0][-1])
        except OSError:
            s.close()
            continue
        s.listen(1)
        return s, PORTS[0]
    raise AssertionError("no free loopback port from %d on" % (PORTS[0] - 500))
