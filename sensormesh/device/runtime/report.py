# The counts of the running assignment and the reply that carries them (a "status" reply, polled
# every few seconds while a controller watches, and a stopped pipeline's "stopped" reply), and
# the runtime's other rarely used methods: Runtime.RARE (runtime/__init__.py) names them, and
# Runtime finds them here through __getattr__ (steps/__init__.py, Rarely), so this module is
# loaded per call and forgotten after it on a board running .mpy files. Small on purpose: it is
# loaded while such a reply, a board's largest, is built and sealed.
from sensormesh.device import codec
from sensormesh.device.schedule import sparse


def status(rt):
    st = {"pipeline": rt.pipeline, "epoch": rt.epoch, "state": rt.state, "steps": {}}
    for i in rt.order:
        try:
            st["steps"][i] = rt.nodes[i].stats()
        except Exception as e:
            st["steps"][i] = {"error": str(e)}
    lost = rt.lost_deliveries
    for d in rt.deliveries.values():
        lost += d.tx.dropped
    if lost:
        st["lost_deliveries"] = lost
    return st


def send_stats(rt, conn, key, st):
    """Send a status or stopped reply. When it does not fit the link (the per-step counts of
    hundreds of steps, over a board's small frames or a keyed link), or a board's heap has no
    block free for it now (a keyed reply is sealed into one buffer, the largest a running board
    makes), the per-step counts give way to their number ("steps_omitted") and the reply says
    why. A board logs the 1st, 2nd, 4th... reply it had to cut for memory."""
    try:
        conn.send({key: st})
        return
    except codec.ProtocolError as e:
        why = str(e)
    except MemoryError:
        why = "the device had no memory free for them now"
        n = getattr(rt, "replies_cut", 0) + 1
        rt.replies_cut = n
        if sparse(n):
            rt.log("%s reply sent without its per-step counts: no memory free for them (%d so far)"
                   % (key, n))
    a = st.get("assignment") if type(st.get("assignment")) is dict else st
    a["steps_omitted"] = len(a.get("steps") or ())
    a["steps"] = {}
    a["omitted_because"] = why
    conn.send({key: st})


# -- the runtime's other rarely used methods, in the modules that hold their code -------------
def shutdown(rt):
    # the device stops (core.Device.close): its assignment stops as for a stop message
    rt.rare("stop", "teardown")


def deliver(rt, sid, value):
    # a callback step's values (deploy hands each callback its Delivery's deliver directly)
    from sensormesh.device.runtime.delivery import deliver
    deliver(rt, sid, value)
