# What every part of the handshake needs and a device's dial needs before anything else: the
# bytes a hello's MAC covers (the transcript), the trust files' stamps a prepared peer is
# checked against, and forgetting the handshake's code when no handshake needs it (idle). Small,
# so that a device's dial sends its hello without the rest of the handshake's code; its welcome
# is checked without this module (welcome.py: the session keys and the welcome's check; wire.py,
# the handshake's error and what a failed check was, only for a failure).
import os
import struct
import sys

from sensormesh.device.compat import collect, from_mpy, unload
from sensormesh.device.secure import admitting, busy, dials

VERSION = 2
_NONCE = 16
DEFAULT_WINDOW = 60        # seconds a hello's timestamp may differ from the server's clock
DEFAULT_REPLAY_SIZE = 64   # hellos a server remembers per device (at most 1.3 KB of records): server.py
_PACKAGE = "sensormesh.device.secure."
# The replay cache between handshakes is plain data: [records, key names, cut-offs, size].
# records is one bytearray of REC-byte records, each a hello's nonce, its timestamp (4 bytes,
# unsigned, big-endian) and the slot of its key's name in `names` (1 byte, FREE for a free
# record); cut-offs is {key name: timestamp} (server.ReplayCache says what they mean). A record
# costs 21 bytes however many hellos came before; the cache grows GROW records at a time up to
# `size` (at most 255) and never shrinks, and a name's slot is reused once no record holds it.
REC = _NONCE + 5
GROW = 8
FREE = 255


def _field(b):
    if type(b) is str:
        b = b.encode()
    return struct.pack("!H", len(b)) + b


def _transcript(client, server, ts, nonce):
    return b"sensormesh-hello-v2" + _field(client) + _field(server) + _field(str(ts)) + _field(nonce)


# -- the replay cache's records ---------------------------------------------------------------
def replay_state(size=DEFAULT_REPLAY_SIZE):
    """An empty replay cache for `size` hellos (Security.replay_state)."""
    if not 0 < size < FREE:
        raise ValueError("replay cache size %r: 1 to %d hellos" % (size, FREE - 1))
    return [bytearray(0), [], {}, size]


def replay_at(state, nonce):
    """The offset of the record of `nonce` (a hello's 16 bytes) in state's records, or None.
    nonce None: the offset of a free record (the records grow when none is free and the cache
    is not full), or None when the cache is full."""
    recs = state[0]
    if nonce is None:
        for at in range(REC - 1, len(recs), REC):
            if recs[at] == FREE:
                return at - REC + 1
        n = len(recs) // REC
        if n >= state[3]:
            return None
        more = bytearray(REC * min(GROW, state[3] - n))
        for at in range(REC - 1, len(more), REC):
            more[at] = FREE
        recs.extend(more)
        return n * REC
    at = recs.find(nonce)
    while at >= 0:
        if at % REC == 0 and recs[at + REC - 1] != FREE:
            return at
        at = recs.find(nonce, at + 1)
    return None


def replay_put(state, at, nonce, ts, who):
    """Remember the hello (nonce, ts) of key `who` in the free record at offset `at`."""
    if len(nonce) != _NONCE:
        raise ValueError("a hello's nonce is %d bytes, not %d" % (len(nonce), _NONCE))
    recs, names = state[0], state[1]
    if who in names:
        slot = names.index(who)
    else:
        used = set()
        for i in range(REC - 1, len(recs), REC):
            used.add(recs[i])
        slot = 0
        while slot < len(names) and slot in used:
            slot += 1
        if slot == len(names):
            names.append(who)
        else:
            names[slot] = who
    recs[at:at + _NONCE] = nonce
    struct.pack_into("!I", recs, at + _NONCE, ts)
    recs[at + REC - 1] = slot


# -- what a device's dial compares with the trust files it read ------------------------------------
def stamps(sec):
    """The trust and revoked files' sizes and times now (secure.Security keeps those it read)."""
    return (_stamp(sec.trust_src), _stamp(sec.revoked_src))


def _stamp(src):
    if type(src) is not str:
        return None
    try:
        st = os.stat(src)
    except OSError:
        return None
    return (st[6], getattr(st, "st_mtime_ns", st[8]))


# -- forgetting the handshake's code ---------------------------------------------------------------
# Does this device forget the handshake's code between handshakes? On MicroPython when it runs
# from precompiled .mpy files.
forgets = from_mpy


def idle():
    """A handshake ended or waits for its peer: forget the handshake's code no handshake in
    progress needs (on MicroPython from .mpy files: it loads again cheaply) and collect its
    garbage (key agreement, JSON). What runs within one call goes at once: the server side
    (accept.py, server.py), the key files' reader (trust.py), the key agreement (x25519.py), a dial's hello
    and its failure (dial_hello.py, dial_failed.py), a refusal's text (refused.py). A device's dial waiting for its welcome is
    plain data (secure.dials) with dial_wait.py, which goes once no dial waits. admit.py goes
    when no accepted connection waits for its hello; a client session of a process that is not
    a device (dialer.py, hello.py) when none is in progress. What the sides share (wire.py, welcome.py, keys.py, pubkey.py) goes
    when no accepted connection waits for its hello and no such client needs them (a client
    looking its server up, hello.py, holds keys.py's names). This module goes when neither kind
    of handshake is in progress."""
    if forgets():
        gone = ["accept", "server", "trust", "x25519", "handshake", "dial_hello", "dial_failed", "refused"]
        if admitting[0] == 0:
            gone.append("admit")
            if busy[0] == 0 or _PACKAGE + "hello" not in sys.modules:
                gone += ("wire", "welcome", "keys", "pubkey")
        if busy[0] == 0:
            gone += ("hello", "dialer")
            if admitting[0] == 0:
                gone.append("basics")
        if not dials:
            gone.append("dial_wait")
        for m in gone:
            unload(_PACKAGE + m)
    collect()
