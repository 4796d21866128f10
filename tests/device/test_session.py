# The handshake and the session channel, on both interpreters
# (pytest, and: micropython tests/mprun.py test_session). Keys: security_keys.json (test only).
import json

from sensormesh import codec, rsa, session
from sensormesh.compat import MICROPYTHON
from sensormesh.fernet import b64decode, b64encode
from sensormesh.session import (ClientSession, HandshakeError, ReplayCache, ServerSession,
                                TrustStore, check_permission, load_identity, load_trust)

HERE = __file__.rpartition("/")[0] or "."
NOW = 1700000000
_FIX = {}


def fixture():
    if not _FIX:
        with open(HERE + "/security_keys.json") as f:
            ids = json.load(f)["identities"]
        _FIX["ids"] = ids
        for name in ids:
            _FIX[name] = load_identity(ids[name])
    return _FIX


def trust_json(revoked=("dev-old",)):
    """The trust store the controller would hand out: everyone but 'stranger'."""
    ids = fixture()["ids"]
    keys = {}
    for name in ("controller", "dev-a", "dev-b", "reader-1", "dev-old"):
        i = ids[name]
        keys[name] = {"role": i["role"], "n": i["n"], "e": i["e"]}
    rev = [rsa.fingerprint(int(ids[n]["n"], 16), ids[n]["e"]) for n in revoked]
    return {"version": 1, "keys": keys, "revoked": rev}


def pair(client="controller", server="dev-a", clock=NOW, sclock=None, replay=None, roles=None,
         croles=None, trust=None):
    f = fixture()
    t = trust or load_trust(trust_json())
    c = ClientSession(f[client], t, server, roles=croles, clock=lambda: clock)
    s = ServerSession(f[server], t, replay=replay, roles=roles,
                      clock=lambda: NOW if sclock is None else sclock)
    return c, s


def code_of(fn, *args):
    try:
        fn(*args)
    except HandshakeError as e:
        assert e.code in session.CODES, e.code
        assert e.message
        return e.code
    raise AssertionError("no HandshakeError")


def handshake(c, s):
    hello = c.start()
    welcome = s.receive(json.loads(json.dumps(hello)))   # through JSON, as on the wire
    c.receive(json.loads(json.dumps(welcome)))
    return hello, welcome


def test_rsa_sign_verify_encrypt_decrypt():
    k = fixture()["dev-a"].key
    pub = rsa.public_from_json(fixture()["ids"]["dev-a"])
    sig = k.sign(b"message")
    assert len(sig) == 256 and pub.verify(b"message", sig)
    assert not pub.verify(b"messagE", sig)
    assert not pub.verify(b"message", sig[:-1] + bytes([sig[-1] ^ 1]))
    assert not pub.verify(b"message", bytes(256))
    ct = pub.encrypt(b"secret 32 bytes.................")
    assert k.decrypt(ct) == b"secret 32 bytes................."
    for bad in (ct[:-1] + bytes([ct[-1] ^ 1]), ct[:-1], bytes(256), b"\xff" * 256):
        try:
            k.decrypt(bad)
            raise AssertionError("tampered ciphertext decrypted")
        except rsa.RSAError:
            pass


def test_pure_rsa_matches_encodings():
    # The pure key (what MicroPython uses) against whatever load_identity chose here.
    ids = fixture()["ids"]
    pure = rsa.private_from_json(ids["dev-b"], native=False)
    other = fixture()["dev-b"].key
    assert pure.sign(b"abc") == other.sign(b"abc")          # PKCS#1 v1.5 is deterministic
    assert pure.decrypt(other.public().encrypt(b"k" * 32)) == b"k" * 32
    assert other.decrypt(pure.public().encrypt(b"j" * 32)) == b"j" * 32
    assert pure.sign(b"abc") == pure.sign(b"abc")          # blinding does not change the result


def test_handshake_and_channel():
    c, s = pair()
    handshake(c, s)
    assert c.done and s.done
    assert s.peer == "controller" and s.role == "controller"
    assert c.peer == "dev-a" and c.role == "device"
    for i in range(3):
        tok = c.wrap(b'{"deploy":%d}' % i)
        assert s.unwrap(tok) == b'{"deploy":%d}' % i
        assert c.unwrap(s.wrap(b"[1,2,3]")) == b"[1,2,3]"


def test_channel_refuses_replay_reorder_reflection_plaintext():
    c, s = pair()
    handshake(c, s)
    t0, t1, t2 = c.wrap(b"a"), c.wrap(b"b"), c.wrap(b"c")
    assert s.unwrap(t0) == b"a"
    for bad in (t0, t2, s.wrap(b"mine"), b'{"stop":{}}', b"", b"\xff\xfe"):
        try:
            s.unwrap(bad)
            raise AssertionError("accepted %r" % bad)
        except codec.ProtocolError:
            pass


