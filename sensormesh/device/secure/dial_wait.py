# A device's dial between its hello and the welcome: this module is the connection's protocol
# object (its on_message and on_close) and expire() the welcome's deadline, with the dial itself
# plain data in secure.dials (dial_hello.dial makes both). A module rather than an object of a
# class: while a dial waits, a board holds these three functions and the dial's list, and no
# other code of the handshake; the welcome's check (wire.py) loads when the welcome arrives.
# Forgotten (basics.idle()) once no dial waits.
from sensormesh.device.secure import dials, load


def dialing(conn):
    """The dial of a connection waiting for its welcome (its list in secure.dials), or None."""
    for d in dials:
        if d[0] is conn:
            return d
    return None


def on_message(conn, msg):
    """The answer to a dial's hello: wire.welcome checks it."""
    d = dialing(conn)
    if d is None:
        # the session came up earlier in this read: the message is the pipe's
        if conn.protocol.on_message is not on_message:
            conn.protocol.on_message(conn, msg)
        return
    try:
        load("wire").welcome(d, msg)
    except MemoryError:        # no memory free for the check: close (the pipe dials again)
        conn.close("no memory free for the handshake with %s" % d[3])


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
