# A stop's or an undeploy's first parts, and the closing of every node of the running
# assignment that the teardown before a new deployment or at a device's exit also runs
# (stop.py). A stop is a board's fullest moment: each node's close loads its family's code for
# the call (steps/__init__.py, Rarely), a pipe's close flushes and closes its connection, and the
# counts gathered after them load report.py. So a stop runs a part at a time (Runtime.handler):
# this small module flushes, closes and counts the nodes, and stop.py's code (letting the nodes
# go, the final counts) loads once this module is let go.


def closed(rt, body):
    """A stop's first parts: every node flushes its last values, upstream first, then closes;
    their counts are gathered. Returns (final counts or None when nothing runs, keep, the closes
    that found no heap free) for stop.on_stop.
    {"stop": {"keep": true}}: a new deployment follows (the controller moves the pipeline)."""
    keep = type(body) is dict and body.get("keep") is True
    if not rt.nodes:
        return None, keep, None
    rt.flush_nodes(body)
    again = close_nodes(rt, keep)
    return rt.status(), keep, again


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
