# Accepted connections of a device with keys until they authenticate: each takes a
# pre-authentication slot (bounded in all and per peer host), may send only small frames and has
# a deadline; its first message must be a hello, which accept.py and server.py check once the
# slot is released. Loaded when a connection is accepted, forgotten when none waits for its hello
# any more (basics.idle()): while a connection waits for its hello a device holds this module
# alone, and a hello does not find it in memory unless another connection still waits. Refusing a
# connection (refuse) loads it too.
from sensormesh.device.schedule import sparse
from sensormesh.device.secure import HELLO_MAX_FRAME, PERMISSIONS, admitting, load


def denied(role, command):
    """Why a peer of this role may not send this command, or None if it may (secure.PERMISSIONS)."""
    allowed = PERMISSIONS.get(role, ())
    if allowed is None or command in allowed:
        return None
    return "a %s key may not send %r (allowed: %s)" % (role, command, ", ".join(allowed) or "nothing")


def host_of(conn):
    """The peer's address without its port: pre-authentication slots are counted per host."""
    p = conn.peer
    return p[0] if type(p) is tuple else p


def per_host(max_handshakes):
    # No single peer address may hold every pre-authentication slot: at most half of them
    # (one on a board with two), so clients from other addresses always find one free.
    return max_handshakes // 2 if max_handshakes > 1 else 1


def hold(sec, session, conn):
    """The connection is unauthenticated: it takes a pre-authentication slot (bounded in all
    and per peer host), may send only small frames and has a deadline. Whatever its first
    message (a hello, or a plaintext register), it keeps these until authenticated."""
    host = host_of(conn)
    mine = sec.pending_by.get(host, 0)
    if sec.pending >= sec.max_handshakes:
        refuse(sec, session, conn, "busy", "too many handshakes in progress on device %s (limit %d); "
                   "try again later" % (sec.dev.name, sec.max_handshakes))
    elif mine >= per_host(sec.max_handshakes):
        refuse(sec, session, conn, "busy", "too many handshakes in progress from %s on device %s "
                   "(limit %d per address); try again later" % (host, sec.dev.name,
                                                               per_host(sec.max_handshakes)))
    else:
        # what may need heap first (attributes, the deadline's timer, the host's entry), the
        # counts last: a MemoryError on the way leaves no slot counted that nothing releases
        session.hs_host = host
        t = sec.dev.loop.call_later(sec.handshake_ms, lambda: _expire(sec, session))
        try:
            session.hs = t
            sec.pending_by[host] = mine + 1
        except MemoryError:
            session.hs = None
            t.cancel()
            raise
        sec.pending += 1
        admitting[0] += 1
        conn.decoder.max_frame = HELLO_MAX_FRAME
        return
    idle()


def _expire(sec, session):
    if session.hs is None:
        return
    release(sec, session)
    conn = session.conn
    if conn is not None and not conn.closed:
        what = "no secure session through it" if session.kind == "registered" else "no valid hello"
        refuse(sec, session, conn, "timeout", "%s within %d ms of connecting" % (what, sec.handshake_ms))
    idle()


def release(sec, session):
    """The connection is no longer a handshake in progress (done, refused or closed)."""
    t = session.hs
    if t is not None:
        session.hs = None
        t.cancel()
        sec.pending -= 1
        admitting[0] -= 1
        host = session.hs_host
        n = sec.pending_by.get(host, 1) - 1
        if n > 0:
            sec.pending_by[host] = n
        else:
            sec.pending_by.pop(host, None)


def refuse(sec, session, conn, code, message):
    """Refuse a connection (a handshake that failed, a role's message it may not send, a key
    revoked): count it, log it (the 1st, 2nd, 4th... of each code: a flood cannot flood the
    log), send the error and close."""
    n = sec.refused.get(code, 0) + 1
    sec.refused[code] = n
    if sparse(n):
        who = getattr(session, "peer_name", None) or conn.peer
        sec.dev.log("refused connection%s: %s: %s (%d so far)"
                    % (" from %s" % (who,) if who else "", code, message, n))
    session.fail(conn, code, message)


def wrong_role(sec, session, key):
    """Security.permit: the session's peer may not send control message `key`: refused."""
    refuse(sec, session, session.conn, "wrong-role", "%s (key %r)" % (denied(session.role, key),
                                                                       session.peer_name))
    idle()


def authenticated(sec, session, conn):
    """A registration's end-to-end session is up (its welcome passed this gateway): lift the
    pre-authentication bounds. The peer authenticated to the controller, not to us."""
    release(sec, session)
    conn.decoder.max_frame = sec.dev.max_frame
    idle()


def idle():
    """basics.idle(): forget the handshake's code no handshake needs now (this module too, once no
    connection waits for its hello). Short of memory to load basics.py for it, the next
    handshake's end does it."""
    try:
        basics = load("basics")
    except MemoryError:
        return
    basics.idle()
