# Stopping the running assignment: the stop and undeploy messages, and the teardown that a
# deployment also runs before it puts a new assignment in place (runtime/deploy.py). Loaded for
# that and forgotten after it on a board running .mpy files (Runtime.rare). A stop is when a
# board's heap is fullest (every node flushes and closes, each pipe's connection closes, and the
# stopped reply with every step's counts is built and sealed), so nothing else is loaded with it:
# not control.py (the other control messages), and the counts (report.py) only while they are
# made; their reply is sealed and sent once this module is let go (Runtime.stopped, replies.py).
import sys

from sensormesh.device.compat import forget

_STEPS = "sensormesh.device.steps."
_PIPES = "sensormesh.device.runtime.pipes"


def on_stop(rt, session, body):
    """The stopped pipeline's final counts, which the runtime sends as the reply once this
    module's code is garbage (Runtime.stopped).
    {"stop": {"keep": true}}: a new deployment follows (the controller moves the pipeline);
    the pipes of its edges carry on the numbering and replay buffers of these."""
    keep = type(body) is dict and body.get("keep") is True
    final = teardown(rt, keep, False)    # (Runtime.flush_nodes flushed every node before this module loaded)
    if final is None:
        final = rt.status()
    if not keep:
        # Nothing runs now: the step families' code and the pipe senders' (a board running .mpy
        # files loads them again for its next deployment) go before the reply is sealed. (Not
        # short.refuse's wider sweep of runtime/: a stopped runtime keeps its callbacks'
        # Delivery and Sender objects, whose modules must stay the ones it imported.)
        for name in list(sys.modules):
            if name.startswith(_STEPS) or name == _PIPES:
                forget(name)
    return final


on_undeploy = on_stop


def teardown(rt, keep=False, flush=True):
    """Stop sources, flush every step upstream-first, close everything. Returns the status
    taken after the flushes and closes (so the counts include the last frames), or None if
    empty.
    keep: a new deployment follows; the pipes' numbering and replay buffers carry over to the
    pipes of the same edges in it."""
    if not keep:
        rt.carry = {}
    if not rt.nodes:
        return None
    # each node's flush, stats and close load the module of its rarely called methods for the
    # call (steps/__init__.py, Rarely): one at a time, so a board never holds them all at once
    for s in rt.sources:
        try:
            s.close()
        except MemoryError:
            # no heap free for its code (sources.py, loaded for the call): it samples no more,
            # and its close comes again with the other nodes' (a stop that raised here sent no
            # final counts and left every node open)
            s.running = False
    if rt.probe is not None:
        from sensormesh.device.runtime.probe import run
        run(rt.probe, None, False)         # the metrics probe's sample timer stops
        # and goes with the nodes it times: a metrics request to the stopped device (`top`
        # after `stop`, a re-route whose deployment failed) found its plan naming steps that
        # were gone and got no answer
        rt.probe = None
    for i in (rt.order if flush else ()):
        try:
            rt.nodes[i].flush()
        except Exception as e:
            rt.log("flush of %s failed: %s" % (i, e))
    if rt.deliveries:
        from sensormesh.device.runtime import delivery
        delivery.send(rt)
    # A close that finds no memory free for its code (loaded for it on a board) is tried once
    # more after the other nodes are let go: a node left unclosed would keep its timers running.
    # (A plain loop: a comprehension's state would be on the heap while every close runs.)
    again = []
    for i in rt.order:
        if not _close(rt, i, rt.nodes[i], keep, True):
            again.append((i, rt.nodes[i]))
    # The counts once every node is flushed and closed (closing changes none of them, and the
    # pipes' connections, closed, no longer share the heap with the counts being gathered)
    final = rt.status()
    if keep:
        for sid in rt.deliveries:
            rt.carry["cb " + sid] = rt.deliveries[sid].tx
        for e in rt.pipe_outs:
            rt.carry["out " + e] = rt.pipe_outs[e].tx
        for e in rt.pipe_ins:
            rt.carry["in " + e] = rt.pipe_ins[e].rx
    rt.nodes = {}
    rt.order = []
    rt.sources = []
    rt.pipe_outs = {}
    rt.pipe_ins = {}
    rt.state = "empty"
    for i, n in again:
        _close(rt, i, n, keep, False)
    final["state"] = "stopped"
    return final


def _close(rt, i, n, keep, first):
    """Close node i; False if it found no memory free and this was the first try."""
    try:
        if keep and getattr(n, "PIPE", None) == "out":
            n.close(keep=True)    # its replay buffer (and spool) goes on in the next deployment
        else:
            n.close()
    except MemoryError as e:
        if first:
            return False
        rt.log("close of %s failed: %s" % (i, e))
    except Exception as e:
        rt.log("close of %s failed: %s" % (i, e))
    return True
