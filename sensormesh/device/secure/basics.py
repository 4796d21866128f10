# What every part of the handshake needs and a device's dial needs before anything else: the
# bytes a hello's MAC covers (the transcript), the trust files' stamps a prepared peer is
# checked against, and forgetting the handshake's code when no handshake needs it (idle). Small,
# so that a device's dial sends its hello without the rest of the handshake's code; its welcome
# is checked without this module (welcome.py: the session keys and the welcome's check; wire.py,
# the handshake's error and what a failed check was, only for a failure).
import os
import struct
import sys

from sensormesh.device.compat import collect, from_mpy, unload
from sensormesh.device.secure import admitting, busy, dials

VERSION = 2
_NONCE = 16
DEFAULT_WINDOW = 60        # seconds a hello's timestamp may differ from the server's clock
DEFAULT_REPLAY_SIZE = 64   # nonces a server remembers per device (about 1.5 KB on an ESP32): server.py
_PACKAGE = "sensormesh.device.secure."


def _field(b):
    if type(b) is str:
        b = b.encode()
    return struct.pack("!H", len(b)) + b


def _transcript(client, server, ts, nonce):
    return b"sensormesh-hello-v2" + _field(client) + _field(server) + _field(str(ts)) + _field(nonce)


# -- what a device's dial compares with the trust files it read ------------------------------------
def stamps(sec):
    """The trust and revoked files' sizes and times now (secure.Security keeps those it read)."""
    return (_stamp(sec.trust_src), _stamp(sec.revoked_src))


def _stamp(src):
    if type(src) is not str:
        return None
    try:
        st = os.stat(src)
    except OSError:
        return None
    return (st[6], getattr(st, "st_mtime_ns", st[8]))


# -- forgetting the handshake's code ---------------------------------------------------------------
# Does this device forget the handshake's code between handshakes? On MicroPython when it runs
# from precompiled .mpy files.
forgets = from_mpy


def idle():
    """A handshake ended or waits for its peer: forget the handshake's code no handshake in
    progress needs (on MicroPython from .mpy files: it loads again cheaply) and collect its
    garbage (key agreement, JSON). What runs within one call goes at once: the server side
    (accept.py, server.py), the key files' reader (trust.py), the key agreement (x25519.py), a dial's hello
    and its failure (dial_hello.py, dial_failed.py), a refusal's text (refused.py). A device's dial waiting for its welcome is
    plain data (secure.dials) with dial_wait.py, which goes once no dial waits. admit.py goes
    when no accepted connection waits for its hello; a client session of a process that is not
    a device (dialer.py, hello.py) when none is in progress. What the sides share (wire.py, welcome.py, keys.py, pubkey.py) goes
    when no accepted connection waits for its hello and no such client needs them (a client
    looking its server up, hello.py, holds keys.py's names). This module goes when neither kind
    of handshake is in progress."""
    if forgets():
        gone = ["accept", "server", "trust", "x25519", "handshake", "dial_hello", "dial_failed", "refused"]
        if admitting[0] == 0:
            gone.append("admit")
            if busy[0] == 0 or _PACKAGE + "hello" not in sys.modules:
                gone += ("wire", "welcome", "keys", "pubkey")
        if busy[0] == 0:
            gone += ("hello", "dialer")
            if admitting[0] == 0:
                gone.append("basics")
        if not dials:
            gone.append("dial_wait")
        for m in gone:
            unload(_PACKAGE + m)
    collect()
