# Dialing out, addresses; closing a connection after an error (a protocol error, no memory for a
# frame); turning a loop until a condition
# holds (tools and tests). Needed when a pipe or a registration dials, not while connections
# carry frames: transport.py looks these names up here on demand (transport.dial...), and a
# board running .mpy files forgets this module again right after (compat.forget), so its code is
# freed between two dials. Listening: listen.py; accepting: accepting.py.
import socket
import struct

from sensormesh.device import codec
from sensormesh.device.compat import MICROPYTHON, WOULD_BLOCK, errno_of
from sensormesh.device.transport import Connection

# poll()'s event bits (transport.py); IPPROTO_TCP, TCP_NODELAY: the same numbers on Linux
# and lwIP (MicroPython's unix port does not name them).
if not MICROPYTHON:
    const = int
_POLLIN = const(1)
_POLLOUT = const(4)
_POLLERR = const(8)
_POLLHUP = const(16)
_TCP = const(6)
_NODELAY = const(1)


def no_delay(sock):
    """Send small frames at once (no Nagle). The loop already gathers a turn's frames into one
    send(); Nagle would hold the next small frame until the peer's ACK, which a peer that also
    sends (pipe acknowledgements) delays by up to 40 ms. Unix sockets refuse it: harmless."""
    try:
        sock.setsockopt(_TCP, _NODELAY, 1)
    except (OSError, AttributeError, TypeError):
        pass


def unix_address(path):
    """A Unix socket address both interpreters accept (MicroPython wants a raw sockaddr_un)."""
    if MICROPYTHON:
        return struct.pack("H", socket.AF_UNIX) + path.encode() + b"\0"
    return path


def parse_address(text):
    """'host:port', ':port', 'port' or 'unix:/path' -> ('tcp', host, port) or ('unix', path)."""
    if text.startswith("unix:"):
        return ("unix", text[5:])
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "", text
    try:
        port = int(port)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise ValueError("bad address %r: expected HOST:PORT (port 0..65535) or unix:PATH" % text)
    return ("tcp", host or "127.0.0.1", port)


def dial(loop, address, protocol, max_frame=codec.DEFAULT_MAX_FRAME):
    """Open a non-blocking connection to 'host:port' or 'unix:/path'.

    Returns the Connection at once; protocol.on_connect(conn) runs when it is up and
    protocol.on_close(conn, reason) if it fails. Messages sent before then are queued.
    """
    addr = parse_address(address) if isinstance(address, str) else address
    if addr[0] == "unix":
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        target = unix_address(addr[1])
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        no_delay(s)
        target = socket.getaddrinfo(addr[1], addr[2])[0][-1]
    s.setblocking(False)
    conn = Connection(loop, s, protocol, max_frame, address)
    conn.connecting = True
    conn._set_mask(_POLLOUT)
    try:
        s.connect(target)
    except OSError as e:
        if errno_of(e) not in WOULD_BLOCK:
            why = "cannot connect to %s: %s" % (address, e)   # `e` is unbound after the except
            loop.call_soon(lambda: conn.close(why))
    return conn


# -- a dialed connection coming up (Connection.on_poll, Connection.release) -------------------
def connected(conn, ev):
    """Connection.on_poll while conn is connecting: poll events ev came. True when it is up and
    ev has input to read now."""
    # A peer that answered and closed at once (e.g. "busy") shows POLLIN with POLLHUP:
    # connected, so read its answer. Without POLLIN, POLLERR/POLLHUP means refused.
    if ev & _POLLERR or (ev & _POLLHUP and not ev & _POLLIN):
        conn.close("connection refused or unreachable: %s" % (conn.peer,))
        return False
    if not ev & (_POLLOUT | _POLLIN):
        return False
    del conn.connecting     # False again (the class's): its slot is free for a session's state
    conn._set_mask(_POLLIN | (_POLLOUT if conn.backlog() else 0))
    h = getattr(conn.protocol, "on_connect", None)
    if h:
        _up(conn, h)
    conn.flush()
    return not conn.closed and ev & _POLLIN


def release(conn):
    """Connection.release: a secure dial's session is up; send what was held meanwhile, then
    the protocol's on_connect."""
    held = conn.held
    if held is not None:
        del conn.held       # None again (the class's): its slot is free for the session's state
        try:
            for m in held:
                conn.send(m)
        except MemoryError:
            # a message with no heap free to seal it: closed, so that its dialer dials again
            # and sends them all (a pipe replays what was not acknowledged), rather than a
            # connection up without its first messages; the loop logs the MemoryError
            conn.close("no memory free for its first messages")
            raise
    h = getattr(conn.protocol, "on_connect", None)
    if h and not conn.closed:
        _up(conn, h)


def _up(conn, h):
    """on_connect(conn); one that finds no heap free (for its code, on a board) closes the
    connection, so that its dialer dials again, rather than leave it up but never taken (a
    pipe's values waited for ever); the loop logs the MemoryError."""
    try:
        h(conn)
    except MemoryError:
        conn.close("no memory free to take the connection")
        raise


# -- closing a connection after an error (Connection._read) ---------------------------
def protocol_error(conn, text):
    """Tell the peer what it did wrong, then close (the stream is out of step)."""
    h = getattr(conn.protocol, "on_protocol_error", None)
    if h:
        h(conn, text)
    if not conn.closed:
        conn.send({"error": {"code": "protocol", "message": text}})
        conn.close_after_flush("protocol error: " + text)


def no_memory(conn):
    """No memory was free to take a frame out of conn's decoder or decode it
    (transport.Connection._read): the frame is lost and the stream out of step. Say so and close,
    rather than hold a connection that waits for nothing (its sender redials; a pipe's sender
    sends again what was not acknowledged)."""
    conn.decoder.broken("no memory free for a frame now")
    try:
        conn.send({"error": {"code": "busy", "message": "the device has no memory free for "
                             "this frame now; try again later"}})
        conn.close_after_flush("no memory free for a frame")
    except MemoryError:
        conn.close("no memory free for a frame")


def run_until(loop, predicate, timeout_ms):
    """Loop.run_until: turn the loop until predicate() is true or timeout_ms pass; returns
    predicate()."""
    deadline = loop.now() + timeout_ms
    while not predicate():
        left = deadline - loop.now()
        if left <= 0:
            return predicate()
        loop.run_once(min(left, 50))
    return True
