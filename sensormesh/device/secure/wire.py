# The handshake's error (HandshakeError) and the checks of a message's fields that say what is
# wrong (a binary field, a message's body and version; a name is server.py's check): the server
# side's, and a failed welcome's (dial_failed.why). The session keys and the client's check of a
# welcome are welcome.py's (a device's dial whose welcome passes loads neither this module nor
# basics.py), the dial's hello basics.py's (the transcript, the trust files' stamps, forgetting
# the handshake's code), re-exported here for the server side and keys.py. The trust store, the
# pair-key cache and the key agreement (keys.py, pubkey.py, x25519.py), the sessions' common
# state (keys._Side) and the server side stay unloaded then.
from sensormesh.device.secure.basics import _NONCE, VERSION, _field, _transcript, forgets, idle, stamps  # noqa: F401
from sensormesh.device.secure import load
from sensormesh.device.secure.welcome import raw
from sensormesh.device.secure.welcome import keys as _keys  # noqa: F401


class HandshakeError(Exception):
    """The handshake failed; code is one of dial_failed.CODES, message says why in words. (A
    device's dial that succeeds never makes one: this module loads for a failed welcome.)"""

    def __init__(self, code, message):
        super().__init__(code, message)
        self.code = code
        self.message = message

    def __str__(self):
        return "%s: %s" % (self.code, self.message)

    def to_message(self):
        """The control message that tells the peer why (safe to send: no secrets in it)."""
        return {"error": {"code": self.code, "message": self.message}}


def _bin(body, field, size):
    b = raw(body, field, size)
    if b is None:
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
