# Listening sockets and the connections they accept. Needed at start (listen_tcp, listen_unix)
# and when a peer connects (on_poll, accepted), not while connections carry frames: transport.py
# looks these names up here on demand (transport.listen_tcp..., Listener.on_poll), and a board
# running .mpy files forgets this module again right after (compat.forget).
import socket

from sensormesh.device import codec
from sensormesh.device.compat import MICROPYTHON, WOULD_BLOCK, errno_of
from sensormesh.device.connect import no_delay, unix_address
from sensormesh.device.transport import Connection, Listener

# Connections waiting in the kernel's accept queue. A burst of connects beyond it loses SYNs,
# which the client retries only after about a second. lwIP on an ESP32 has a handful of
# sockets in all, so a board keeps a short queue.
LISTEN_BACKLOG = 8 if MICROPYTHON else 128
# Connections accepted per loop turn: all that are pending, up to this many, so a burst is
# taken at once while other sockets and timers still get their turn.
ACCEPT_BATCH = 4 if MICROPYTHON else 64


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


def peer_of(addr):
    """MicroPython's accept() gives a raw sockaddr: (host, port) for IPv4, None otherwise."""
    if type(addr) is tuple:
        return addr
    try:
        if len(addr) >= 8 and addr[0] | addr[1] << 8 == socket.AF_INET:
            return ("%d.%d.%d.%d" % (addr[4], addr[5], addr[6], addr[7]), addr[2] << 8 | addr[3])
    except TypeError:
        pass
    return None


def on_poll(lst, ev):
    """Listener.on_poll: accept what is pending (up to ACCEPT_BATCH), each connection's
    protocol's on_open called once it is set up."""
    for _ in range(ACCEPT_BATCH):
        try:
            s, addr = lst.sock.accept()
        except OSError as e:
            if errno_of(e) in WOULD_BLOCK:
                return
            raise
        try:
            conn = accepted(lst, s, addr)
        except MemoryError:
            s.close()      # not left open for a peer that would wait on it for nothing
            raise
        if conn is not None:
            h = getattr(conn.protocol, "on_open", None)
            if h:
                h(conn)


def accepted(lst, s, addr):
    """The Connection for socket s, accepted by Listener lst from addr, counted in lst.conns;
    None when lst has max_conns open (the peer is told "busy"). Its protocol's on_open is the
    caller's (on_poll)."""
    no_delay(s)
    proto = lst.make_protocol()
    if MICROPYTHON:
        addr = peer_of(addr)
    if not addr:
        # a Unix socket's empty address (or nothing readable on MicroPython): no peer, log
        # lines leave it out
        addr = None
    conn = Connection(lst.loop, s, proto, lst.max_frame, addr)
    if lst.max_conns and len(lst.conns) >= lst.max_conns:
        conn.send({"error": {"code": "busy", "message": "too many connections (limit %d)" % lst.max_conns}})
        conn.close_after_flush("connection limit reached")
        return None
    conn.listener = lst
    lst.conns.append(conn)
    return conn
