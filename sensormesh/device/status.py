# The reply to "status": the device's streams, connections, errors and heap, its assignment's
# state and its security's. A controller asks for it every few seconds while it watches a
# device: core.Device.dispatch loads this module for each (without control.py, so the reply,
# the assignment's status and a keyed link's token are built with the least code loaded) and, on
# a board running .mpy files, forgets it after the reply (compat.forget).
#
# A device with keys makes the reply after a handshake in progress rather than during it (a
# pipe's dial waiting for its welcome, an accepted connection waiting for its hello): the
# sealed reply and the handshake's code and keys would otherwise be a board's fullest moment.
# It waits short turns of the loop, up to about a second in all (_WAITS x _WAIT_MS: a peer on a
# loaded machine may take that long to answer a hello), then answers anyway: a controller counts
# a status poll as missed only after 2 s.
# reply() makes the reply but for the assignment's counts; core.Device.dispatch lets go of this
# module before Device.status_reply gathers them (runtime/report.py, forgotten again once
# gathered) and seals and sends the reply (replies.py, as a stopped pipeline's).
from sensormesh.device.compat import MICROPYTHON

# MicroPython's compiler puts the numbers in place of these names (no global, no interned name).
if not MICROPYTHON:
    const = int
_WAITS = const(16)
_WAIT_MS = const(60)


def reply(dev, session, waited=0):
    """The reply to a session's "status" request but for the assignment's counts, for the caller
    to complete and send (core.Device.status_reply); None if it is put off after a handshake in progress (waiting at most _WAITS times _WAIT_MS
    ms for it: then sent from here) or the session ended meanwhile."""
    sec = dev.security
    if sec is not None and waited < _WAITS:
        from sensormesh.device.secure import admitting, busy, dials
        if busy[0] or admitting[0] or dials:
            dev.loop.call_later(_WAIT_MS, lambda: _later(dev, session, waited + 1))
            return None
    conn = session.conn
    if conn is None or conn.closed:
        return None   # the session ended while the reply waited
    st = {"name": dev.name, "streams": [s.stats() for s in dev.streams],
          "connections": sum(len(lst.conns) for lst in dev.listeners), "errors": dev.errors}
    if MICROPYTHON:
        import gc
        gc.collect()     # live heap, not the garbage since the last collection
        st["mem_free"] = gc.mem_free()
        st["mem_alloc"] = gc.mem_alloc()
    if sec is not None:
        st["security"] = security(sec)
    fw = getattr(dev, "forwarder", None)
    if fw is not None:
        st["registered"] = sorted(fw.registered)   # devices that registered with this gateway
    return st


def _later(dev, session, waited):
    st = reply(dev, session, waited)
    if st is not None:
        dev.status_reply(session, st)


def security(sec):
    """The status of a device's secure.Security: its identity, handshakes and refusals."""
    return {"identity": sec.name, "handshakes": sec.pending, "accepted": sec.accepted,
            "refused": dict(sec.refused), "max_handshakes": sec.max_handshakes,
            "key_agreements": sec.pair_state[2]}
