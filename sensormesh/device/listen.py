# Listening sockets. Needed at start (listen_tcp, listen_unix, listener), not while connections
# carry frames: transport.py looks these names up here on demand (transport.listen_tcp...), and
# a board running .mpy files forgets this module again right after (compat.forget). Accepting a
# connection (Listener.on_poll) is accepting.py's, which loads without this module.
import socket

from sensormesh.device import codec
from sensormesh.device.compat import MICROPYTHON
from sensormesh.device.connect import unix_address
from sensormesh.device.transport import Listener

# Connections waiting in the kernel's accept queue. A burst of connects beyond it loses SYNs,
# which the client retries only after about a second. lwIP on an ESP32 has a handful of
# sockets in all, so a board keeps a short queue.
LISTEN_BACKLOG = 8 if MICROPYTHON else 128


def listener(loop, sock, make_protocol, max_frame=codec.DEFAULT_MAX_FRAME, max_conns=0):
    """A transport.Listener accepting on the bound, listening socket sock: make_protocol()
    returns the protocol of each new connection; at most max_conns open at once (0: no limit)."""
    lst = Listener()
    lst.loop = loop
    lst.sock = sock
    lst.make_protocol = make_protocol
    lst.max_frame = max_frame
    lst.max_conns = max_conns
    lst.conns = []      # the open connections it accepted
    sock.setblocking(False)
    loop.register(sock, lst)
    return lst


def listen_tcp(loop, host, port, make_protocol, backlog=LISTEN_BACKLOG, **kw):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(socket.getaddrinfo(host, port)[0][-1])
    s.listen(backlog)
    return listener(loop, s, make_protocol, **kw)


def listen_unix(loop, path, make_protocol, backlog=LISTEN_BACKLOG, **kw):
    import os
    try:
        os.remove(path)
    except OSError:
        pass
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(unix_address(path))
    s.listen(backlog)
    return listener(loop, s, make_protocol, **kw)


def bound_port(listener):
    """The TCP port a listener got (useful after binding port 0)."""
    if MICROPYTHON:
        raise OSError("bound_port is not available on MicroPython")
    return listener.sock.getsockname()[1]
