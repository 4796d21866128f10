# Making a deployment's pipes (pipe_out, pipe_in): their parameters checked and their state set
# up (pipes.PipeOut and pipe_in.PipeIn have no __init__), and the paths between them and the
# outputs (pipe_paths: which pipe_in alone feeds a pipe_out or a sink, which pipe_outs tag their
# values with their lineage, which outputs a pipe_in's values reach). A stage of its own (make_pipes,
# runtime/deploy.py), once the assignment's steps are made and steps/make.py is forgotten, so the
# two never share the heap; forgotten after it on a board running .mpy files. A bad parameter
# raises ValueError naming the step and saying what is wrong (pipe_errors.py, loaded for it). A pipe_in's making is build_pipe_in.py's, loaded only for an
# assignment that has one (a board that only sends never interns its names).
from sensormesh.device.steps import rare_call

# Says what is wrong with a pipe's parameters these checks refuse (loaded for that only).
ERRORS = "sensormesh.device.runtime.pipe_errors"


def make_pipes(rt, built):
    """The assignment's pipes (the specs of built["pipes"]), into built["nodes"], and the paths
    between its pipes and outputs (pipe_paths: built["fed_by"], built["reaches"]) (a deployment's
    stage, runtime/deploy.py)."""
    for spec in built.pop("pipes"):
        t = spec.get("type")
        if t == "pipe_out" or t == "pipe_in":
            params = spec.get("params") or {}
            if t == "pipe_out":
                node = pipe_out(rt, spec["id"], params, built["runs"])
            else:       # build_pipe_in.py, loaded only for an assignment that has one
                node = rare_call("sensormesh.device.runtime.build_pipe_in", "pipe_in", rt, spec["id"], params)
            built["nodes"][spec["id"]] = node
    built["fed_by"], built["reaches"] = pipe_paths(built["order"], built["inputs"], built["nodes"])


def pipe_out(rt, sid, params, runs=True):
    """A pipe_out; runs: it may get runs of values at once (pipe_runs.py, free_running)."""
    if runs:
        from sensormesh.device.runtime import pipe_runs
        po = pipe_runs.PipeOutRuns()
    else:
        from sensormesh.device.runtime.pipes import PipeOut
        po = PipeOut()
    pipe_out_setup(po, rt, sid, params)
    return po


def pipe_setup(p, runtime, sid, params, key):
    """What both ends of a pipe take from their parameters: the runtime, id, edge and the name
    of the other end (peer); returns the other end's address, params[key], if it dials. A
    device with keys authenticates the other end by its name, so it needs one whenever it
    dials."""
    p.rt = runtime
    p.id = sid
    p.edge = params.get("edge") or sid
    address = params.get(key)
    peer = params.get("peer")
    if (peer is not None and type(peer) is not str) or type(p.edge) is not str or (
            address is not None and type(address) is not str) or (
            address and peer is None and getattr(runtime.device, "security", None) is not None):
        raise rare_call(ERRORS, "bad", runtime, sid, params, key)
    p.peer = peer
    return address


def pipe_out_setup(po, runtime, sid, params):
    """Check a pipe_out's parameters and set up its state (pipes.PipeOut)."""
    from sensormesh.device.runtime.pipes import DEFAULT_BUFFER, HEAP_CHECK
    from sensormesh.device.runtime.replay import Sender, new_run
    po.to = pipe_setup(po, runtime, sid, params, "to")
    tf = params.get("time-frame", 0)
    acks = params.get("acks", True)
    cap = params.get("buffer")
    if cap is None:
        cap = DEFAULT_BUFFER
    spool = params.get("spool", 0)
    if (type(tf) is not int or tf < 0 or (acks is not True and acks is not False)
            or type(cap) is not int or cap < 1 or type(spool) is not int or spool < 0):
        raise rare_call(ERRORS, "bad", runtime, sid, params, "to")
    po.tf = tf
    po.tx = Sender(cap, new_run(), acks)
    po.bound = po.tx.cap   # the configured bound; the heap may lower tx.cap for a while (pipes.py)
    if spool and acks:
        po.spool_limit = spool   # (spool.py; a pipe without one keeps none of its state)
    po.lineage = False   # fed by several inputs: each value leaves as [tag, value] (pipe_paths)
    po.conn = None
    po.dialing = None    # the connection being set up (its handshake already queued)
    po.timer = None
    po.retry_timer = None
    po.redials = 0       # redials since the last connection that came up (pipes.redial_delay)
    po.running = False
    po.n_in = 0
    po.connects = 0
    po.logged_drops = 0
    po.stamps = []       # [seq, device, tick_us] of sampled values not sent yet (probe.py)
    po.asked = False     # {"ack-soon"} sent since the last acknowledgement (buffer half full)
    po.frames = 0    # arrays sent
    po.roomy = HEAP_CHECK    # buffer length at which the heap is checked next (pipes.heap_check)


def pipe_paths(order, inputs_of, nodes):
    """Tell each pipe_out fed by one pipe_in alone which one that is (and whether it relays its
    values as they came), and each fed by several inputs to tag its values. Returns (fed_by: sink
    or pipe_out id -> the pipe_in alone feeding it, reaches: pipe_in id -> the ids its values
    reach), which install.py uses and the running assignment does not keep (order: the ids of the
    assignment's nodes, inputs_of: their inputs, in the same order). An input that is no step of
    the assignment is passed over here: the wiring, next, refuses it."""
    inputs = {}
    consumers = {}
    for k in range(len(order)):
        sid = order[k]
        ins = inputs_of[k] or []
        inputs[sid] = ins
        for up in ins:
            consumers.setdefault(up, []).append(sid)

    def reach(start, links):
        seen = {}
        todo = [start]
        while todo:
            i = todo.pop()
            for j in links.get(i, ()):
                if j not in seen:
                    seen[j] = True
                    todo.append(j)
        return seen
    fed_by = {}
    reaches = {}
    for sid in nodes:
        n = nodes[sid]
        pipe = getattr(n, "PIPE", None)     # "in", "out": a pipe_in's, a pipe_out's
        if pipe == "in":
            reaches[sid] = [j for j in reach(sid, consumers)]
        elif pipe == "out" or getattr(n, "SINK", False):
            up = reach(sid, inputs)
            roots = [j for j in up if not inputs.get(j)]
            if len(roots) == 1 and getattr(nodes.get(roots[0]), "PIPE", None) == "in":
                for j in up:
                    if getattr(nodes.get(j), "frame", 0):
                        # a time window, or a step whose timer emits or leaves out values
                        # (throttle, heartbeat, timeout, debounce: `frame` set in their class): a
                        # replay comes faster than the values did, so the same number would name
                        # another value (the receiver would drop new inputs as duplicates): it
                        # takes no numbering back, its receiver counts a new run (at-least-once)
                        break
                else:
                    fed_by[sid] = nodes[roots[0]]
                    if pipe == "out":
                        n.fed_by = nodes[roots[0]]
                        n.relay = inputs.get(sid) == [roots[0]]
            elif pipe == "out" and len(roots) > 1:
                for j in roots:
                    if getattr(nodes.get(j), "PIPE", None) == "in":
                        from sensormesh.device.runtime import joined
                        n.lineage = joined.tagged    # each value leaves as [tag, value]
                        n.lin_last = None     # the input value the last one came from
                        n.lin_k = 0           # and its count
    return fed_by, reaches
