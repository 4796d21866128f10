# The words of the handshake's refusals: the messages of the HandshakeErrors that wire.py's and
# server.py's checks raise, by their place in TEXTS (wire.refused; the places are const()s of
# wire.py and server.py, which a board's compiler folds into the code: no names). Loaded only when a check fails and
# forgotten with the rest of the handshake's code (basics.idle()): a board checking a hello or a
# welcome that passes holds none of these texts (about 2.4 KB of strings on the unix port).
TEXTS = (
    # wire.py: a message's fields, the client's check of the welcome
    "%r must be %d bytes in url-safe base64",   # 0: wire._B64_SIZE
    "%r is not url-safe base64",   # 1: wire._NOT_B64
    "%r must be %d bytes",   # 2: wire._B64_BYTES
    "%r must be an object",   # 3: wire._NOT_OBJ
    "unsupported handshake version %r (this side speaks %d)",   # 4: wire._VERSION_TEXT
    "%r must be a name of 1-64 letters, digits, '.', '_' or '-'",   # 5: wire._BAD_NAME
    "start() the handshake before receiving",   # 6: wire._NO_START
    "expected a welcome from %r",   # 7: wire._NO_WELC
    "welcome comes from %r, expected %r",   # 8: wire._WELC_FROM
    "%r could not prove it holds its private key (wrong key-confirmation proof)",   # 9: wire._NO_PROOF
    # server.py: the server's check of a hello, the replay cache
    "hello timestamp %d is older than the replay cache remembers for key %r (too many "
    "handshakes with this key within %d s); retry",   # 10: server._REPLAY_TS
    "this hello's nonce was already used: replayed message",   # 11: server._REPLAYED
    "handshake already failed: %s",   # 12: server._FAILED
    "handshake already complete",   # 13: server._COMPLETE
    "this device only accepts authenticated sessions, and the hello carries no "
    "credentials: give the client an identity (--identity)",   # 14: server._NO_KEYS
    "a control message %r",   # 15: server._CTL_MSG
    "a data message",   # 16: server._DATA_MSG
    "this side only talks over an authenticated session: the first message must be "
    "a hello, got %s",   # 17: server._NOT_HELLO
    "'ts' must be an integer (Unix seconds)",   # 18: server._TS_INT
    "hello is addressed to %r but this is %r",   # 19: server._NOT_ME
    "the hello's MAC does not verify with the key this side holds for %r: the client "
    "used another key, holds an outdated key for %r, or the hello was altered",   # 20: server._BAD_MAC
    "hello timestamp %d is %d s from this side's clock %d (window %d s): replayed, or a "
    "clock is not set",   # 21: server._STALE
)
