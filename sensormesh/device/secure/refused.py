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
