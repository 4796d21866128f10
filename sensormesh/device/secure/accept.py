# An accepted connection's hello (Security.handshake, once admit.py has let go of the
# connection's pre-authentication slot and, when no other connection waits for its hello, been
# forgotten): checked by server.py, answered with a welcome, and the connection's session set up;
# or refused (admit.refuse, loaded for a refusal). Loaded for the hello and forgotten right after
# (basics.idle()), so a board holds this module, wire.py and server.py for a hello, and admit.py
# only while a connection waits for one. A hello from a pipe's sender the deployment prepared
# (keys.prepare) loads nothing else of the handshake; any other one loads keys.py too (the trust
# store, the pair-key cache).
from sensormesh.device.secure import load
from sensormesh.device.secure.welcome import wrap_limit


def refuse(sec, session, conn, code, message):
    """admit.refuse, admit.py loaded for it (short of memory for that: closed all the same)."""
    try:
        a = load("admit")
    except MemoryError:
        conn.close("%s: %s" % (code, message))
        return
    a.refuse(sec, session, conn, code, message)
    a.idle()


def idle():
    """basics.idle(): the hello's code forgotten (this module with it). Short of memory to load
    basics.py for it, the next handshake's end does it."""
    try:
        load("basics").idle()
    except MemoryError:
        pass


def handshake(sec, session, conn, msg):
    """The first message of an accepted connection: a hello, or a refusal."""
    try:
        ss, welcome = _receive(sec, msg)
    except MemoryError:
        # say so and close, rather than leave the peer waiting for a welcome
        idle()
        refuse(sec, session, conn, "busy", "no memory free for a handshake now; try again later")
        return
    if ss is None:               # refused: welcome is the HandshakeError
        refuse(sec, session, conn, welcome.code, welcome.message)
        return
    conn.decoder.max_frame = sec.dev.max_frame
    conn.send(welcome)           # the last plaintext frame of this connection
    conn.channel = ss.channel
    conn.peer_max_frame = wrap_limit(conn.peer_max_frame)   # tokens within the peer's limit
    session.role = ss.role
    session.peer_name = ss.peer
    session.peer_fp = ss.peer_fp
    ss = None
    sec.accepted += 1
    idle()


def _receive(sec, msg):
    """(ServerSession, welcome) of a hello, or (None, HandshakeError). A client the deployment prepared
    (keys.prepare: its role, pair key and key fingerprint, kept while the trust files are
    unchanged) is checked without keys.py; any other is looked up in the trust store. A new peer
    key's pair key is computed once server.py has checked everything before it, with server.py
    forgotten meanwhile (keys.PairNeeded): the key agreement's code and the server's are never
    in memory at once. The second pass finds the pair key cached; nothing before it changed any
    state."""
    wire = load("wire")
    try:
        hello = msg.get("hello") if type(msg) is dict else None
        client = hello.get("from") if type(hello) is dict else None
        if type(client) is str and client in sec.prepared and wire.stamps(sec) == sec.stamps:
            return _serve(sec, msg, None, False)
        keys = load("keys")
        try:
            return _serve(sec, msg, keys, True)
        except keys.PairNeeded as e:
            peer = e.args[0]
        keys.drop("server")
        keys.pair_now(sec, peer)
        return _serve(sec, msg, keys, False)
    except wire.HandshakeError as e:
        return None, e


def _serve(sec, msg, keys, defer):
    server = load("server")
    replay = server.ReplayCache(state=sec.replay_state)
    if keys is None:
        ss = server.ServerSession(sec.identity, None, replay=replay, known=sec.prepared)
    else:
        ss = server.ServerSession(keys.device_identity(sec, defer), keys.device_trust(sec), replay=replay,
                                  pairs=keys.device_pairs(sec))
    return ss, ss.receive(msg)
