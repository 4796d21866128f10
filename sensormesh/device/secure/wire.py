# The handshake's messages as both sides build and check them: its errors and their codes, the
# checks of a message's fields, the transcript and the session keys, and forgetting the
# handshake's code when no handshake runs (idle). This is all of the handshake a device's dial
# loads besides dialer.py when the pipe's peer was prepared at the deployment (keys.prepare):
# the trust store, the pair-key cache and the key agreement (keys.py, pubkey.py, x25519.py), the
# sessions' common state (keys._Side) and the server side stay unloaded then.
import hashlib
import os
import struct

from sensormesh.device.compat import collect, from_mpy, unload
from sensormesh.device.secure import admitting, busy
from sensormesh.device.secure.channel import b64decode, hmac_sha256

VERSION = 2
CODES = ("unknown-key", "bad-signature", "stale-timestamp", "replay", "revoked", "wrong-role",
         "malformed", "plaintext-refused", "busy", "timeout")
_NAME_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-"
_NONCE = 16
_PACKAGE = "sensormesh.device.secure."


def forgets():
    """Does this device forget the handshake's code between handshakes? On MicroPython when it
    runs from precompiled .mpy files (compat.from_mpy)."""
    return from_mpy()


def idle():
    """A handshake ended: forget the handshake's code (on MicroPython from .mpy files: it loads
    again cheaply) and collect its garbage (key agreement, JSON). The server side (server.py)
    the key files' reader (trust.py) and the key agreement (x25519.py) run within one call, so
    they go at once; admit.py goes when no accepted connection waits for its hello, the client
    side (dialer.py, hello.py) when no dial is in progress, and what both use (keys.py,
    pubkey.py, this module) when neither is."""
    if forgets():
        gone = ["server", "trust", "x25519", "handshake"]
        if admitting[0] == 0:
            gone.append("admit")
        if busy[0] == 0:
            gone += ("hello", "dialer")
            if admitting[0] == 0:
                gone += ("keys", "pubkey", "wire")
        for m in gone:
            unload(_PACKAGE + m)
    collect()


class HandshakeError(Exception):
    """The handshake failed; code is one of CODES, message says why in words."""

    def __init__(self, code, message):
        super().__init__(code, message)
        self.code = code
        self.message = message

    def __str__(self):
        return "%s: %s" % (self.code, self.message)

    def to_message(self):
        """The control message that tells the peer why (safe to send: no secrets in it)."""
        return {"error": {"code": self.code, "message": self.message}}


def valid_name(name):
    if type(name) is not str or not 0 < len(name) <= 64:
        return False
    for c in name:
        if c not in _NAME_CHARS:
            return False
    return True


def _field(b):
    if type(b) is str:
        b = b.encode()
    return struct.pack("!H", len(b)) + b


def _transcript(client, server, ts, nonce):
    return b"sensormesh-hello-v2" + _field(client) + _field(server) + _field(str(ts)) + _field(nonce)


def _keys(pair, cnonce, snonce, transcript, mac, server):
    """HKDF-SHA256 (RFC 5869) of the pair key, salted with both nonces, bound to the transcript.

    -> (client->server Fernet key, server->client Fernet key, server proof)
    """
    th = hashlib.sha256(transcript + _field(mac) + _field(server) + _field(snonce)).digest()
    prk = hmac_sha256(cnonce + snonce, pair)
    info = b"sensormesh session v2" + th
    out = []
    t = b""
    for i in (1, 2, 3):
        t = hmac_sha256(prk, t + info + bytes([i]))
        out.append(t)
    return out[0], out[1], hmac_sha256(out[2], b"server")


def _bin(body, field, size):
    v = body.get(field)
    # b64 of size bytes is 4 * ceil(size / 3) characters: check before decoding anything.
    if type(v) is not str or len(v) != (size + 2) // 3 * 4:
        raise HandshakeError("malformed", "%r must be %d bytes in url-safe base64" % (field, size))
    try:
        b = b64decode(v)
    except (ValueError, UnicodeError):
        raise HandshakeError("malformed", "%r is not url-safe base64" % field)
    if len(b) != size:
        raise HandshakeError("malformed", "%r must be %d bytes" % (field, size))
    return b


def _body(msg, key):
    if type(msg) is not dict or key not in msg:
        return None
    body = msg[key]
    if type(body) is not dict:
        raise HandshakeError("malformed", "%r must be an object" % key)
    if body.get("v") != VERSION or type(body.get("v")) is not int:
        raise HandshakeError("malformed", "unsupported handshake version %r (this side speaks %d)"
                             % (body.get("v"), VERSION))
    return body


def _name(body, field):
    v = body.get(field)
    if not valid_name(v):
        raise HandshakeError("malformed", "%r must be a name of 1-64 letters, digits, '.', '_' or '-'" % field)
    return v


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
