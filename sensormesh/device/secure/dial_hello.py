# A dial's first step, loaded for it and forgotten before the welcome arrives (basics.idle()):
# a device's dial (the peer as its deployment prepared it, or looked up again; the dial kept as
# plain data in secure.dials, dial_wait.py the connection's protocol until the session is up)
# and the hello of a client session (hello.Hello.start()). It needs basics.py and channel.py, not
# wire.py nor welcome.py: a device's pipe sends its hello with the least of the handshake's code
# in memory, and only dial_wait.py stays loaded while the welcome is awaited.
import os

from sensormesh.device.compat import unix_time
from sensormesh.device.secure import HELLO_MAX_FRAME, load
from sensormesh.device.secure.basics import _NONCE, VERSION, _transcript, idle, stamps
from sensormesh.device.secure.channel import b64encode, hmac_sha256


def make(me, server, pair, ts):
    """(the hello from `me` to `server` at Unix time ts, its (nonce, transcript, MAC)): the MAC
    is made with the pair key of the two."""
    nonce = os.urandom(_NONCE)
    transcript = _transcript(me, server, ts, nonce)
    mac = hmac_sha256(pair, transcript)
    return ({"hello": {"v": VERSION, "from": me, "to": server, "ts": ts,
                       "nonce": b64encode(nonce).decode(), "mac": b64encode(mac).decode()}},
            (nonce, transcript, mac))


def dial(sec, conn, protocol, peer, first):
    """Security.dial: start the handshake as this device's identity on `conn`, just opened to
    `peer` (no protocol yet): the dial's list (secure.dials' kind), its hello sent, or None if
    it failed (the pipe told). A peer prepared at the deployment (keys.prepare: its role, pair
    key and key fingerprint, kept while the trust files are unchanged) needs none of the rest
    of the handshake's code; else keys.py looks it up again (the trust store re-read first if
    its files changed) and computes the pair key (x25519.py forgotten again at the end of the
    handshake). A peer not trusted as a device is refused with the handshake's error (hello.py's
    ClientSession says which). Security.dial then hands the dial to dial_wait.py (wait), once
    this module's code is garbage: the two are never in memory at once."""
    d = [conn, sec, protocol, peer, first, None, None, None]
    try:
        known = sec.prepared.get(peer) if type(peer) is str else None
        if known is None or known[0] != "device" or stamps(sec) != sec.stamps:   # (not the controller's)
            known = load("keys").prepare_peer(sec, peer) if type(peer) is str else None
            if known is None:     # no name, or not trusted as a device: refused with the error
                load("dial_wait").wait(d)
                load("dial_failed").unknown(d)
                return None
            sec.prepared[peer] = known
        d[5] = known
        msg, d[6] = make(sec.name, peer, known[1], int(unix_time()))
    except MemoryError:
        # nobody hears of this close (a dial made by the failed unknown() aside): the pipe, told
        # by this MemoryError, dials again
        conn.close("no memory free for the handshake with %s" % peer)
        raise
    conn.decoder.max_frame = HELLO_MAX_FRAME
    conn.send(msg)
    conn.held = []        # what the pipe sends before the session is up leaves once it is
    msg = None
    idle()     # the hello is out: the code that made it is garbage once this call returns
    return d
