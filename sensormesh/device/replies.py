# Sending a status or stopped reply (status.py makes a status reply, runtime/stop.py a stopped
# pipeline's): loaded for one and, on a board running .mpy files, forgotten after it, with the
# module that made the reply already let go, so that the reply is sealed with the least code
# loaded.
from sensormesh.device import codec
from sensormesh.device.schedule import sparse


# A stopped reply that finds no heap free is tried once more this long after, with its counts:
# nothing runs after a stop, and by then the connections it closed have let go of their buffers
# and the frames it flushed have left (a stop is a board's fullest moment). A status reply,
# made while the pipeline runs, is not held back: its counts give way at once.
STOPPED_AGAIN_MS = 50


def send_stats(rt, conn, key, st, ps=None, n=-1, again=False):
    """Send a status or stopped reply (rt: the device's runtime, None if it has none). When it does not fit the link (the per-step counts of
    hundreds of steps, over a board's small frames or a keyed link), or a board's heap has no
    block free for it now (for a stopped reply: now and STOPPED_AGAIN_MS later), the per-step
    counts give way to their number ("steps_omitted") and the reply says why. A board logs the
    1st, 2nd, 4th... reply it had to cut for memory.
    The reply's text is made first, then the per-step counts' dicts are let go (the text has
    them) before it is sealed and queued: a keyed reply's token is the largest buffer a running
    board makes, and needs the room. (A stopped reply tried again: ps, its payloads not sent
    yet, or None if they were not made; n, its number of steps.)"""
    if rt is None:
        conn.send({key: st})
        return
    a = st.get("assignment") if type(st.get("assignment")) is dict else st
    steps = a.get("steps") or {}
    if n < 0:
        n = len(steps)
    try:
        if ps is None:
            ps = codec.payloads({key: st}, conn.peer_max_frame)
            steps.clear()
        while ps:
            conn.send_payload(ps[0])
            ps.pop(0)
        return
    except codec.ProtocolError as e:
        why = str(e)
    except MemoryError:
        if key == "stopped" and not again and not conn.closed:
            try:
                rt.loop.call_later(STOPPED_AGAIN_MS, lambda: send_stats(rt, conn, key, st, ps, n, True))
                return
            except MemoryError:
                pass
        why = "the device had no memory free for them now"
        c = getattr(rt, "replies_cut", 0) + 1
        rt.replies_cut = c
        if sparse(c):
            rt.log("%s reply sent without its per-step counts: no memory free for them (%d so far)"
                   % (key, c))
    if conn.closed:
        return
    a["steps_omitted"] = n
    a["steps"] = {}
    a["omitted_because"] = why
    conn.send({key: st})
