# Assignments larger than one frame: the JSON text of the assignment travels in numbered parts.
#
#   {"deploy-part": {"id": ID, "part": K, "of": N, "size": S, "text": T}}
#
# K runs 0..N-1 in order on one control session; S is the length of the whole text in
# characters; T is the next slice of it. The device keeps the parts aside and applies nothing
# until the last one arrived: then the whole text must have S characters and parse, and is
# deployed like {"deploy": {"assignment": ...}} (build, check, then swap). Before the last part
# each part is answered {"received": {"id", "part", "of"}}; the last one gets the deploy's
# answer. A part out of order, a part of another assignment, one part too many, a size that
# does not add up, or a gap of more than PART_MS between two parts drops what was received
# with an error ("bad-part", "too-large", "timeout"); the running assignment is never touched.
#
# The sender's side (split: the controller uses it; tests on both interpreters too) is
# parts_sender.py's, which a device never loads. This module is loaded only when a part arrives.
from sensormesh.device import codec
from sensormesh.device.compat import MICROPYTHON

# Longest wait for the next part. Parts follow each other as fast as the controller gets the
# answers; a gap this long means the sender is gone or stuck, and the parts held would only
# take heap that the running pipeline needs.
PART_MS = 10000

# Largest assignment text a device takes in parts. A board holds the text twice for a moment
# (its parts, then the joined text) and then the decoded assignment; on an ESP32's ~100 KB
# heap 48 KB of text is the most that can work at all. CPython: far more than any placement makes.
MAX_TEXT = 48 * 1024 if MICROPYTHON else 64 * 1024 * 1024

class Incoming:
    """The parts of one assignment received so far on one session."""

    def __init__(self, session, ident, of, size):
        self.session = session
        self.id = ident
        self.of = of
        self.size = size
        self.texts = []
        self.length = 0
        self.timer = None


def _fields(body):
    """(id, part, of, size, text) of a deploy-part body, or a string saying what is wrong."""
    if type(body) is not dict:
        return "deploy-part needs an object"
    ident, k, of, size, text = body.get("id"), body.get("part"), body.get("of"), body.get("size"), body.get("text")
    if type(ident) is not str or not ident:
        return "deploy-part needs an id (a non-empty string)"
    for name, v in (("part", k), ("of", of), ("size", size)):
        if type(v) is not int or v < 0:
            return "deploy-part %s must be a non-negative integer, got %r" % (name, v)
    if of < 1 or k >= of:
        return "part %d of %d does not exist (parts count from 0)" % (k, of)
    if type(text) is not str:
        return "deploy-part needs its text (a string)"
    return ident, k, of, size, text


def receive(rt, session, body):
    """Take one part; returns the assignment (a dict) once the last part completed it, else None
    (the part was acknowledged, or refused with an error and everything received dropped)."""
    f = _fields(body)
    if type(f) is str:
        drop(rt, session, "bad-part", f)
        return None
    ident, k, of, size, text = f
    cur = getattr(rt, "incoming", None)
    if k == 0:
        if cur is not None:
            rt.log("assignment %s: %d of %d parts dropped, assignment %s starts" % (cur.id, len(cur.texts), cur.of, ident))
            _forget(rt)
        if size > MAX_TEXT:
            session.conn.send({"error": {"code": "too-large", "message": "assignment %s of %d characters exceeds this "
                                         "device's limit of %d" % (ident, size, MAX_TEXT)}})
            return None
        cur = rt.incoming = Incoming(session, ident, of, size)
    elif cur is None or cur.session is not session or cur.id != ident:
        why = getattr(rt, "parts_dropped", None) if cur is None else None
        if cur is not None and cur.session is session:    # another assignment's part
            why = ("assignment %s was being received here (its part %d of %d was due; dropped too)"
                   % (cur.id, len(cur.texts), cur.of))
        why = why or "no assignment is being received on this session"
        drop(rt, session, "bad-part", "part %d of assignment %s arrived, but %s; nothing applied" % (k, ident, why))
        return None
    elif k != len(cur.texts) or of != cur.of or size != cur.size:
        drop(rt, session, "bad-part", "part %d of %d of assignment %s arrived where part %d of %d (size %d) was "
             "due; nothing applied" % (k, of, ident, len(cur.texts), cur.of, cur.size))
        return None
    cur.texts.append(text)
    cur.length += len(text)
    if cur.length > cur.size or (k == of - 1 and cur.length != cur.size):
        drop(rt, session, "bad-part", "assignment %s: %d characters arrived in %d parts, its size is %d; nothing "
             "applied" % (ident, cur.length, k + 1, cur.size))
        return None
    if cur.timer is not None:
        cur.timer.cancel()
    if k < of - 1:
        cur.timer = rt.loop.call_later(PART_MS, lambda: _expired(rt, cur))
        session.conn.send({"received": {"id": ident, "part": k, "of": of}})
        return None
    texts = cur.texts
    _forget(rt)
    whole = "".join(texts)
    try:
        a = codec.decode_payload(whole.encode())
    except codec.ProtocolError as e:
        session.conn.send({"error": {"code": "bad-assignment", "message": "assignment %s: %s" % (ident, e)}})
        return None
    if type(a) is not dict:
        session.conn.send({"error": {"code": "bad-assignment", "message": "assignment %s is not an object" % ident}})
        return None
    return a


def _forget(rt):
    cur = getattr(rt, "incoming", None)
    if cur is not None and cur.timer is not None:
        cur.timer.cancel()
    rt.incoming = None


def drop(rt, session, code, message):
    """Refuse: everything received so far goes, the running assignment stays."""
    cur = getattr(rt, "incoming", None)
    if cur is not None and cur.session is session:
        _forget(rt)
        rt.parts_dropped = "its earlier parts were dropped (%s)" % code
    rt.log("assignment parts refused (%s): %s" % (code, message))
    session.conn.send({"error": {"code": code, "message": message}})


def _expired(rt, cur):
    if getattr(rt, "incoming", None) is not cur:
        return
    cur.timer = None
    msg = ("assignment %s: part %d of %d did not arrive within %d ms; the parts received (%d) are dropped, "
           "nothing applied" % (cur.id, len(cur.texts), cur.of, PART_MS, len(cur.texts)))
    _forget(rt)
    rt.parts_dropped = "its earlier parts were dropped after a timeout"
    rt.log(msg)
    if not cur.session.conn.closed:
        cur.session.conn.send({"error": {"code": "timeout", "message": msg}})
