# The handshake's messages as both sides check them: the handshake's error (HandshakeError),
# the checks of a message's fields (a binary field, a message's body and version; a name is
# server.py's check), the session keys (HKDF over the transcript) and the client's check of the
# server's welcome (check: a device's dial's welcome, checked and the session set up by
# welcome(); a hello.Hello's receive()). What a device's dial needs before its welcome arrives
# (the transcript, the trust files' stamps, forgetting the handshake's code) is basics.py's,
# re-exported here: a prepared dial loads this module only to check its welcome (a refusal's
# check is dial_failed.py's). The trust store, the pair-key cache and the key agreement
# (keys.py, pubkey.py, x25519.py), the sessions' common state (keys._Side) and the server side
# stay unloaded then.
import hashlib

from sensormesh.device.secure.basics import _NONCE, VERSION, _field, _transcript, forgets, idle, stamps  # noqa: F401
from sensormesh.device.secure import dials, load
from sensormesh.device.secure.channel import Channel, b64decode, equal, hmac_sha256, wrap_limit


class HandshakeError(Exception):
    """The handshake failed; code is one of dial_failed.CODES, message says why in words. (A
    device's dial makes its hello without it: this module loads for the welcome.)"""

    def __init__(self, code, message):
        super().__init__(code, message)
        self.code = code
        self.message = message

    def __str__(self):
        return "%s: %s" % (self.code, self.message)

    def to_message(self):
        """The control message that tells the peer why (safe to send: no secrets in it)."""
        return {"error": {"code": self.code, "message": self.message}}


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
    # b64 of size bytes is 4 * ceil(size / 3) characters: checked before decoding anything.
    v = body.get(field)
    b = None
    if type(v) is str and len(v) == (size + 2) // 3 * 4:
        try:
            b = b64decode(v)
        except (ValueError, UnicodeError):
            pass
    if b is None or len(b) != size:
        raise refusal("malformed", "BINARY", field, size)
    return b


def _body(msg, key):
    if type(msg) is not dict or key not in msg:
        return None
    body = msg[key]
    if type(body) is not dict:
        raise refusal("malformed", "OBJECT", key)
    if body.get("v") != VERSION or type(body.get("v")) is not int:
        raise refusal("malformed", "UNSUPPORTED", body.get("v"), VERSION)
    return body


def refusal(code, text, *args):
    """The HandshakeError `code` that says refused.py's `text` (its name there) % args: the
    texts load only for a refusal (a handshake module's strings stay in memory while it runs)."""
    return HandshakeError(code, getattr(load("refused"), text) % args)


# -- the client's last step ------------------------------------------------------------------------
def check(server, known, pending, msg):
    """The session's Channel once `msg` checks out as `server`'s welcome to the hello whose
    (nonce, transcript, MAC) is `pending`, `known` the server's (role, pair key, fingerprint):
    HandshakeError if it is a refusal or fails a check."""
    if type(msg) is dict and "error" in msg:
        raise load("dial_failed").refusal(server, msg)
    body = _body(msg, "welcome")
    if body is None:
        raise refusal("malformed", "NO_WELCOME", server)
    if body.get("from") != server:     # (the server's name is valid: no other check of it needed)
        raise refusal("unknown-key", "NOT_FROM", body.get("from"), server)
    snonce = _bin(body, "nonce", _NONCE)
    proof = _bin(body, "proof", 32)
    nonce, transcript, mac = pending
    c2s, s2c, expect = _keys(known[1], nonce, snonce, transcript, mac, server)
    if not equal(proof, expect):
        raise refusal("bad-signature", "NO_PROOF", server)
    return Channel(c2s, s2c)


def welcome(d, msg):
    """dial_wait.on_message: the welcome of a device's dial `d` (its list in secure.dials)
    checked, the session is up (the connection wraps and unwraps each frame with its Channel,
    the pipe's protocol object takes it over, and what was held leaves, sealed, on the next
    loop turn); a failed check or a refusal fails the dial (dial_failed.py)."""
    conn, sec, pipe, peer, first, known, pending, timer = d
    if pending is None:
        return       # the dial failed: its connection closes on this loop turn
    try:
        ch = check(peer, known, pending, msg)
    except HandshakeError as e:
        load("dial_failed").failed(d, e)      # (short of memory for it: dial_wait.on_message closes)
        return
    dials.remove(d)
    timer.cancel()
    conn.decoder.max_frame = sec.dev.max_frame
    conn.wrap = ch.wrap
    conn.unwrap = ch.unwrap
    conn.peer_max_frame = wrap_limit(conn.peer_max_frame)   # tokens within the peer's limit
    conn.protocol = pipe       # from now on the pipe's
    if first is not None:
        conn.held.insert(0, first)
    # The held messages leave (sealed) and the pipe's on_connect runs on this loop turn, but only
    # once this call has returned: then the handshake's code (this module) is garbage, and a
    # board seals the pipe's first frames without it (Connection.release).
    sec.dev.loop.call_soon(conn.release)
    idle()
