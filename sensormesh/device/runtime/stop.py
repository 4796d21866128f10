# Stopping the running assignment: the last part of the stop and undeploy messages, and the
# teardown that a deployment also runs before it puts a new assignment in place
# (runtime/deploy.py) and a device runs as it exits. Loaded for that and forgotten after it on a
# board running .mpy files (Runtime.rare). A stop is when a board's heap is fullest (every node
# flushes and closes, each pipe's connection closes, and the stopped reply with every step's
# counts is built and sealed), so a stop loads each part's code only while it runs: the nodes
# flush, close and are counted with closes.py loaded (and report.py for the counts), then this
# module lets the nodes go, and the reply is sealed and sent once it is let go too
# (Runtime.handler, Runtime.stopped, replies.py).
import sys

from sensormesh.device.compat import forget
from sensormesh.device.steps import rare_call

_STEPS = "sensormesh.device.steps."
_PIPES = "sensormesh.device.runtime.pipes"


def on_stop(rt, session, final, keep, again):
    """A stop's or an undeploy's last part (closes.closed flushed and closed every node and
    took their counts before this module loaded): the pipeline's final counts, which the
    runtime sends as the reply once this module's code is garbage (Runtime.stopped).
    keep ({"stop": {"keep": true}}): a new deployment follows (the controller moves the
    pipeline); the pipes of its edges carry on the numbering and replay buffers of these."""
    if final is None:           # nothing was running
        if not keep:
            rt.carry = {}
        final = rt.status()
    else:
        final = finish(rt, final, keep, again)
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
    """Stop sources, flush every step upstream-first, close everything (a deployment that
    replaces the running one, the device's exit). Returns the status taken after the flushes
    and closes (so the counts include the last frames), or None if empty.
    keep: a new deployment follows; the pipes' numbering and replay buffers carry over to the
    pipes of the same edges in it."""
    if not rt.nodes:
        if not keep:
            rt.carry = {}
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
    for i in (rt.order if flush else ()):
        try:
            rt.nodes[i].flush()
        except Exception as e:
            rt.log("flush of %s failed: %s" % (i, e))
    again = rare_call("sensormesh.device.runtime.closes", "close_nodes", rt, keep)
    # The counts once every node is flushed and closed (closing changes none of them, and the
    # pipes' connections, closed, no longer share the heap with the counts being gathered)
    return finish(rt, rt.status(), keep, again)


def finish(rt, final, keep, again):
    """After the closes (closes.close_nodes) and the counts: what carries over to the next
    deployment (keep), the nodes let go, the closes that found no heap free tried once more.
    Returns final, its state "stopped"."""
    rt.carry = {}
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
        try:
            if keep and getattr(n, "PIPE", None) == "out":
                n.close(keep=True)    # its replay buffer (and spool) goes on in the next deployment
            else:
                n.close()
        except Exception as e:
            rt.log("close of %s failed: %s" % (i, e))
    final["state"] = "stopped"
    return final
