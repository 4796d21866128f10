# An accepted connection's hello (Security.handshake, once admit.py has let go of the
# connection's pre-authentication slot and, when no other connection waits for its hello, been
# forgotten): the welcome answered and the connection's session set up, or a refusal
# (admit.refuse, loaded for a refusal). Loaded for the hello and forgotten right after
# (basics.idle()). A hello from a pipe's sender the deployment prepared (keys.prepare) that
# passes every check is served here (fast) with basics.py and welcome.py only; any other hello,
# or one that fails a check, is checked by server.py (with wire.py), which says why it is
# refused, and a client the deployment did not prepare is looked up with keys.py too (the trust
# store, the pair-key cache).
import os

from sensormesh.device.compat import unix_time
from sensormesh.device.secure import load
from sensormesh.device.secure.basics import (_NONCE, DEFAULT_WINDOW, VERSION, _transcript, replay_at, replay_put,
                                             stamps)
from sensormesh.device.secure.channel import Channel, b64encode, equal, hmac_sha256
from sensormesh.device.secure.welcome import keys, raw, wrap_limit

# Largest frame a reader may send once authenticated (its requests are small): a reader's key
# cannot make a device buffer a frame of the device's own limit (4 MiB on CPython). Kept here,
# loaded per hello, rather than in secure/__init__.py, which a keyed board keeps resident.
READER_MAX_FRAME = 16384


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
    if type(msg) is not dict or "hello" not in msg or msg["hello"] == {}:
        # a client without keys (plaintext): refused in server.py's words without loading the
        # server side (wire.py, keys.py, server.py), which a busy board may have no heap for and
        # which a client without keys should not make it load
        plain(sec, session, conn, msg)
        return
    try:
        done = fast(sec, msg, int(unix_time())) or _receive(sec, msg)
    except MemoryError:
        # say so and close, rather than leave the peer waiting for a welcome
        idle()
        refuse(sec, session, conn, "busy", "no memory free for a handshake now; try again later")
        return
    ch, welcome = done[0], done[1]
    if ch is None:               # refused: welcome is the HandshakeError
        refuse(sec, session, conn, welcome.code, welcome.message)
        return
    # a reader sends small requests only: its frames stay bounded (a controller's deployment
    # and a device's pipe data may need the device's whole frame limit)
    m = sec.dev.max_frame
    conn.decoder.max_frame = READER_MAX_FRAME if done[2][0] == "reader" and m > READER_MAX_FRAME else m
    conn.send(welcome)           # the last plaintext frame of this connection
    conn.channel = ch
    conn.peer_max_frame = wrap_limit(conn.peer_max_frame)   # tokens within the peer's limit
    session.role, session.peer_name, session.peer_fp = done[2]
    done = ch = None
    sec.accepted += 1
    idle()


def plain(sec, session, conn, msg):
    """Refuse a first message that is no keyed hello (server.ServerSession's texts 5-7)."""
    try:
        r = load("refused")
        if type(msg) is not dict:
            text = r.HELLO[7]
        elif "hello" in msg:
            text = r.HELLO[5]
        else:
            text = r.HELLO[6] % ",".join(sorted(msg))
        r = None
    except MemoryError:
        text = "the first message must be a keyed hello"
    refuse(sec, session, conn, "plaintext-refused", text)


def fast(sec, msg, now):
    """(Channel, welcome, (role, name, key fingerprint)) of a hello from a client the deployment
    prepared (while the trust files are unchanged) that passes every check server.ServerSession
    makes, its nonce remembered; None for any other hello, changing nothing (server.py checks it
    and says why it fails, or serves it: a replay cache that is full, a client not prepared)."""
    body = msg.get("hello") if type(msg) is dict else None
    if type(body) is not dict or body.get("v") != VERSION or type(body.get("v")) is not int:
        return None
    client = body.get("from")
    me = sec.name
    ts = body.get("ts")
    known = sec.prepared.get(client) if type(client) is str else None
    if known is None or body.get("to") != me or type(ts) is not int or not 0 < len(client) <= 64 \
            or not now - DEFAULT_WINDOW <= ts <= now + DEFAULT_WINDOW or stamps(sec) != sec.stamps:
        return None
    for c in client:
        if c not in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-":   # (server.valid_name)
            return None
    nonce = raw(body, "nonce", _NONCE)
    mac = raw(body, "mac", 32)
    state = sec.replay_state
    if nonce is None or mac is None or ts <= state[2].get(client, -1) or replay_at(state, nonce) is not None:
        return None
    transcript = _transcript(client, me, ts, nonce)
    pair = known[1]
    if not equal(hmac_sha256(pair, transcript), mac):
        return None
    at = replay_at(state, None)
    if at is None:      # the cache is full: server.py makes room
        return None
    replay_put(state, at, nonce, ts, client)
    snonce = os.urandom(_NONCE)
    c2s, s2c, proof = keys(pair, nonce, snonce, transcript, mac, me)
    return Channel(s2c, c2s), {"welcome": {"v": VERSION, "from": me, "nonce": b64encode(snonce).decode(),
                                           "proof": b64encode(proof).decode()}}, (known[0], client, known[2])


def _receive(sec, msg):
    """(Channel, welcome, (role, name, key fingerprint)) of a hello server.py checks, or (None,
    HandshakeError). A client the deployment prepared (keys.prepare: its role, pair key and key
    fingerprint, kept while the trust files are unchanged) is checked without keys.py; any other
    is looked up in the trust store. A new peer key's pair key is computed once server.py has
    checked everything before it, with server.py forgotten meanwhile (keys.PairNeeded): the key
    agreement's code and the server's are never in memory at once. The second pass finds the
    pair key cached; nothing before it changed any state."""
    wire = load("wire")
    try:
        hello = msg.get("hello") if type(msg) is dict else None
        client = hello.get("from") if type(hello) is dict else None
        if type(client) is str and client in sec.prepared and stamps(sec) == sec.stamps:
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
    welcome = ss.receive(msg)
    return ss.channel, welcome, (ss.role, ss.peer, ss.peer_fp)