def test_session_keys_fresh_per_connection():
    c1, s1 = pair()
    handshake(c1, s1)
    c2, s2 = pair()
    handshake(c2, s2)
    tok = c1.wrap(b"x")
    try:
        s2.unwrap(tok)
        raise AssertionError("token of one connection accepted on another")
    except codec.ProtocolError:
        pass


def test_device_to_device_and_reader():
    c, s = pair("dev-b", "dev-a")
    handshake(c, s)
    assert s.role == "device" and s.peer == "dev-b"
    c, s = pair("reader-1", "dev-a")
    handshake(c, s)
    assert s.role == "reader"


def test_unknown_key():
    c, s = pair("stranger", "dev-a", trust=load_trust(trust_json()))
    # The stranger's own trust store knows dev-a, so it can build a hello; dev-a does not know it.
    st = load_trust(trust_json())
    st.add("stranger", "device", fixture()["stranger"].key.public())
    c = ClientSession(fixture()["stranger"], st, "dev-a", clock=lambda: NOW)
    assert code_of(s.receive, c.start()) == "unknown-key"
    # Client side: a server name we have no key for.
    c = ClientSession(fixture()["controller"], load_trust(trust_json()), "stranger")
    assert code_of(c.start) == "unknown-key"


def test_hello_for_another_device():
    c, _ = pair("controller", "dev-a")
    _, s = pair("controller", "dev-b")
    assert code_of(s.receive, c.start()) == "unknown-key"


def test_revoked():
    st = load_trust(trust_json(revoked=()))
    c = ClientSession(fixture()["dev-old"], st, "dev-a", clock=lambda: NOW)
    _, s = pair()
    e = None
    try:
        s.receive(c.start())
    except HandshakeError as x:
        e = x
    assert e.code == "revoked" and "dev-old" in e.message
    # The same client is accepted by a server whose store does not list it as revoked.
    c = ClientSession(fixture()["dev-old"], st, "dev-a", clock=lambda: NOW)
    s = ServerSession(fixture()["dev-a"], load_trust(trust_json(revoked=())), clock=lambda: NOW)
    s.receive(c.start())
    assert s.done
    # Revocation in a live trust store takes effect from the next handshake.
    ts = load_trust(trust_json(revoked=()))
    s = ServerSession(fixture()["dev-a"], ts, clock=lambda: NOW)
    ts.revoke(ts.keys["dev-b"][1].fingerprint())
    c = ClientSession(fixture()["dev-b"], st, "dev-a", clock=lambda: NOW)
    assert code_of(s.receive, c.start()) == "revoked"
    # Client side: we refuse to connect to a revoked server.
    c = ClientSession(fixture()["controller"], load_trust(trust_json()), "dev-old")
    assert code_of(c.start) == "revoked"


def test_bad_signature():
    c, s = pair()
    hello = c.start()
    h = hello["hello"]
    sig = bytearray(b64decode(h["sig"]))
    sig[10] ^= 1
    h["sig"] = b64encode(bytes(sig)).decode()
    assert code_of(s.receive, hello) == "bad-signature"
    # Signed by another key (dev-b's) but claiming to be the controller.
    st = load_trust(trust_json())
    fake = session.Identity("controller", "controller", fixture()["dev-b"].key)
    c = ClientSession(fake, st, "dev-a", clock=lambda: NOW)
    _, s = pair()
    assert code_of(s.receive, c.start()) == "bad-signature"
    # A field changed after signing: the key share swapped for another one.
    c, s = pair()
    c2, _ = pair()
    hello = c.start()
    hello["hello"]["share"] = c2.start()["hello"]["share"]
    assert code_of(s.receive, hello) == "bad-signature"


def test_stale_timestamp():
    for skew in (-61, 61, -100000):
        c, s = pair(clock=NOW + skew)
        e = None
        try:
            s.receive(c.start())
        except HandshakeError as x:
            e = x
        assert e.code == "stale-timestamp", e
    c, s = pair(clock=NOW + 60)
    s.receive(c.start())
    assert s.done


def test_replay():
    cache = ReplayCache()
    c, s = pair(replay=cache)
    hello = c.start()
    s.receive(json.loads(json.dumps(hello)))
    _, s2 = pair(replay=cache)
    assert code_of(s2.receive, hello) == "replay"
    # A replay later than the window is stale, whatever the cache remembers.
    _, s3 = pair(replay=cache, sclock=NOW + 61)
    assert code_of(s3.receive, hello) == "stale-timestamp"


