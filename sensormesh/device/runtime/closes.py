# Closing every node of the running assignment, upstream first: for a stop or an undeploy
# (Runtime.stopping) and for the teardown before a new deployment or at the device's exit
# (stop.py). Each node's close loads its family's code for the call (steps/__init__.py,
# Rarely), and a pipe's close flushes and closes its connection: with the status gathered after
# it, a board's fullest moment. So this small module is all the stop has loaded then; stop.py's
# code (the rest of the stop) loads once the nodes are closed and their counts taken.


def close_nodes(rt, keep):
    """The metrics probe's timer stops, callback values still held leave, then every node
    closes. keep: a new deployment follows; each pipe_out keeps its replay buffer (and spool)
    for the pipe of the same edge in it. Returns [(id, node)] of the closes that found no heap
    free for their code: tried again once the nodes are let go (stop.finish)."""
    if rt.probe is not None:
        from sensormesh.device.runtime.probe import run
        run(rt.probe, None, False)         # the metrics probe's sample timer stops
        # and goes with the nodes it times: a metrics request to the stopped device (`top`
        # after `stop`, a re-route whose deployment failed) found its plan naming steps that
        # were gone and got no answer
        rt.probe = None
    if rt.deliveries:
        from sensormesh.device.runtime import delivery
        delivery.send(rt)
    # (A plain loop: a comprehension's state would be on the heap while every close runs.)
    again = []
    for i in rt.order:
        n = rt.nodes[i]
        try:
            if keep and getattr(n, "PIPE", None) == "out":
                n.close(keep=True)
            else:
                n.close()
        except MemoryError:
            if n in rt.sources:
                n.running = False      # no heap for its code now: it samples no more
            again.append((i, n))
        except Exception as e:
            rt.log("close of %s failed: %s" % (i, e))
    return again
