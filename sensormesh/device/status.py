# The reply to "status": the device's streams, connections, errors and heap, its assignment's
# state and its security's. A controller asks for it every few seconds while it watches a
# device: core.Device.dispatch loads this module for each (without control.py, so the reply,
# the assignment's status and a keyed link's token are built with the least code loaded) and, on
# a board running .mpy files, forgets it after the reply (compat.forget).
from sensormesh.device.compat import MICROPYTHON


def reply(dev, session):
    """Answer a session's "status" request."""
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
    if dev.security is not None:
        st["security"] = dev.security.status()
    fw = getattr(dev, "forwarder", None)
    if fw is not None:
        st["registered"] = sorted(fw.registered)   # devices that registered with this gateway
    if rt is not None:
        rt.send_stats(session.conn, "status", st)
    else:
        session.conn.send({"status": st})
