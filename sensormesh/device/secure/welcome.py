# A welcome as the client checks it, the session keys both sides derive and the size of a
# session's frames: channel() is the session's Channel when the welcome passes every check, else
# None, keys() the HKDF over the transcript, wrap_limit() the largest payload a session wraps for
# its peer (set on the connection once its session is up: channel.py, which every frame needs,
# keeps none of it resident). What a failed check was (the handshake's error, its refusal texts) is
# dial_failed.why's to say, with wire.py, loaded only then: a device's dial whose welcome passes
# loads this module alone besides dial_wait.py (dial_wait.on_message), not wire.py nor basics.py.
# The server side (server.py, through wire.py) and hello.Hello use it too.
import hashlib
import struct

from sensormesh.device.compat import MICROPYTHON
from sensormesh.device.secure.channel import Channel, b64decode, equal, hmac_sha256

# Largest plaintext a sender should wrap at once: on MicroPython a token is built with a copy of
# its size besides the plaintext's buffer, so keep frames small on a board.
SEND_PLAIN_MAX = 3072 if MICROPYTHON else 1 << 30


def plain_limit(max_frame):
    """Largest payload whose token still fits a frame of max_frame bytes."""
    n = max_frame // 4 * 3 - 57   # base64 of version + time + IV + blocks + HMAC
    n = n - n % 16 - 1 - 8        # the blocks: the frame counter (8 bytes), payload, 1-16 bytes of padding
    return n if n > 0 else 0


def wrap_limit(max_frame):
    """Largest payload a sender wraps into one token for a peer accepting max_frame bytes."""
    n = plain_limit(max_frame)
    return n if n < SEND_PLAIN_MAX else SEND_PLAIN_MAX


def keys(pair, cnonce, snonce, transcript, mac, server):
    """HKDF-SHA256 (RFC 5869) of the pair key, salted with both nonces, bound to the transcript
    and the MAC, the server's name and its nonce (each a field: 2-byte length, then its bytes).

    -> (client->server Fernet key, server->client Fernet key, server proof)
    """
    th = hashlib.sha256(transcript)
    for f in (mac, server.encode() if type(server) is str else server, snonce):
        th.update(struct.pack("!H", len(f)))
        th.update(f)
    prk = hmac_sha256(cnonce + snonce, pair)
    info = b"sensormesh session v2" + th.digest()
    out = []
    t = b""
    for i in (1, 2, 3):
        t = hmac_sha256(prk, t + info + bytes([i]))
        out.append(t)
    return out[0], out[1], hmac_sha256(out[2], b"server")


def raw(body, field, size):
    """The `size` bytes of binary field `field` of a message's body (url-safe base64), or None."""
    # b64 of size bytes is 4 * ceil(size / 3) characters: checked before decoding anything.
    v = body.get(field)
    if type(v) is str and len(v) == (size + 2) // 3 * 4:
        try:
            b = b64decode(v)
        except (ValueError, UnicodeError):
            return None
        if len(b) == size:
            return b
    return None


def channel(server, known, pending, msg):
    """The session's Channel if `msg` is `server`'s welcome to the hello whose (nonce, transcript,
    MAC) is `pending`, `known` the server's (role, pair key, fingerprint); None if it is not
    (a refusal, or a check failed: wire.why says which)."""
    body = msg.get("welcome") if type(msg) is dict and "error" not in msg else None
    # (the version is basics.VERSION, a nonce basics._NONCE bytes)
    if type(body) is not dict or body.get("v") != 2 or type(body.get("v")) is not int \
            or body.get("from") != server:
        return None
    snonce = raw(body, "nonce", 16)
    proof = raw(body, "proof", 32)
    if snonce is None or proof is None:
        return None
    nonce, transcript, mac = pending
    c2s, s2c, expect = keys(known[1], nonce, snonce, transcript, mac, server)
    return Channel(c2s, s2c) if equal(proof, expect) else None