def test_replay_cache_is_bounded_and_never_forgets_unsafely():
    cache = ReplayCache(window=60, size=4)
    for i in range(4):
        cache.check(b"n%d" % i, NOW + i, NOW + 4)
        cache.add(b"n%d" % i, NOW + i, NOW + 4)
    cache.check(b"n4", NOW + 4, NOW + 4)
    cache.add(b"n4", NOW + 4, NOW + 4)            # evicts n0 (ts NOW): floor is now NOW
    assert len(cache.seen) == 4
    assert code_of(cache.check, b"n0", NOW, NOW + 4) == "replay"
    assert code_of(cache.check, b"n1", NOW + 1, NOW + 4) == "replay"
    cache.check(b"new", NOW + 5, NOW + 5)
    # Once the old entries leave the window they are dropped instead of raising the floor.
    cache.add(b"late", NOW + 200, NOW + 200)
    assert list(cache.seen) == [b"late"] and cache.floor == NOW


def test_wrong_role():
    c, s = pair("reader-1", "dev-a", roles=("controller", "device"))
    assert code_of(s.receive, c.start()) == "wrong-role"
    c, s = pair("controller", "dev-a", croles=("controller",))
    assert code_of(c.start) == "wrong-role"
    check_permission("controller", "deploy")
    check_permission("device", "pipe")
    check_permission("reader", "data-request")
    assert code_of(check_permission, "device", "deploy") == "wrong-role"
    assert code_of(check_permission, "reader", "stop") == "wrong-role"
    assert code_of(check_permission, "reader", "pipe") == "wrong-role"
    assert code_of(check_permission, "nobody", "info") == "wrong-role"


def test_malformed():
    c, s = pair()
    good = c.start()["hello"]
    cases = []
    for k in good:
        d = dict(good)
        del d[k]
        cases.append(d)
    for k, v in (("v", 2), ("v", True), ("v", "1"), ("ts", "1700000000"), ("ts", 1.7e9), ("ts", True),
                 ("from", ""), ("from", "a b"), ("from", 5), ("from", "x" * 65), ("to", None),
                 ("nonce", "AAAA"), ("nonce", "%" * 24), ("share", good["share"][:-4]),
                 ("sig", good["sig"] + "AAAA"), ("sig", 7)):
        d = dict(good)
        d[k] = v
        cases.append(d)
    for d in cases:
        _, s = pair()
        code = code_of(s.receive, {"hello": d})
        assert code in ("malformed", "unknown-key"), (d, code)
    _, s = pair()
    assert code_of(s.receive, {"hello": "x"}) == "malformed"


def test_plaintext_refused():
    for msg in ({"data-request": {"sensor": "dht11"}}, [1, 2, 3], {"deploy": {}}, {}, {"welcome": {}}):
        _, s = pair()
        assert code_of(s.receive, msg) == "plaintext-refused"


def test_failed_session_stays_failed():
    _, s = pair()
    code_of(s.receive, [1])
    assert code_of(s.receive, {"hello": {}}) == "plaintext-refused"
    assert not s.done and s.wrap is None


def test_client_sees_server_refusal_and_forged_welcome():
    c, s = pair("reader-1", "dev-a", roles=("controller",))
    hello = c.start()
    try:
        s.receive(hello)
        raise AssertionError("accepted")
    except HandshakeError as e:
        reply = e.to_message()
    assert code_of(c.receive, json.loads(json.dumps(reply))) == "wrong-role"
    # Someone without dev-a's private key answering in its name cannot make the proof.
    c, _ = pair()
    c.start()
    forged = {"welcome": {"v": 1, "from": "dev-a", "nonce": b64encode(bytes(16)).decode(),
                          "proof": b64encode(bytes(32)).decode()}}
    assert code_of(c.receive, forged) == "bad-signature"
    assert not c.done and c.wrap is None
    c, _ = pair()
    c.start()
    assert code_of(c.receive, {"welcome": {"v": 1, "from": "dev-b", "nonce": "", "proof": ""}}) == "unknown-key"
    c, _ = pair()
    c.start()
    assert code_of(c.receive, [1, 2]) == "malformed"
    c, _ = pair()
    c.start()
    assert code_of(c.receive, {"error": "garbage"}) == "malformed"


def test_plain_limit_fits_frame():
    c, s = pair()
    handshake(c, s)
    for mf in (1024, 16 * 1024):
        n = session.plain_limit(mf)
        tok = c.wrap(b"x" * n)
        assert len(tok) <= mf, (mf, n, len(tok))
        assert s.unwrap(tok) == b"x" * n
        big = c.wrap(b"x" * (n + 1))
        assert len(big) > mf, (mf, n, len(big))
        assert s.unwrap(big) == b"x" * (n + 1)


