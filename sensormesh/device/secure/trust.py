# The key files: an identity (identity.json) into an Identity, the trust store (trust.json, and
# a revoked list) into a TrustStore (secure/keys.py), made, changed and listed here; and a
# device's keys set up from its configuration (configure). A board loads this module only while
# it reads these files (at start, and when the trust store changed) and forgets it afterwards,
# like the handshake's code (secure/__init__.py).
import binascii
import json

from sensormesh.device.secure.pubkey import SIZE, PublicKey
from sensormesh.device.secure.basics import replay_state
from sensormesh.device.secure import DEFAULT_HANDSHAKE_MS, DEFAULT_MAX_HANDSHAKES, MICROPYTHON, load
from sensormesh.device.secure.keys import HandshakeError, Identity, TrustStore, device_trust, idle


def read_json(src):
    """A dict as it is, or the JSON object in the file src."""
    if type(src) is dict:
        return src
    with open(src) as f:
        return json.load(f)


def load_identity(src, native=None):
    """Identity from a dict or a JSON file: {"name", "role", "secret": hex, "x25519": hex}."""
    obj = read_json(src)
    return Identity(obj["name"], obj["role"], private_from_json(obj, native))


def _unhex(v, what):
    if type(v) is not str or len(v) != 2 * SIZE:
        raise ValueError("%s must be %d hex digits" % (what, 2 * SIZE))
    return binascii.unhexlify(v)   # bytes.fromhex is not in every MicroPython build


def public_from_json(obj):
    """{"x25519": hex of the public key} -> PublicKey."""
    if "x25519" not in obj and "n" in obj:
        raise ValueError("this is an RSA key from an older sensormesh; re-issue it "
                         "(sensormesh keys issue NAME --force) and re-provision")
    return PublicKey(_unhex(obj["x25519"], "x25519"))


def private_from_json(obj, native=None):
    """Identity JSON {"secret": hex private key, ...} -> private key object (OpenSSL-backed on
    CPython unless native=False)."""
    if "secret" not in obj and "n" in obj:
        raise ValueError("this identity holds an RSA key from an older sensormesh; re-issue it "
                         "(sensormesh keys issue NAME --force) and re-provision")
    from sensormesh.device.secure.x25519 import private_key   # (a device reads its identity once)
    return private_key(_unhex(obj["secret"], "secret"), None, native)


def load_trust(src):
    """TrustStore from a dict or a JSON file (written by `sensormesh keys`):

    {"keys": {name: {"role", "x25519"}}, "revoked": [{"name", "fingerprint"} or fingerprint]}

    A file is read a piece at a time, one key's object parsed at a time: a fleet's trust store
    (60 KB for 500 devices) never sits in memory whole, as text or as objects."""
    ts = TrustStore()
    if type(src) is dict:
        keys = src.get("keys")
        if type(keys) is not dict or type(src.get("revoked", ())) not in (list, tuple):
            raise ValueError(_NOT_A_STORE)
        for name in keys:
            _add_entry(ts, name, keys[name])
        _revoke_all(ts, src.get("revoked", ()))
        return ts
    if type(src) is not str:
        raise ValueError(_NOT_A_STORE)
    with open(src, "rb") as f:
        _scan(f, ts)
    return ts


def _add_entry(ts, name, ent):
    trust_add(ts, name, ent["role"], public_from_json(ent))


def _revoke_all(ts, revoked):
    for r in revoked:
        if type(r) is dict:
            ts.revoke(r["fingerprint"], r.get("name"))
        else:
            ts.revoke(r)


# What a file or dict that is no trust store is refused with (a trust store that trusted no one
# would refuse every connection, the controller's too, without saying why).
_NOT_A_STORE = ('not a trust store: it needs a "keys" object (and "revoked", if any, a list), as in the '
                'trust.json of `sensormesh keys export`')


# The JSON punctuation _scan() looks for, as the byte values it reads (a board would intern every
# distinct character of the file as a name of its own, for good, if it read the file as text).
# MicroPython's compiler puts the numbers in place of these names; CPython runs them.
if not MICROPYTHON:
    const = int
_BACKSLASH = const(92)
_QUOTE = const(34)
_COLON = const(58)
_OPEN_OBJECT = const(123)     # {
_CLOSE_OBJECT = const(125)    # }
_OPEN_ARRAY = const(91)       # [
_CLOSE_ARRAY = const(93)      # ]


