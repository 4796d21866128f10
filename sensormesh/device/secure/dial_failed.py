# A dial whose handshake failed: refused by its server, a welcome that failed a check, or no
# memory for the check. Loaded only then (a dial that succeeds never loads it) and forgotten with
# the rest of the dial's code (basics.idle()).
from sensormesh.device.secure.basics import HandshakeError

# The codes of a failed handshake (HandshakeError.code, a refusal's "code"): kept here, where a
# refusal's code is checked, rather than in basics.py, which every handshake loads.
CODES = ("unknown-key", "bad-signature", "stale-timestamp", "replay", "revoked", "wrong-role",
         "malformed", "plaintext-refused", "busy", "timeout")


def refusal(server, msg):
    """The HandshakeError of a server's {"error": ...} answer to our hello: its code when it is
    one of the handshake's, else "malformed"."""
    err = msg["error"]
    code = err.get("code") if type(err) is dict else None
    text = err.get("message") if type(err) is dict else None
    if code not in CODES:
        code = "malformed"
    return HandshakeError(code, "refused by %s: %s" % (server, text if type(text) is str else err))


def failed(d, conn, e):
    """Dialer `d`'s handshake failed with HandshakeError `e`: its session is garbage, the pipe's
    protocol hears why ({"error": ...}), and the connection closes on the next loop turn."""
    d._done()
    conn.held = None
    if d.log:
        d.log("handshake with %s failed: %s" % (d.peer, e))
    h = getattr(d.inner, "on_message", None)
    if h:
        h(conn, e.to_message())
    d.loop.call_soon(lambda: conn.close("handshake with %s failed: %s" % (d.peer, e)))
