# Secure sessions on a live device (CPython and MicroPython, same code).
#
# Imported only by a device that has keys (config "identity" + "trust"), so a board that runs
# without keys never loads the crypto modules. sensormesh/device/secure/handshake.py is the sans-IO handshake;
# this module puts it on the device's connections:
#   accepted connections  the first message must be a hello; anything else is refused
#                         (plaintext-refused). Until it arrives the connection counts as a
#                         handshake in progress (bounded: busy), has a deadline (timeout) and may
#                         only send small frames. Afterwards every control message is checked
#                         against the peer's role (check_permission).
#   dialed connections    pipes to other devices: Dialer does the client side of the handshake,
#                         then hands the connection to the pipe.
#   registrations         a device behind a one-way link dials out to register (forward.py) and
#                         is the server of the handshake on that connection: after the
#                         upstream's answer the first message must be a hello (await_hello).
# The trust store (and an optional extra revoked list) is re-read when its file changes, checked
# at every new handshake: a revoked key is refused from the next connection on, and the device
# closes the sessions it still has with that key.
import os

from sensormesh.device.compat import MICROPYTHON, collect
from sensormesh.device.schedule import sparse
from sensormesh.device.secure import keys as K
from sensormesh.device.secure.keys import HandshakeError

from sensormesh.device.secure.keys import DEFAULT_HANDSHAKE_MS, HELLO_MAX_FRAME  # noqa: F401 (the API)

DEFAULT_MAX_HANDSHAKES = 2 if MICROPYTHON else 16


# The handshake's code is loaded while a connection authenticates and forgotten when none does
# (MicroPython; on CPython it stays): handshake.py (the server side, the key files' parsers) for
# accepted connections, hello.py alone (the client side and its Dialer) for a pipe dialing out.
# Between handshakes a board keeps only this module, keys.py, fernet.py and x25519.py.
def _handshake():
    try:
        from sensormesh.device.secure import handshake
    except MemoryError:
        collect()      # what the connections before this one left may be garbage only now
        from sensormesh.device.secure import handshake
    return handshake


def _hello():
    try:
        from sensormesh.device.secure import hello
    except MemoryError:
        collect()
        from sensormesh.device.secure import hello
    return hello


def dial(loop, address, protocol, creds, server, roles=None, handshake_ms=DEFAULT_HANDSHAKE_MS,
         max_frame=None, log=None):
    """transport.dial with the client side of the handshake in front (session.Credentials as
    `creds`, the device's name as `server`). Messages sent on the returned connection before the
    session is up are held and leave, encrypted, once it is; protocol.on_connect(conn) runs
    then. A refusal reaches protocol.on_message as {"error": ...}, then the connection closes."""
    return _hello().dial(loop, address, protocol, creds, server, roles, handshake_ms, max_frame, log)


def host_of(conn):
    """The peer's address without its port: pre-authentication slots are counted per host."""
    p = conn.peer
    return p[0] if type(p) is tuple else p


def per_host(max_handshakes):
    # No single peer address may hold every pre-authentication slot: at most half of them
    # (one on a board with two), so clients from other addresses always find one free.
    return max_handshakes // 2 if max_handshakes > 1 else 1


def _stamp(src):
    if type(src) is not str:
        return None
    try:
        st = os.stat(src)
    except OSError:
        return None
    return (st[6], getattr(st, "st_mtime_ns", st[8]))


def _bounded(v, what, default):
    if v is None:
        return default
    if type(v) is not int or v <= 0:
        raise ValueError("%s must be a positive integer, got %r" % (what, v))
    return v


