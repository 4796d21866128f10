# The error of a pipe's parameters that build_pipes.py refuses: which parameter is wrong and why,
# said in full. Loaded only for such an error, so the deployment of a good assignment does not
# hold these texts while it makes its pipes (one of its fullest moments).


def short(value):
    from sensormesh.device.steps import rare_call
    return rare_call("sensormesh.device.steps.base", "short", value)


def bad(runtime, sid, params, key):
    """The ValueError of pipe `sid` (key: "to" for a pipe_out, "from" for a pipe_in: its
    address) whose parameters build_pipes.py found wrong."""
    edge = params.get("edge") or sid
    if type(edge) is not str:
        return ValueError("step '%s': edge must be a string naming the edge, got %s" % (sid, short(edge)))
    address = params.get(key)
    if address is not None and type(address) is not str:
        return ValueError("step '%s': %s must be an address string (host:port or unix:path), got %s"
                          % (sid, key, short(address)))
    peer = params.get("peer")
    if peer is not None and type(peer) is not str:
        return ValueError("step '%s': peer must be a device name" % sid)
    if address and peer is None and getattr(runtime.device, "security", None) is not None:
        return ValueError("step '%s': a device with keys needs the pipe's 'peer' (the name of the device at %s) "
                          "to authenticate it" % (sid, address))
    tf = params.get("time-frame", 0)
    if type(tf) is not int or tf < 0:
        return ValueError("step '%s': time-frame must be a non-negative integer" % sid)
    acks = params.get("acks", True)
    if acks is not True and acks is not False:
        return ValueError("step '%s': acks must be true or false" % sid)
    cap = params.get("buffer")
    if cap is not None and (type(cap) is not int or cap < 1):
        return ValueError("step '%s': buffer must be a positive number of values, got %r" % (sid, cap))
    spool = params.get("spool", 0)
    return ValueError("step '%s': spool must be a number of bytes (0: off), got %r" % (sid, spool))