def _scan(f, ts):
    # The top object's "keys" object: each value (a small object) is parsed on its own as it
    # ends; its "revoked" array likewise; anything else is skipped. Strings are followed
    # (escapes included) so braces inside them do not count. `f` is read as bytes.
    depth = 0           # nesting of objects and arrays
    in_str = esc = False
    word = None         # the string being read, while it may be a key (depth 1 or 2)
    last = None         # the last string read at depth 1 or 2
    top = None          # the top object's key whose value is being read
    name = None         # the key inside "keys" whose value is being read
    cap = None          # the bytes of the value being captured
    start = 0           # where the captured value starts in `chunk`
    until = 0           # the depth at which the captured value ends
    found = False       # the top object's "keys" object was seen
    while True:
        chunk = f.read(512)
        if not chunk:
            break
        if cap is not None:
            start = 0
        for i in range(len(chunk)):
            c = chunk[i]
            if in_str:
                if esc:
                    esc = False
                elif c == _BACKSLASH:
                    esc = True
                elif c == _QUOTE:
                    in_str = False
                    if word is not None:
                        last = bytes(word).decode()
                elif word is not None:
                    word.append(c)
            elif c == _QUOTE:
                in_str = True
                word = bytearray() if cap is None and depth <= 2 else None
            elif c == _COLON:
                if depth == 1:
                    top = last
                elif depth == 2:
                    name = last
            elif c == _OPEN_OBJECT or c == _OPEN_ARRAY:
                if depth <= 1:
                    if depth == 0 and c != _OPEN_OBJECT:
                        raise ValueError(_NOT_A_STORE)
                    if depth == 1 and top in ("keys", "revoked"):
                        if (top == "keys") != (c == _OPEN_OBJECT):
                            raise ValueError(_NOT_A_STORE)
                        found = found or top == "keys"
                if cap is None and ((depth == 2 and top == "keys" and c == _OPEN_OBJECT) or
                                    (depth == 1 and top == "revoked" and c == _OPEN_ARRAY)):
                    cap = bytearray()
                    start = i
                    until = depth
                depth += 1
            elif c == _CLOSE_OBJECT or c == _CLOSE_ARRAY:
                depth -= 1
                if cap is not None and depth == until:
                    cap.extend(chunk[start:i + 1])
                    value = json.loads(cap)
                    cap = None
                    if until == 2:
                        _add_entry(ts, name, value)
                    else:
                        _revoke_all(ts, value)
        if cap is not None:
            cap.extend(chunk[start:])     # the value goes on in the next chunk
    if depth != 0 or in_str:
        raise ValueError("the trust store file ends before its JSON does")
    if not found:
        raise ValueError(_NOT_A_STORE)


def _trusted_name(name):
    if type(name) is not str or not name or "\n" in name:
        raise ValueError("a trusted key needs a name without line breaks, got %r" % (name,))
    return name.encode()


def _record(roles, name, role, key):
    pub = key.pub if hasattr(key, "pub") else bytes(key)
    if len(pub) != SIZE:
        raise ValueError("the key of %r is not %d bytes" % (name, SIZE))
    if role not in roles:
        roles.append(role)
    return bytes([roles.index(role)]) + pub


def trust_store(entries=(), revoked=None):
    """TrustStore of [(name, role, PublicKey or its bytes)] (a later name replaces an earlier)."""
    ts = TrustStore(revoked=revoked)
    for name, role, key in entries:
        trust_add(ts, name, role, key)
    return ts


def trust_add(ts, name, role, key):
    """Trust name's key (a PublicKey or its 32 bytes) with that role in ts, replacing an earlier one."""
    n = _trusted_name(name)
    rec = _record(ts._roles, name, role, key)
    i = ts.index(name)
    if i < 0:
        ts._names.extend(n + b"\n")
        ts._recs.extend(rec)
    else:
        ts._recs[33 * i:33 * i + 33] = rec


def trusted_keys(ts):
    """{name: (role, PublicKey)} of every key in ts (lookup() is what a handshake uses)."""
    names = bytes(ts._names[1:-1]).split(b"\n") if len(ts) else []
    return dict((n.decode(), ts.entry(i)) for i, n in enumerate(names))


