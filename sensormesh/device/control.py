# The control messages a device answers now and then, not on every value: hello, info, a data
# request's set-up, forward and register, and the errors for an unknown or a malformed message.
# core.Device.dispatch loads this module for such a message and, on a board running .mpy files,
# forgets it after the reply (compat.forget), so its code costs no heap between two of them.
# "ping", "clock" and "metrics" (frequent, or timed) are answered by core.py itself, "status"
# (polled while a controller watches) by status.py, the assignment's messages by the runtime.
import sys

from sensormesh.device import codec
from sensormesh.device.compat import forget


def handle(dev, session, key, body):
    """Answer control message `key` (body `body`) of a session; key None: the message `body` is
    no control message (data, or not exactly one key)."""
    conn = session.conn
    if key is None:   # not a control message: body is what came
        if type(body) is list:
            session.fail(conn, "unexpected-data", "data message received before any request on this connection")
        else:
            session.fail(conn, "bad-request", "a control message must have exactly one key, got %d (%s)"
                         % (len(body), ", ".join(sorted(body)) or "none"))
    elif key == "hello":
        # "max-frame": the largest frame the peer takes (a controller on CPython takes far more
        # than the 16 KiB assumed otherwise), so a status of hundreds of steps fits one reply
        mf = body.get("max-frame") if type(body) is dict else None
        if type(mf) is int and mf > codec.MIN_MAX_FRAME:
            peer_limit(dev, conn, mf)
        session.kind = "control"
        conn.send({"info": info(dev)})
    elif key == "info":
        conn.send({"info": info(dev)})
    elif key == "data-request":
        # datarequest.py is loaded on the first data request: a board that only runs deployed
        # steps never pays for it (nor for its names). It stays loaded while a stream runs (its
        # Stream is the stream).
        from sensormesh.device import datarequest
        datarequest.serve(dev, session, body)
    elif key == "forward" or key == "register":
        from sensormesh.device import forward   # control forwarding through gateways
        forward.handle(dev, session, key, body)
    else:
        from sensormesh.device.core import RUNTIME_MESSAGES
        known = sorted(list(KNOWN) + RUNTIME_MESSAGES)
        session.fail(conn, "unknown-message", "unknown control message %r (known: %s)"
                     % (key, ", ".join(known)))


# The control messages core.py, status.py and this module answer (the runtime's:
# core.RUNTIME_MESSAGES).
KNOWN = ("clock", "data-request", "forward", "hello", "info", "metrics", "ping", "register", "status")


def info(dev):
    """The device's self-description: the reply to hello and info."""
    sens = {}
    if dev.sensors:
        from sensormesh.device.sensors import registry
        for n in dev.sensors:
            s, rate = dev.sensors[n]
            sens[n] = e = {"kind": dev.sensor_kinds[n], "rate": rate, "unit": getattr(s, "UNIT", "")}
            e.update(registry.measures(s))
        forget(registry)
    from sensormesh.device.core import VERSION
    return {"name": dev.name, "version": VERSION, "implementation": sys.implementation.name,
            "sensors": sens, "unix": not sys.platform.startswith("esp"),
            "secure": dev.security is not None, "max-frame": dev.max_frame}


def peer_limit(dev, conn, mf):
    """The peer accepts frames of mf bytes: send up to that (at most 4 times our own limit)."""
    mf = mf if mf < codec.DEFAULT_MAX_FRAME * 4 else codec.DEFAULT_MAX_FRAME * 4
    if conn.channel is not None:   # a secure session: the largest payload whose token fits mf
        from sensormesh.device.secure import welcome
        forget(welcome)     # loaded for this (a handshake loads it again)
        mf = welcome.wrap_limit(mf)
    conn.peer_max_frame = mf


def starter_gone(dev):
    """The device's standard input closed (Device.on_poll): the process that started it is gone."""
    dev.log("standard input closed: the process that started this device stopped it or is gone")


def closed(session, conn, reason):
    """Log why the connection of an Inbound session closed (core.Inbound.on_close)."""
    dev = session.device
    # an accepted Unix-socket connection has no peer address: no gap in the sentence
    text = "connection%s closed: %s" % (" %s" % (conn.peer,) if conn.peer else "", reason)
    if dev.security is not None and session.role is None:
        # Anyone can open connections: log the 1st, 2nd, 4th, 8th... so a flood cannot fill
        # the log. (The count is kept on the device from the first such close on.)
        n = dev.unauth_closed = getattr(dev, "unauth_closed", 0) + 1
        if n & (n - 1) == 0:
            dev.log("%s (%d closed before authenticating so far)" % (text, n))
    else:
        dev.log(text)


def streaming(session, key):
    """A control message on a connection that streams (core.Inbound.on_message): refused."""
    session.fail(session.conn, "bad-request", "this connection is streaming; open another connection for %r" % key)

