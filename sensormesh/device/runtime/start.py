# Starting the deployed assignment (the start message): pipe receivers, then pipe senders, then
# sources, then the metrics probe's timer. Loaded for the message and forgotten after it on a
# board running .mpy files (Runtime.rare); a module of its own, as small as it can be, because a
# keyed board's pipe dials on the next loop turn, loading the handshake's code while the heap is
# at its fullest: what this message loaded is garbage by then, and the less of it, the fewer
# holes it leaves between what stays.


def on_start(rt, session, body):
    if rt.state == "empty":
        session.conn.send({"error": {"code": "not-deployed", "message": "nothing is deployed on this device"}})
        return
    if rt.state != "running":
        for kind in ("in", "out"):     # pipe receivers, then pipe senders, then sources
            for i in rt.order:
                n = rt.nodes[i]
                if getattr(n, "PIPE", None) == kind:
                    n.start()
        for n in rt.sources:
            n.start()
        if rt.probe is not None:
            from sensormesh.device.runtime.probe import run
            run(rt.probe, None, None)      # the metrics probe's sample timer: its first turn
        rt.state = "running"
    session.conn.send({"started": {"pipeline": rt.pipeline, "epoch": rt.epoch}})
