# What every part of the handshake needs, and all a device's dial holds of it besides dialer.py
# while it waits for its welcome: the handshake's error (HandshakeError; its codes are
# dial_failed.py's, where a refusal's code is checked), a field's encoding, and forgetting the handshake's code when no handshake needs it (idle). Small, so that
# a device's dial sends its hello without the rest of the handshake's code (hello_mac.py: the
# transcript and the trust files' stamps, loaded with the hello; wire.py: the checks of a
# message's fields, the session keys, loaded only once the welcome arrives).
import struct

from sensormesh.device.compat import collect, from_mpy, unload
from sensormesh.device.secure import admitting, busy

VERSION = 2
_NONCE = 16
_PACKAGE = "sensormesh.device.secure."


class HandshakeError(Exception):
    """The handshake failed; code is one of dial_failed.CODES, message says why in words."""

    def __init__(self, code, message):
        super().__init__(code, message)
        self.code = code
        self.message = message

    def __str__(self):
        return "%s: %s" % (self.code, self.message)

    def to_message(self):
        """The control message that tells the peer why (safe to send: no secrets in it)."""
        return {"error": {"code": self.code, "message": self.message}}


def _field(b):
    if type(b) is str:
        b = b.encode()
    return struct.pack("!H", len(b)) + b


# -- forgetting the handshake's code ---------------------------------------------------------------
def forgets():
    """Does this device forget the handshake's code between handshakes? On MicroPython when it
    runs from precompiled .mpy files (compat.from_mpy)."""
    return from_mpy()


def idle():
    """A handshake ended or waits for its peer: forget the handshake's code no handshake in
    progress needs (on MicroPython from .mpy files: it loads again cheaply) and collect its
    garbage (key agreement, JSON). What runs within one call goes at once: the server side
    (server.py), the key files' reader (trust.py), the key agreement (x25519.py), a dial's hello
    and its failure (dial_hello.py, dial_failed.py), a hello's transcript and the trust files'
    stamps (hello_mac.py), the words of a refusal (refusals.py). admit.py goes when no accepted
    connection waits for its hello; the client side's session (dialer.py, hello.py) when no dial
    is in progress. What the sides share (wire.py, keys.py, pubkey.py) goes when no accepted
    connection waits for its hello and no dial needs them: a prepared dial's session (dialer.py)
    holds only this module's names while it waits for its welcome, a client looking its server
    up (hello.py) holds keys.py's. This module goes when neither kind of handshake is in
    progress."""
    if forgets():
        gone = ["server", "trust", "x25519", "handshake", "dial_hello", "dial_failed", "hello_mac", "refusals"]
        if admitting[0] == 0:
            gone.append("admit")
            if busy[0] == 0 or not _loaded("hello"):
                gone += ("wire", "keys", "pubkey")
        if busy[0] == 0:
            gone += ("hello", "dialer")
            if admitting[0] == 0:
                gone.append("basics")
        for m in gone:
            unload(_PACKAGE + m)
    collect()


def _loaded(name):
    import sys
    return _PACKAGE + name in sys.modules
