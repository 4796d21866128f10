# Accepting connections: Listener.on_poll's code (transport.py looks it up here for each
# accept, and a board running .mpy files forgets it right after, compat.forget). Apart from
# listen.py, which makes the listeners at start, and from connect.py's dialing, so that a board
# short of heap loads only this much to take a connection.
import socket

from sensormesh.device.compat import MICROPYTHON, WOULD_BLOCK, errno_of
from sensormesh.device.transport import Connection

if not MICROPYTHON:
    const = int
_TCP = const(6)          # IPPROTO_TCP, TCP_NODELAY: the same numbers on Linux and lwIP
_NODELAY = const(1)

# Connections accepted per loop turn: all that are pending, up to this many, so a burst is
# taken at once while other sockets and timers still get their turn.
ACCEPT_BATCH = 4 if MICROPYTHON else 64


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
    try:
        s.setsockopt(_TCP, _NODELAY, 1)   # small frames leave at once, as connect.no_delay says
    except (OSError, AttributeError, TypeError):   # a Unix socket refuses it: harmless
        pass
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
