# Secure sessions on a live device (CPython and MicroPython, same code).
#
# Imported only by a device that has keys (config "identity" + "trust"), so a board that runs
# without keys never loads the crypto modules. What a device keeps while its sessions run is
# this module (Security: its keys as plain data, its limits and counters, each message's
# permission check) and channel.py (every frame's token). The handshake's code loads for a
# handshake and is forgotten when none is in progress (basics.idle(); on MicroPython from .mpy files,
# on CPython it stays):
#   accepted connections  admit.py: the first message must be a hello; anything else is refused
#                         (plaintext-refused). Until it arrives the connection counts as a
#                         handshake in progress (bounded: busy), has a deadline (timeout) and may
#                         only send small frames. server.py checks the hello. Afterwards every
#                         control message is checked against the peer's role (permit).
#   dialed connections    pipes to other devices: the client side of the handshake, a step
#                         at a time (dial_hello.py: the hello; welcome.py: the welcome's check and
#                         the session keys; dial_failed.py: a failure), then the connection is
#                         the pipe's. Between the hello and the welcome the dial is plain data
#                         (`dials`) and dial_wait.py, the connection's protocol, the only code
#                         loaded for it. (Processes that are not devices use hello.py's
#                         ClientSession and dialer.py's Dialer instead.)
#   registrations         a device behind a one-way link dials out to register (forward.py) and
#                         is the server of the handshake on that connection: after the
#                         upstream's answer the first message must be a hello (forward.py
#                         sets the small frame limit; admit.authenticated lifts it).
# Refusing a connection (admit.refuse: the error sent, the refusal counted and logged sparsely)
# loads admit.py too.
# Both sides use keys.py (and x25519.py for a key agreement); trust.py reads the key files.
# The trust store (and an optional extra revoked list) is re-read when its file changes, checked
# at every new handshake: a revoked key is refused from the next connection on, and the device
# closes the sessions it still has with that key.
from sensormesh.device import transport
from sensormesh.device.compat import MICROPYTHON, collect, from_mpy

# Largest frame accepted before the handshake: a hello is about 250 bytes.
HELLO_MAX_FRAME = 4096
DEFAULT_HANDSHAKE_MS = 10000 if MICROPYTHON else 5000
DEFAULT_MAX_HANDSHAKES = 2 if MICROPYTHON else 16

# Control messages each role may send once authenticated; None = all of them. Lists, not tuples:
# a tuple constant would hold the names not interned yet as string objects of its own, for good.
PERMISSIONS = {
    "controller": None,
    "device": ["pipe", "pull", "info", "ping"],
    "reader": ["data-request", "info", "ping", "status", "metrics", "clock"],
}

busy = [0]        # client handshakes in progress (dialer.Dialer), whose sessions live across loop turns
admitting = [0]   # accepted connections waiting for their hello, on every device of this process
# A device's dials waiting for their welcome, each a list (dial_hello.py makes it): [its
# connection, the Security dialing, the pipe's protocol object, the peer's name, the message
# that leaves first, the peer's (role, pair key, key fingerprint), the hello's (nonce,
# transcript, MAC) or None once the dial failed, the welcome's deadline (a transport.Timer)].
dials = []


def load(name):
    """The module secure.`name` of the handshake's code, loaded if it was forgotten."""
    name = "sensormesh.device.secure." + name
    try:
        return __import__(name, None, None, ("x",))
    except MemoryError:
        collect()      # what the connections before this one left may be garbage only now
        return __import__(name, None, None, ("x",))


class Security:
    """A device's identity, trust store, replay cache, pair keys and connection limits.

    Between handshakes all of it is plain data (bytes, bytearrays, lists, dicts), so that no
    object keeps the handshake's code loaded; keys.py makes its objects for one handshake.
    It is its own identity (`identity` is itself): the device's name, role and key (its 32
    secret bytes and their public half) are its attributes name, role, secret and pub, of which
    keys.device_identity() makes the Identity a handshake uses."""

    role = "device"        # (trust.configure refuses any other identity)
    revoked_src = None     # the revoked list's file or object, when configured

    def __init__(self, dev, cfg):
        # the attributes: trust.configure() sets them
        self.dev = dev
        load("trust").configure(self, cfg)

    # -- accepted connections (admit.py) ---------------------------------------------------
    def on_open(self, session, conn, now=False):
        if not now and from_mpy():
            # a board forgetting code: on this loop turn, once the code that accepted the
            # connection (accepting.py) has returned, so admit.py never shares the heap with it
            self.dev.loop.call_soon(lambda: conn.closed or self.on_open(session, conn, True))
            return
        try:
            load("admit").hold(self, session, conn)
        except MemoryError:
            # no heap for its slot's code: closed, not left open without a slot, a deadline
            # and a hello's frame limit (its peer dials again)
            conn.close("busy")

    def release(self, session):
        """The connection is no longer a handshake in progress (closed)."""
        a = load("admit")
        a.release(self, session)
        a.idle()

    def handshake(self, session, conn, msg):
        """The first message of an accepted connection: a hello, or a refusal (accept.py), its
        slot released first (admit.py forgotten then, unless another connection waits for its
        hello: it does not share the heap with the server side)."""
        try:
            self.release(session)
            a = load("accept")
        except MemoryError:
            # no heap for the hello's code now: the peer dials again (a slot that admit.py found
            # no heap to release is released at its deadline)
            conn.close("busy")
            return
        a.handshake(self, session, conn, msg)

    # -- established sessions --------------------------------------------------------------
    def permit(self, session, key):
        """May this session's peer send control message `key`? Refuses (and closes) if not."""
        allowed = PERMISSIONS.get(session.role, ())
        if allowed is None or key in allowed:
            return True
        try:
            a = load("admit")     # a refusal's code (admit.wrong_role): loaded for it
        except MemoryError:
            session.conn.close("wrong-role: a %s key may not send %r" % (session.role, key))    # close all the same
            return False
        a.wrong_role(self, session, key)
        return False

    # -- dialed connections (dial_hello.py, dial_wait.py) -----------------------------------
    def prepare(self, body, session=None):
        """A deployment arrived (core.Device.dispatch, before the runtime and the deployment's
        code load): look up the devices its pipes dial and the controller that deployed it
        (`session`'s peer), and compute their pair keys now, while the heap is low
        (keys.prepare); a dial then loads only the client side, and the controller's next
        session (a status) only accept.py's fast path. Short of memory, the dial or the
        handshake does it instead."""
        try:
            load("keys").prepare(self, body, session)
        except MemoryError:
            collect()

    def dial(self, address, protocol, peer, first):
        """Dial another device as this device's identity; `first` goes out once the session is up
        (dial_hello.dial: the client side of the handshake, with what the deployment prepared,
        then dial_wait.wait until the welcome: loaded one after the other, never together). The
        connection is opened first: the code that opens it (connect.py) is garbage again before
        the handshake's loads."""
        dev = self.dev
        conn = transport.dial(dev.loop, address, None, dev.max_frame)
        try:
            d = load("dial_hello").dial(self, conn, protocol, peer, first)
            if d is not None:
                load("dial_wait").wait(d)
        except MemoryError:
            # no heap for the hello's code, its hello or the wait's: closed (it has no protocol
            # yet, so nothing could take what its peer sends); the pipe, told by the
            # MemoryError, dials again
            conn.close("no memory free for the handshake with %s" % (peer,))
            raise
        return conn
