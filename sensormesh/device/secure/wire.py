# The handshake's messages as both sides check them: the checks of a message's fields (a name,
# a binary field, a message's body and version), the session keys (HKDF over the transcript) and
# the client's check of the server's welcome (check_welcome: dialer.Hello.receive). What every
# step needs (the error, a field's encoding, forgetting the handshake's code) is
# basics.py's, re-exported here; the hello's transcript and the trust files' stamps are
# hello_mac.py's (the welcome's check needs neither). A failed check's words are refusals.py's,
# loaded only then (refused, words). A prepared dial loads this module only to check its welcome
# (a refusal's check is dial_failed.py's). The trust store, the pair-key cache
# and the key agreement (keys.py, pubkey.py, x25519.py), the sessions' common state (keys._Side)
# and the server side stay unloaded then.
import hashlib

from sensormesh.device.compat import MICROPYTHON
from sensormesh.device.secure.basics import _NONCE, VERSION, HandshakeError, _field, forgets, idle  # noqa: F401
from sensormesh.device.secure import load
from sensormesh.device.secure.channel import Channel, b64decode, equal, hmac_sha256

# The words of a failed check: their places in refusals.TEXTS (wire.refused)
if not MICROPYTHON:
    const = int
_B64_SIZE = const(0)
_NOT_B64 = const(1)
_B64_BYTES = const(2)
_NOT_OBJ = const(3)
_VERSION_TEXT = const(4)
_BAD_NAME = const(5)
_NO_START = const(6)
_NO_WELC = const(7)
_WELC_FROM = const(8)
_NO_PROOF = const(9)

_NAME_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-"


def words(which, *args):
    """refusals.TEXTS[which] % args: the words of a failed check, loaded for it (a check that
    passes needs none of them). Short of memory for them, which check failed, by its number."""
    try:
        text = load("refusals").TEXTS[which]
    except MemoryError:
        return "(no memory free for the words of refusal %d)" % which
    return text % args if args else text


def refused(code, which, *args):
    """The HandshakeError of a failed check: its code, and words(which, *args) as its message."""
    return HandshakeError(code, words(which, *args))


def valid_name(name):
    if type(name) is not str or not 0 < len(name) <= 64:
        return False
    for c in name:
        if c not in _NAME_CHARS:
            return False
    return True


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
        raise refused("malformed", _B64_SIZE, field, size)
    try:
        b = b64decode(v)
    except (ValueError, UnicodeError):
        raise refused("malformed", _NOT_B64, field)
    if len(b) != size:
        raise refused("malformed", _B64_BYTES, field, size)
    return b


def _body(msg, key):
    if type(msg) is not dict or key not in msg:
        return None
    body = msg[key]
    if type(body) is not dict:
        raise refused("malformed", _NOT_OBJ, key)
    if body.get("v") != VERSION or type(body.get("v")) is not int:
        raise refused("malformed", _VERSION_TEXT, body.get("v"), VERSION)
    return body


def _name(body, field):
    v = body.get(field)
    if not valid_name(v):
        raise refused("malformed", _BAD_NAME, field)
    return v


# -- the client's last step ------------------------------------------------------------------------
def check_welcome(h, msg):
    """Check the answer `msg` to client session `h`'s hello (a dialer.Hello): HandshakeError if
    it is a refusal or fails a check; else set h's wrap/unwrap (Connection.wrap/unwrap), its
    peer, role and key fingerprint, and done."""
    if h._pending is None:
        raise refused("malformed", _NO_START)
    server = h.server
    if type(msg) is dict and "error" in msg:
        raise load("dial_failed").refusal(server, msg)
    body = _body(msg, "welcome")
    if body is None:
        raise refused("malformed", _NO_WELC, server)
    if _name(body, "from") != server:
        raise refused("unknown-key", _WELC_FROM, body["from"], server)
    snonce = _bin(body, "nonce", _NONCE)
    proof = _bin(body, "proof", 32)
    nonce, transcript, mac = h._pending
    role, pair, fp = h.known
    c2s, s2c, expect = _keys(pair, nonce, snonce, transcript, mac, server)
    if not equal(proof, expect):
        raise refused("bad-signature", _NO_PROOF, server)
    h._pending = None
    h.peer = server       # the authenticated peer: its name, role and key's fingerprint
    h.role = role
    h.peer_fp = fp
    h.channel = Channel(c2s, s2c)
    h.wrap = h.channel.wrap
    h.unwrap = h.channel.unwrap
    h.done = True
