# Sending a status or stopped reply (status.py makes a status reply, runtime/stop.py a stopped
# pipeline's): loaded for one and, on a board running .mpy files, forgotten after it, with the
# module that made the reply already let go, so that the reply is sealed with the least code
# loaded.
from sensormesh.device import codec
from sensormesh.device.schedule import sparse


def send_stats(rt, conn, key, st):
    """Send a status or stopped reply (rt: the device's runtime, None if it has none). When it does not fit the link (the per-step counts of
    hundreds of steps, over a board's small frames or a keyed link), or a board's heap has no
    block free for it now (a keyed reply is sealed into one buffer, the largest a running board
    makes), the per-step counts give way to their number ("steps_omitted") and the reply says
    why. A board logs the 1st, 2nd, 4th... reply it had to cut for memory.
    The reply's text is made first, then the per-step counts' dicts are let go (the text has
    them) before it is sealed and queued: a keyed reply's token is the largest buffer a running
    board makes, and needs the room."""
    if rt is None:
        conn.send({key: st})
        return
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