def test_trust_store_from_file_shape():
    st = load_trust(trust_json())
    assert sorted(st.keys) == ["controller", "dev-a", "dev-b", "dev-old", "reader-1"]
    assert st.keys["dev-a"][0] == "device"
    assert len(st.revoked) == 1
    assert isinstance(st, TrustStore)
    if MICROPYTHON:
        assert isinstance(fixture()["dev-a"].key, rsa.PrivateKey)


def resumable(client="controller", server="dev-a", tickets=None, cache=None, trust=None, sclock=NOW):
    f = fixture()
    t = trust or load_trust(trust_json())
    c = ClientSession(f[client], t, server, clock=lambda: NOW, resume=cache)
    s = ServerSession(f[server], t, replay=ReplayCache(), tickets=tickets, clock=lambda: sclock)
    return c, s


def test_resumption_skips_rsa_and_rotates_tickets():
    tickets, cache = session.TicketStore(life=600), session.ResumeCache()
    c, s = resumable(tickets=tickets, cache=cache)
    hello, welcome = handshake(c, s)
    assert "sig" in hello["hello"] and "ticket" in welcome["welcome"] and not c.resumed
    first = welcome["welcome"]["ticket"]
    for i in range(2):
        c, s = resumable(tickets=tickets, cache=cache)
        hello, welcome = handshake(c, s)
        h = hello["hello"]
        assert "sig" not in h and "share" not in h and "mac" in h
        assert c.resumed and s.resumed and c.done and s.done
        assert s.peer == "controller" and s.role == "controller" and c.role == "device"
        assert welcome["welcome"]["ticket"] != first
        assert len(tickets.tickets) == 1                     # the used ticket is gone
        assert s.unwrap(c.wrap(b"[%d]" % i)) == b"[%d]" % i
        assert c.unwrap(s.wrap(b"ok")) == b"ok"
    # A replayed resumption hello finds its ticket used up.
    _, s = resumable(tickets=tickets)
    assert code_of(s.receive, hello) == "unknown-key"


def test_resumption_failures_fall_back_to_full_handshake():
    tickets, cache = session.TicketStore(life=600), session.ResumeCache()
    handshake(*resumable(tickets=tickets, cache=cache))
    # A forged MAC is refused and does not use up the real client's ticket.
    cache2 = session.ResumeCache()
    ent = cache.entries["dev-a"]
    cache2.put("dev-a", ent[0], b"\x00" * 32, ent[2], ent[3])
    c, s = resumable(tickets=tickets, cache=cache2)
    assert code_of(s.receive, c.start()) == "bad-signature"
    assert len(tickets.tickets) == 1
    # The server restarted (tickets lost): refused, and the client's next try is a full handshake.
    c, s = resumable(tickets=session.TicketStore(), cache=cache)
    hello = c.start()
    assert "ticket" in hello["hello"]
    try:
        s.receive(hello)
        raise AssertionError("accepted")
    except HandshakeError as e:
        assert e.code == "unknown-key"
        assert code_of(c.receive, e.to_message()) == "unknown-key"
    c, s = resumable(tickets=tickets, cache=cache)
    hello, _ = handshake(c, s)
    assert "sig" in hello["hello"] and not c.resumed


def test_resumption_expiry_and_revocation():
    tickets, cache = session.TicketStore(life=100), session.ResumeCache()
    handshake(*resumable(tickets=tickets, cache=cache))
    # Expired on the server although the client still holds it.
    c, s = resumable(tickets=tickets, cache=cache, sclock=NOW + 101)
    s.window = 1000
    assert code_of(s.receive, c.start()) == "unknown-key"
    # Revoked after the ticket was issued: refused from the next connection on.
    tickets, cache = session.TicketStore(life=600), session.ResumeCache()
    t = load_trust(trust_json())
    handshake(*resumable(tickets=tickets, cache=cache, trust=t))
    t2 = load_trust(trust_json(revoked=("dev-old", "controller")))
    c = ClientSession(fixture()["controller"], t, "dev-a", clock=lambda: NOW, resume=cache)
    s = ServerSession(fixture()["dev-a"], t2, tickets=tickets, clock=lambda: NOW)
    assert code_of(s.receive, c.start()) == "revoked"
    assert "dev-a" not in cache.entries        # the next try is a full handshake (and refused too)


def test_ticket_store_bounded():
    ts = session.TicketStore(life=10, size=3)
    ids = [ts.issue("p%d" % i, "fp", "device", b"s", NOW + i) for i in range(5)]
    assert len(ts.tickets) == 3
    assert ts.get(ids[0], NOW) is None and ts.get(ids[4], NOW + 4) is not None
    assert ts.get(ids[4], NOW + 15) is None
