# Why an established secure session refuses a frame (channel.Channel.unwrap raises a
# ProtocolError with one of these texts, which the peer is told and the device logs): loaded only
# for such a frame, so a board keeps none of these texts resident with channel.py.
NOT_A_TOKEN = ("frame is not a valid token of this session (plaintext, tampered, or from another "
               "connection)")
OUT_OF_ORDER = "frame %d of this session is missing or out of order (replayed, reordered or dropped)"
