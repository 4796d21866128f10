# A dial whose handshake failed: refused by its server, a welcome that failed a check, or no
# memory for the check. Loaded only then (a dial that succeeds never loads it) and forgotten with
# the rest of the dial's code (basics.idle()).
from sensormesh.device.secure import load
from sensormesh.device.secure.wire import HandshakeError

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


def why(server, msg):
    """The HandshakeError of `msg`, an answer to a hello sent to `server` that welcome.channel
    did not take: the server's refusal, or the first check it fails (a welcome whose fields all
    pass failed its proof)."""
    if type(msg) is dict and "error" in msg:
        return refusal(server, msg)
    w = load("wire")
    try:
        body = w._body(msg, "welcome")
        if body is None:
            raise w.refusal("malformed", "NO_WELCOME", server)
        if body.get("from") != server:     # (the server's name is valid: no other check of it needed)
            raise w.refusal("unknown-key", "NOT_FROM", body.get("from"), server)
        w._bin(body, "nonce", w._NONCE)
        w._bin(body, "proof", 32)
        return w.refusal("bad-signature", "NO_PROOF", server)
    except HandshakeError as e:
        return e


def failed(d, e):
    """A device's dial (its list in secure.dials) failed with HandshakeError `e`: what arrives
    until its connection closes is dropped, the pipe hears why ({"error": ...}), and the
    connection closes on the next loop turn (the dial ends then: dial_wait.on_close)."""
    d[6] = None
    d[7].cancel()
    dev = d[1].dev
    tell(d[0], d[2], d[3], dev.log, dev.loop, e)


def welcome(d, msg):
    """The answer `msg` to a device's dial's hello did not pass welcome.channel: the dial fails
    with the error that says why (wire.why)."""
    failed(d, why(d[3], msg))


def unknown(d):
    """A device's dial (its list in secure.dials) to a peer it cannot authenticate: no name (a
    pipe's 'peer'), or a peer not trusted as a device, whose look-up (hello.py's ClientSession)
    says why. The dial fails with that error."""
    peer = d[3]
    try:
        if type(peer) is not str:
            raise HandshakeError("unknown-key", "no name of the device to authenticate (a pipe's 'peer')")
        load("hello").device_session(d[1], peer).start()
        raise HandshakeError("unknown-key", "%r is not trusted as a device" % peer)
    except HandshakeError as e:
        failed(d, e)


def dialer_failed(d, conn, e):
    """Dialer `d`'s handshake (a hello.py client's) failed with HandshakeError `e`: its session
    is garbage, the protocol behind it hears why, and the connection closes on the next loop
    turn."""
    d._done()
    tell(conn, d.inner, d.peer, d.log, d.loop, e)


def tell(conn, inner, peer, log, loop, e):
    """The failed handshake on `conn` with `peer`: logged, `inner` (the protocol behind it) told,
    the connection closed on the next loop turn."""
    conn.held = []     # what was sent meanwhile, or is sent until the close, never leaves
    if log:
        log("handshake with %s failed: %s" % (peer, e))
    h = getattr(inner, "on_message", None)
    if h:
        h(conn, e.to_message())
    loop.call_soon(lambda: conn.close("handshake with %s failed: %s" % (peer, e)))