def configure(sec, cfg):
    """Set up a device's secure.Security from its configuration: its identity (its name, role
    and key bytes, kept as the Security's own attributes: sec.identity is sec), trust store and
    limits; its keys are plain data, which keys.py makes objects of for one handshake."""
    sec.trust_state = None      # keys.TrustStore(*trust_state)
    sec.stamps = None           # the trust and revoked files' sizes and times when read
    sec.replay_state = replay_state()          # server.ReplayCache's records and cut-offs
    sec.pair_state = [{}, [], 0]               # keys.PairCache's keys, their order, agreements
    sec.prepared = {}     # peer -> (role, pair key, fingerprint) of the pipes' dials (keys.prepare)
    sec.pending = 0       # accepted connections waiting for their hello
    sec.pending_by = {}   # peer host -> how many of those it holds
    sec.accepted = 0      # handshakes completed
    sec.refused = {}      # code -> count
    src = cfg.get("identity")
    try:
        ident = load_identity(src)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError("cannot load the device identity %s: %s" % (src if type(src) is str else "(inline)", e))
    if ident.role != "device":
        raise ValueError("identity %r has role %r; a device needs a device key (sensormesh keys issue NAME "
                         "--role device)" % (ident.name, ident.role))
    sec.name = ident.name      # (its role is "device": Security.role)
    sec.secret = ident.key._raw
    sec.pub = ident.key.public.pub
    sec.identity = sec
    sec.trust_src = cfg.get("trust")
    if sec.trust_src is None:
        raise ValueError("a device with an identity needs a trust store: config 'trust' or --trust FILE")
    if cfg.get("revoked") is not None:
        sec.revoked_src = cfg["revoked"]     # (else Security.revoked_src: None)
    sec.max_handshakes = _bounded(cfg.get("max_handshakes"), "max_handshakes", DEFAULT_MAX_HANDSHAKES)
    sec.handshake_ms = _bounded(cfg.get("handshake_ms"), "handshake_ms", DEFAULT_HANDSHAKE_MS)
    device_trust(sec)
    idle()


def _bounded(v, what, default):
    if v is None:
        return default
    if type(v) is not int or v <= 0:
        raise ValueError("%s must be a positive integer, got %r" % (what, v))
    return v


def reload_trust(sec, stamps):
    """(Re)read a device's trust store and revoked list (secure.Security: at start, and when a
    file changed, checked before every handshake). A store that does not load keeps the previous
    one (logged); a new one closes the sessions whose peer key it no longer trusts."""
    old = sec.trust_state
    try:
        t = load_trust(sec.trust_src)
        _add_revoked(t, sec.revoked_src)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        what = sec.trust_src if type(sec.trust_src) is str else "(inline)"
        if old is None:
            raise ValueError("cannot load the trust store %s: %s" % (what, e))
        sec.dev.log("trust store %s not reloaded, keeping the previous one: %s: %s"
                    % (what, type(e).__name__, e))
        return
    if old is not None:
        sec.dev.log("trust store reloaded: %d keys, %d revoked" % (len(t), len(t.revoked)))
    sec.trust_state = t.state()
    sec.stamps = stamps
    sec.prepared = {}     # what was prepared for the pipes' dials came from the previous store
    _cut_untrusted(sec, t)


def _add_revoked(t, src):
    if src is None:
        return
    if type(src) is str:
        with open(src) as f:
            src = json.load(f)
    if type(src) is dict:
        src = src.get("revoked")
    if type(src) is not list:       # (one ignored would leave its keys trusted, unsaid)
        raise ValueError('not a revoked list: it needs [{"name", "fingerprint"}, ...] or {"revoked": [...]}')
    _revoke_all(t, src)


def _cut_untrusted(sec, t):
    # Close the device's open sessions whose peer key is no longer trusted.
    dev = sec.dev
    sessions = [(conn.protocol, conn) for lst in dev.listeners for conn in lst.conns]
    refuse = None
    reg = getattr(dev, "registration", None)   # the connection it dialed to register
    if reg is not None and reg.conn is not None:
        sessions.append((reg.session, reg.conn))
    for s, conn in sessions:
        name = getattr(s, "peer_name", None)
        if name is None or conn.closed:
            continue
        try:
            role, key = t.lookup(name, "peer")
            if key.fingerprint() != s.peer_fp:
                raise HandshakeError("revoked", "the key of %r was replaced" % name)
        except HandshakeError as e:
            if refuse is None:
                refuse = load("admit").refuse
            refuse(sec, s, conn, e.code, "session closed: " + e.message)
