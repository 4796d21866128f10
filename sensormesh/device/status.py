# The reply to "status": the device's streams, connections, errors and heap, its assignment's
# state and its security's. A controller asks for it every few seconds while it watches a
# device: core.Device.dispatch loads this module for each (without control.py, so the reply,
# the assignment's status and a keyed link's token are built with the least code loaded) and, on
# a board running .mpy files, forgets it after the reply (compat.forget).
#
# A device with keys makes the reply after a handshake in progress rather than during it (a
# pipe's dial waiting for its welcome, an accepted connection waiting for its hello): the
# sealed reply and the handshake's code and keys would otherwise be a board's fullest moment.
# It waits a few short turns of the loop at most (_WAITS x _WAIT_MS), then answers anyway: a
# controller counts a status poll as missed only after 2 s.
# A stopped pipeline's reply leaves through send_stats too (runtime/stop.py): the assignment's
# counts are runtime/report.py's, forgotten again before the reply is sealed.
from sensormesh.device import codec
from sensormesh.device.compat import MICROPYTHON
from sensormesh.device.schedule import sparse

# MicroPython's compiler puts the numbers in place of these names (no global, no interned name).
if not MICROPYTHON:
    const = int
_WAITS = const(5)
_WAIT_MS = const(60)


def reply(dev, session, waited=0):
    """Answer a session's "status" request (after a handshake in progress, waiting at most
    _WAITS times _WAIT_MS ms for it)."""
    sec = dev.security
    if sec is not None and waited < _WAITS:
        from sensormesh.device.secure import admitting, busy, dials
        if busy[0] or admitting[0] or dials:
            dev.loop.call_later(_WAIT_MS, lambda: reply(dev, session, waited + 1))
            return
    conn = session.conn
    if conn is None or conn.closed:
        return        # the session ended while the reply waited
    st = {"name": dev.name, "streams": [s.stats() for s in dev.streams],
          "connections": sum(len(lst.conns) for lst in dev.listeners), "errors": dev.errors}
    if MICROPYTHON:
        import gc
        gc.collect()     # live heap, not the garbage since the last collection
        st["mem_free"] = gc.mem_free()
        st["mem_alloc"] = gc.mem_alloc()
    rt = dev.runtime
    if rt is not None:
        st["assignment"] = rt.status()
    if sec is not None:
        st["security"] = security(sec)
    fw = getattr(dev, "forwarder", None)
    if fw is not None:
        st["registered"] = sorted(fw.registered)   # devices that registered with this gateway
    if rt is not None:
        send_stats(rt, conn, "status", st)
    else:
        conn.send({"status": st})


def security(sec):
    """The status of a device's secure.Security: its identity, handshakes and refusals."""
    return {"identity": sec.name, "handshakes": sec.pending, "accepted": sec.accepted,
            "refused": dict(sec.refused), "max_handshakes": sec.max_handshakes,
            "key_agreements": sec.pair_state[2]}


def send_stats(rt, conn, key, st):
    """Send a status or stopped reply. When it does not fit the link (the per-step counts of
    hundreds of steps, over a board's small frames or a keyed link), or a board's heap has no
    block free for it now (a keyed reply is sealed into one buffer, the largest a running board
    makes), the per-step counts give way to their number ("steps_omitted") and the reply says
    why. A board logs the 1st, 2nd, 4th... reply it had to cut for memory.
    The reply's text is made first, then the per-step counts' dicts are let go (the text has
    them) before it is sealed and queued: a keyed reply's token is the largest buffer a running
    board makes, and needs the room."""
    a = st.get("assignment") if type(st.get("assignment")) is dict else st
    steps = a.get("steps") or {}
    n = len(steps)
    try:
        ps = codec.payloads({key: st}, conn.peer_max_frame)
        steps.clear()
        for p in ps:
            conn.send_payload(p)
        return
    except codec.ProtocolError as e:
        why = str(e)
    except MemoryError:
        why = "the device had no memory free for them now"
        c = getattr(rt, "replies_cut", 0) + 1
        rt.replies_cut = c
        if sparse(c):
            rt.log("%s reply sent without its per-step counts: no memory free for them (%d so far)"
                   % (key, c))
    a["steps_omitted"] = n
    a["steps"] = {}
    a["omitted_because"] = why
    conn.send({key: st})
