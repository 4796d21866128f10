# The trust store's files: reading trust.json (and a revoked list) into a TrustStore
# (secure/keys.py), made, changed and listed here. A board loads this module only while it reads
# its trust store (at start, and when the file changed) and forgets it afterwards, like the
# handshake's code (secure/__init__.py).
import json

from sensormesh.device.secure import x25519
from sensormesh.device.secure.keys import HandshakeError, TrustStore


def read_json(src):
    """A dict as it is, or the JSON object in the file src."""
    if type(src) is dict:
        return src
    with open(src) as f:
        return json.load(f)


def load_trust(src):
    """TrustStore from a dict or a JSON file (written by `sensormesh keys`):

    {"keys": {name: {"role", "x25519"}}, "revoked": [{"name", "fingerprint"} or fingerprint]}
    """
    obj = read_json(src)
    keys = obj.get("keys", {})
    ts = trust_store([(name, keys[name]["role"], x25519.public_from_json(keys[name])) for name in keys])
    for r in obj.get("revoked", ()):
        if type(r) is dict:
            ts.revoke(r["fingerprint"], r.get("name"))
        else:
            ts.revoke(r)
    return ts


def _trusted_name(name):
    if type(name) is not str or not name or "\n" in name:
        raise ValueError("a trusted key needs a name without line breaks, got %r" % (name,))
    return name.encode()


def _record(roles, name, role, key):
    pub = key.pub if hasattr(key, "pub") else bytes(key)
    if len(pub) != x25519.SIZE:
        raise ValueError("the key of %r is not %d bytes" % (name, x25519.SIZE))
    if role not in roles:
        roles.append(role)
    return bytes([roles.index(role)]) + pub


def trust_store(entries=(), revoked=None):
    """TrustStore of [(name, role, PublicKey or its bytes)], the names in one string of bytes
    and the records in another, each made at its final size (a later name replaces an earlier)."""
    roles, names, recs, at = [], [], [], {}
    for name, role, key in entries:
        n = _trusted_name(name)
        rec = _record(roles, name, role, key)
        if n in at:
            recs[at[n]] = rec
        else:
            at[n] = len(names)
            names.append(n)
            recs.append(rec)
    return TrustStore(b"\n" + b"".join(n + b"\n" for n in names), b"".join(recs), roles, revoked)


def trust_add(ts, name, role, key):
    """Trust name's key (a PublicKey or its 32 bytes) with that role in ts, replacing an earlier one."""
    rec = _record(ts._roles, name, role, key)
    i = ts.index(name)
    if i < 0:
        ts._names = ts._names + _trusted_name(name) + b"\n"
        ts._recs = ts._recs + rec
    else:
        ts._recs = ts._recs[:33 * i] + rec + ts._recs[33 * i + 33:]


def trusted_keys(ts):
    """{name: (role, PublicKey)} of every key in ts (lookup() is what a handshake uses)."""
    names = bytes(ts._names[1:-1]).split(b"\n") if len(ts) else []
    return dict((n.decode(), ts.entry(i)) for i, n in enumerate(names))


def reload_trust(sec, stamps):
    """(Re)read a device's trust store and revoked list (secure.Security: at start, and when a
    file changed, checked before every handshake). A store that does not load keeps the previous
    one (logged); a new one closes the sessions whose peer key it no longer trusts."""
    try:
        t = load_trust(sec.trust_src)
        _add_revoked(t, sec.revoked_src)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        what = sec.trust_src if type(sec.trust_src) is str else "(inline)"
        if sec._trust is None:
            raise ValueError("cannot load the trust store %s: %s" % (what, e))
        sec.dev.log("trust store %s not reloaded, keeping the previous one: %s: %s"
                    % (what, type(e).__name__, e))
        return sec._trust
    if sec._trust is not None:
        sec.dev.log("trust store reloaded: %d keys, %d revoked" % (len(t), len(t.revoked)))
    sec._trust = t
    sec._stamps = stamps
    _cut_untrusted(sec, t)
    return t


def _add_revoked(t, src):
    if src is None:
        return
    if type(src) is str:
        with open(src) as f:
            src = json.load(f)
    if type(src) is dict:
        src = src.get("revoked", ())
    for r in src:
        if type(r) is dict:
            t.revoke(r["fingerprint"], r.get("name"))
        else:
            t.revoke(r)


def _cut_untrusted(sec, t):
    # Close the device's open sessions whose peer key is no longer trusted.
    dev = sec.dev
    sessions = [(conn.protocol, conn) for lst in dev.listeners for conn in lst.conns]
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
            sec.refuse(s, conn, e.code, "session closed: " + e.message)
