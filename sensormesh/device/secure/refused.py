# Why a secure session refuses what it was sent, in words (the peer is told, the device logs
# them): loaded only for a refusal, so a board keeps none of these texts resident with
# channel.py, nor in memory with the handshake's code while a handshake that passes runs.
# An established session's frame (channel.Channel.unwrap raises a ProtocolError with one of these):
NOT_A_TOKEN = ("frame is not a valid token of this session (plaintext, tampered, or from another "
               "connection)")
OUT_OF_ORDER = "frame %d of this session is missing or out of order (replayed, reordered or dropped)"

# A handshake's message (wire.refusal: a HandshakeError with one of these, formatted):
BINARY = "%r must be %d bytes in url-safe base64"
OBJECT = "%r must be an object"
UNSUPPORTED = "unsupported handshake version %r (this side speaks %d)"
NO_WELCOME = "expected a welcome from %r"
NOT_FROM = "welcome comes from %r, expected %r"
NO_PROOF = "%r could not prove it holds its private key (wrong key-confirmation proof)"

# A hello, as server.py checks it (server._refused: a HandshakeError with one of these, formatted):
HELLO = (
    "%r must be a name of 1-64 letters, digits, '.', '_' or '-'",   # 0
    ("hello timestamp %d is older than the replay cache remembers for key %r (too many handshakes "
     "with this key within %d s); retry"),   # 1
    "this hello's nonce was already used: replayed message",   # 2
    "handshake already failed: %s",   # 3
    "handshake already complete",   # 4
    ("this device only accepts authenticated sessions, and the hello carries no credentials: give the "
     "client an identity (--identity)"),   # 5
    ("this side only talks over an authenticated session: the first message must be a hello, got a "
     "control message %r"),   # 6
    ("this side only talks over an authenticated session: the first message must be a hello, got a "
     "data message"),   # 7
    "'ts' must be an integer (Unix seconds)",   # 8
    "hello is addressed to %r but this is %r",   # 9
    ("the hello's MAC does not verify with the key this side holds for %r: the client used another "
     "key, holds an outdated key for %r, or the hello was altered"),   # 10
    "hello timestamp %d is %d s from this side's clock %d (window %d s): replayed, or a clock is not set",   # 11
)
