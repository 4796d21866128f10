# Sending a status or stopped reply (status.py makes a status reply, runtime/stop.py a stopped
# pipeline's): loaded for one and, on a board running .mpy files, forgotten after it, with the
# module that made the reply already let go, so that the reply is sealed with the least code
# loaded.
from sensormesh.device import codec
from sensormesh.device.schedule import sparse


# A reply that finds no heap free (to be made or to be sealed) is tried again this long after,
# then this long after that, with its per-step counts (its text, once made, is held meanwhile);
# only when the last try finds none too do the counts give way. A board's heap is fullest for
# moments: a stop (every node flushes and closes, each connection lets go of its buffers), the
# first values sealed after a pipe's handshake. 600 ms in all: a controller counts a status poll
# unanswered for two seconds as missed (and status.py may have waited for a handshake first).
# While a reply waits, a control message that comes sends it at once (whole if the heap has
# room by then, cut otherwise) before it is handled (Device.dispatch), so the replies on a
# connection keep the order of its requests.
AGAIN_MS = (50, 150, 400)


def send_stats(rt, conn, key, st, ps=None, n=-1, tries=0):
    """Send a status or stopped reply (rt: the device's runtime, None if it has none). When it
    does not fit the link (the per-step counts of hundreds of steps, over a board's small frames
    or a keyed link), or a board's heap has no block free for it now and at each of the later
    tries (AGAIN_MS), the per-step counts give way to their number ("steps_omitted") and the
    reply says why. A board logs the 1st, 2nd, 4th... reply it had to cut for memory.
    The reply's text is made first, then the per-step counts' dicts are let go (the text has
    them) before it is sealed and queued: a keyed reply's token is the largest buffer a running
    board makes, and needs the room. (A reply tried again: ps, its payloads not sent yet, or
    None if they were not made; n, its number of steps; tries, the tries before this one.)"""
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
        if tries < len(AGAIN_MS) and not conn.closed:
            try:
                wait(rt, conn, key, st, ps, n, tries)
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


def wait(rt, conn, key, st, ps, n, tries):
    """Hold the reply for its next try (AGAIN_MS[tries] from now) as the device's waiting
    reply: a control message that comes first calls it at once, for its last try."""
    dev = rt.device

    def again(last=False):
        if dev.waiting is again:
            dev.waiting = None
            try:
                send_stats(rt, conn, key, st, ps, n, len(AGAIN_MS) if last else tries + 1)
            except MemoryError as e:
                if not last:
                    raise           # the loop's (a timer's error is logged and counted)
                dev._on_loop_error(e, key + " reply")   # the message that came is handled still

    dev.waiting = again
    rt.loop.call_later(AGAIN_MS[tries], again)