class Security:
    """A device's identity, trust store, replay cache, pair keys and connection limits."""

    def __init__(self, dev, cfg):
        self.dev = dev
        src = cfg.get("identity")
        try:
            self.identity = _handshake().load_identity(src)
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ValueError("cannot load the device identity %s: %s" % (src if type(src) is str else "(inline)", e))
        if self.identity.role != "device":
            raise ValueError("identity %r has role %r; a device needs a device key (sensormesh keys issue NAME "
                             "--role device)" % (self.identity.name, self.identity.role))
        self.trust_src = cfg.get("trust")
        if self.trust_src is None:
            raise ValueError("a device with an identity needs a trust store: config 'trust' or --trust FILE")
        self.revoked_src = cfg.get("revoked")
        self.max_handshakes = _bounded(cfg.get("max_handshakes"), "max_handshakes", DEFAULT_MAX_HANDSHAKES)
        self.handshake_ms = _bounded(cfg.get("handshake_ms"), "handshake_ms", DEFAULT_HANDSHAKE_MS)
        self._trust = None
        self._stamps = None
        self.trust()
        self.replay = K.ReplayCache()
        self.pairs = K.PairCache(8 if MICROPYTHON else 256)   # ~100 bytes each
        self.pending = 0      # accepted connections waiting for their hello
        self.pending_by = {}  # peer host -> how many of those it holds
        self.accepted = 0     # handshakes completed
        self.refused = {}     # code -> count
        K.idle()

    # -- trust store -----------------------------------------------------------------------
    def trust(self):
        """The current trust store, re-read if its file (or the revoked file) changed."""
        stamps = (_stamp(self.trust_src), _stamp(self.revoked_src))
        if self._trust is not None and stamps == self._stamps:
            return self._trust
        from sensormesh.device.secure import trust       # reading the files (forgotten when idle)
        return trust.reload_trust(self, stamps)

    # -- accepted connections --------------------------------------------------------------
    def on_open(self, session, conn):
        self.hold(session, conn)

    def hold(self, session, conn):
        """The connection is unauthenticated: it takes a pre-authentication slot (bounded in
        all and per peer host), may send only small frames and has a deadline. Whatever its
        first message (a hello, or a plaintext register), it keeps these until authenticated."""
        host = host_of(conn)
        mine = self.pending_by.get(host, 0)
        if self.pending >= self.max_handshakes:
            self.refuse(session, conn, "busy", "too many handshakes in progress on device %s (limit %d); "
                        "try again later" % (self.dev.name, self.max_handshakes))
            return
        if mine >= per_host(self.max_handshakes):
            self.refuse(session, conn, "busy", "too many handshakes in progress from %s on device %s "
                        "(limit %d per address); try again later" % (host, self.dev.name,
                                                                    per_host(self.max_handshakes)))
            return
        self.pending += 1
        self.pending_by[host] = mine + 1
        session.hs_host = host
        conn.decoder.max_frame = HELLO_MAX_FRAME
        session.hs = self.dev.loop.call_later(self.handshake_ms, lambda: self._expire(session))

    def await_hello(self, session, conn):
        """A connection this device dialed to register (forward.Registration): after the
        upstream's answer, the first message it serves must be a hello, checked by handshake()
        like an accepted connection's (trust, replay, roles; then permit() per message), with
        the same small frame limit until then. It takes no handshake slot and has no deadline:
        the controller's hello may come long after the device registered, and only the upstream
        the device chose to dial can hold this connection (which it could cut anyway)."""
        conn.decoder.max_frame = HELLO_MAX_FRAME

    def _expire(self, session):
        if session.hs is None:
            return
        self.release(session)
        conn = session.conn
        if conn is not None and not conn.closed:
            what = "no secure session through it" if session.kind == "registered" else "no valid hello"
            self.refuse(session, conn, "timeout", "%s within %d ms of connecting" % (what, self.handshake_ms))

    def release(self, session):
        """The connection is no longer a handshake in progress (done, refused or closed)."""
        t = session.hs
        if t is not None:
            session.hs = None
            t.cancel()
            self.pending -= 1
            host = session.hs_host
            n = self.pending_by.get(host, 1) - 1
            if n > 0:
                self.pending_by[host] = n
            else:
                self.pending_by.pop(host, None)

    def authenticated(self, session, conn):
        """A registration's end-to-end session is up (its welcome passed this gateway): lift the
        pre-authentication bounds. The peer authenticated to the controller, not to us."""
        self.release(session)
        conn.decoder.max_frame = self.dev.max_frame

    def handshake(self, session, conn, msg):
        """The first message of an accepted connection: a hello, or a refusal."""
        self.release(session)
        try:
            ss = _handshake().ServerSession(self.identity, self.trust(), replay=self.replay, pairs=self.pairs)
            welcome = ss.receive(msg)
        except HandshakeError as e:
            ss = None
            self.refuse(session, conn, e.code, e.message)
            K.idle()
            return
        except MemoryError:
            # say so and close, rather than leave the peer waiting for a welcome
            ss = None
            K.idle()
            self.refuse(session, conn, "busy", "no memory free for a handshake now; try again later")
            return
        conn.decoder.max_frame = self.dev.max_frame
        conn.send(welcome)           # the last plaintext frame of this connection
        conn.wrap = ss.wrap
        conn.unwrap = ss.unwrap
        conn.wrap_limit = K.wrap_limit(conn.peer_max_frame)
        session.role = ss.role
        session.peer_name = ss.peer
        session.peer_fp = ss.peer_fp
        ss = None
        self.accepted += 1
        K.idle()

    def permit(self, session, key):
        """May this session's peer send control message `key`? Refuses (and closes) if not."""
        try:
            K.check_permission(session.role, key)
            return True
        except HandshakeError as e:
            self.refuse(session, session.conn, e.code, "%s (key %r)" % (e.message, session.peer_name))
            return False

    def refuse(self, session, conn, code, message):
        n = self.refused.get(code, 0) + 1
        self.refused[code] = n
        if sparse(n):   # 1st, 2nd, 4th, ... of each kind: a flood cannot flood the log
            who = getattr(session, "peer_name", None) or conn.peer
            self.dev.log("refused connection%s: %s: %s (%d so far)"
                         % (" from %s" % (who,) if who else "", code, message, n))
        session.fail(conn, code, message)

    def wrap_limit(self, max_frame):
        return K.wrap_limit(max_frame)

    def status(self):
        return {"identity": self.identity.name, "handshakes": self.pending, "accepted": self.accepted,
                "refused": dict(self.refused), "max_handshakes": self.max_handshakes,
                "key_agreements": self.pairs.computed}

    # -- dialed connections ----------------------------------------------------------------
    def dial(self, address, protocol, peer, first):
        """Dial another device as this device's identity; `first` goes out once the session is up."""
        return _hello().dial_as(self, self.dev.loop, address, protocol, peer, first, ("device",),
                                self.dev.max_frame, self.dev.log)
