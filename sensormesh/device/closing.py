# Closing a connection after sending what is queued (Connection.close_after_flush: a pipe's
# stop, a refused request, a protocol error), and closing a listener (Listener.close, as a device
# exits): loaded for that and, on a board running .mpy files, forgotten at once (transport.py),
# apart from connect.py, whose dialing code neither a stop nor an exit needs.
from sensormesh.device.compat import MICROPYTHON
from sensormesh.device.transport import RECV_CHUNK


def close_after_flush(conn, reason="closed"):
    """Send what is queued (best effort, without blocking), then close."""
    if conn.backlog() and not conn.closed:
        try:
            conn.sock.setblocking(True)
            if hasattr(conn.sock, "settimeout"):
                conn.sock.settimeout(0.2)
            if MICROPYTHON:
                # A chunk at a time (a frame's payload may be a view of its JSON text: no joined
                # copy of them all); a chunk a send took in part is a view of its rest already.
                for c in conn.chunks:
                    conn.sock.write(c)   # blocking: every byte, or OSError
            else:
                conn.sock.sendall(conn.out)
        except OSError:
            pass
        if MICROPYTHON:
            conn.chunks = []
        else:
            conn.out = bytearray()
    _discard_input(conn)
    conn.close(reason)


def _discard_input(conn):
    # Closing a socket with unread input makes the kernel send a reset, which can destroy
    # the error message just sent before the peer reads it. Drop what has already arrived
    # (bounded, without waiting) so the close is an orderly one.
    if conn.closed:
        return
    try:
        conn.sock.setblocking(False)
        for _ in range(64 if MICROPYTHON else 16):    # at most 64 KB (board) or 4 MB (CPython)
            if MICROPYTHON:
                n = conn.sock.readinto(conn.loop.rbuf)
            else:
                n = len(conn.sock.recv(RECV_CHUNK))
            if not n:
                return
    except OSError:
        pass


def close_listener(lst):
    """Listener.close: stop listening, and close the connections it accepted."""
    lst.loop.unregister(lst.sock)
    try:
        lst.sock.close()
    except OSError:
        pass
    for c in list(lst.conns):
        c.close("listener closed")
