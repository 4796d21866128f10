# A dial's first step, loaded for it and forgotten before the welcome arrives (basics.idle()):
# a device's dial (the peer as its deployment prepared it, or looked up again) and the hello of
# a client session (its start()). It needs basics.py and channel.py, not wire.py: a
# device's pipe sends its hello with the least of the handshake's code in memory.
import os

from sensormesh.device.secure import HELLO_MAX_FRAME, busy, load
from sensormesh.device.secure.basics import _NONCE, VERSION, HandshakeError, _transcript, idle, stamps
from sensormesh.device.secure.channel import b64encode, hmac_sha256
from sensormesh.device.secure.dialer import Dialer


def hello(h):
    """The hello of client session `h` (a hello.Hello, or a Dialer as its own session): its
    nonce, transcript and MAC are kept in h for the welcome's check."""
    ts = int(h.clock())
    nonce = os.urandom(_NONCE)
    transcript = _transcript(h.me, h.server, ts, nonce)
    mac = hmac_sha256(h.known[1], transcript)
    h._pending = (nonce, transcript, mac)
    return {"hello": {"v": VERSION, "from": h.me, "to": h.server, "ts": ts,
                      "nonce": b64encode(nonce).decode(), "mac": b64encode(mac).decode()}}


def dial(sec, conn, protocol, peer, first):
    """Security.dial: run the handshake as this device's identity on `conn`, just opened to
    `peer`. A peer prepared at the deployment (keys.prepare: its role, pair key and key
    fingerprint, kept while the trust files are unchanged) needs none of the rest of the
    handshake's code; else keys.py looks it up again (the trust store re-read first if its files
    changed) and computes the pair key (x25519.py forgotten again at the end of the handshake).
    A peer not trusted as a device is refused by hello.py's ClientSession with the handshake's
    error."""
    dev = sec.dev
    try:
        known = sec.prepared.get(peer)
        if known is None or stamps(sec) != sec.stamps:
            known = load("keys").prepare_peer(sec, peer)
            if known is not None:
                sec.prepared[peer] = known
        cs = None if known is not None else load("hello").device_session(sec, peer)
    except MemoryError:
        conn.close("no memory free for the handshake with %s" % peer)
        raise
    d = Dialer(cs, sec.handshake_ms, dev.loop, protocol, peer, first, dev.max_frame, dev.log, sec.name, known)
    conn.protocol = d
    start(d, conn)
    return conn


def start(d, conn):
    """Dialer `d` sends its session's hello on `conn` and sets the welcome's deadline; a session
    that cannot start (no peer name; a peer not trusted as a device) fails with its error."""
    try:
        if type(d.peer) is not str:
            raise HandshakeError("unknown-key", "no name of the device to authenticate (a pipe's 'peer')")
        d.cs = d.session
        d.session = None
        busy[0] += 1
        hello = d.cs.start()
    except HandshakeError as e:
        d._failed(conn, e)
        return
    except MemoryError:
        d._no_memory(conn)      # the session is let go (busy back) and the connection closes
        raise
    conn.decoder.max_frame = HELLO_MAX_FRAME
    conn.send(hello)
    conn.held = []
    d.conn = conn
    d.timer = d.loop.call_later(d.handshake_ms, d._expire)    # (no function of this module may
    idle()     # stay referenced: the hello is out, the code that made it is garbage until the welcome)
