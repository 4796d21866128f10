# A device's dial between its hello and the welcome: this module is the connection's protocol
# object (its on_message and on_close) and expire() the welcome's deadline, with the dial itself
# plain data in secure.dials (dial_hello.dial makes it, wait() puts it there, once dial_hello.py's
# code is garbage). A module rather than an object of a class: while a dial waits, a board holds
# these functions and the dial's list, and no other code of the handshake; the welcome's check (welcome.py) loads when the welcome arrives, and a
# welcome that fails it loads what says why (dial_failed.py, wire.py). Forgotten once no dial
# waits (here after a welcome, else basics.idle()).
from sensormesh.device.compat import collect, forget
from sensormesh.device.secure import dials, load


def wait(d):
    """Dial `d` (dial_hello.dial's list) sent its hello: until its welcome this module is its
    connection's protocol, the dial in secure.dials, with the welcome's deadline."""
    sec = d[1]
    d[7] = sec.dev.loop.call_later(sec.handshake_ms, expire)
    d[0].protocol = load("dial_wait")     # this module
    dials.append(d)


def dialing(conn):
    """The dial of a connection waiting for its welcome (its list in secure.dials), or None."""
    for d in dials:
        if d[0] is conn:
            return d
    return None


def on_message(conn, msg):
    """The answer to a dial's hello: welcome.channel checks it. The session is up (the connection
    wraps and unwraps each frame with its Channel, the pipe's protocol object takes it over, and
    what was held leaves, sealed, on the next loop turn), or the dial fails (dial_failed.py)."""
    d = dialing(conn)
    if d is None:
        # the session came up earlier in this read: the message is the pipe's
        if conn.protocol.on_message is not on_message:
            conn.protocol.on_message(conn, msg)
        return
    conn, sec, pipe, peer, first, known, pending, timer = d
    if pending is None:
        return       # the dial failed: its connection closes on this loop turn
    try:
        w = load("welcome")
        ch = w.channel(peer, known, pending, msg)
        if ch is None:
            load("dial_failed").welcome(d, msg)
            return
    except MemoryError:        # no memory free for the check: close (the pipe dials again)
        conn.close("no memory free for the handshake with %s" % peer)
        return
    dials.remove(d)
    timer.cancel()
    conn.decoder.max_frame = sec.dev.max_frame
    conn.channel = ch
    conn.peer_max_frame = w.wrap_limit(conn.peer_max_frame)   # tokens within the peer's limit
    conn.protocol = pipe       # from now on the pipe's
    if first is not None:
        conn.held.insert(0, first)
    # The held messages leave (sealed) and the pipe's on_connect runs on this loop turn, but only
    # once this call has returned: a board seals the pipe's first frames with the dial's code
    # garbage (Connection.release). The welcome's check is forgotten now (on MicroPython from
    # .mpy files), and this module once no dial waits.
    sec.dev.loop.call_soon(conn.release)
    forget(w)
    w = None
    if not dials:
        forget(__name__)
    collect()


def on_close(conn, reason):
    """The connection closed before the session was up (refused, a failed check, the deadline,
    or closed by the server): the dial ends, and the pipe hears why."""
    d = dialing(conn)
    if d is not None:
        dials.remove(d)
        d[7].cancel()
        h = getattr(d[2], "on_close", None)
        if h:
            h(conn, reason)


def expire():
    """A welcome's deadline passed: each dial still waiting for its welcome after its own
    deadline closes."""
    for d in dials[:]:
        sec = d[1]
        if d[6] is not None and d[7].when <= sec.dev.loop.now():
            d[0].close("no welcome from %s within %d ms" % (d[3], sec.handshake_ms))
