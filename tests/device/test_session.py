# The handshake and the session channel, on both interpreters
# (pytest, and: micropython tests/mprun.py test_session). Keys: security_keys.json (test only).
import json

from sensormesh.device import codec
from sensormesh.device.secure import handshake as session
from sensormesh.device.secure import trust as trusting
from sensormesh.device.secure import x25519
from sensormesh.device.compat import MICROPYTHON
from sensormesh.device.secure.fernet import b64decode, b64encode
from sensormesh.device.secure.handshake import (ClientSession, HandshakeError, ReplayCache, ServerSession,
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
        keys[name] = {"role": i["role"], "x25519": i["x25519"]}
    rev = [x25519.fingerprint(bytes.fromhex(ids[n]["x25519"])) for n in revoked]
    return {"version": 2, "keys": keys, "revoked": rev}


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


# RFC 7748 section 5.2 (one scalar multiplication each) and section 6.1 (Diffie-Hellman).
_RFC7748 = (
    ("a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4",
     "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
     "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552"),
    ("4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d",
     "e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493",
     "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957"),
)
_ALICE = ("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
          "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
_BOB = ("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb",
        "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
_SHARED = "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"


def test_x25519_rfc7748_vectors():
    for k, u, out in _RFC7748:
        assert x25519.scalarmult(bytes.fromhex(k), bytes.fromhex(u)) == bytes.fromhex(out)
    alice = x25519.PrivateKey(bytes.fromhex(_ALICE[0]))
    bob = x25519.PrivateKey(bytes.fromhex(_BOB[0]))
    assert alice.public.pub == bytes.fromhex(_ALICE[1]) and bob.public.pub == bytes.fromhex(_BOB[1])
    assert alice.exchange(bob.public) == bob.exchange(alice.public) == bytes.fromhex(_SHARED)
    # Section 5.2's iteration (k = u = 9; k, u = X25519(k, u), k) after one step; the
    # 1,000-step value is checked on CPython (tests/test_security.py).
    nine = b"\x09" + bytes(31)
    assert x25519.scalarmult(nine, nine) == bytes.fromhex(
        "422c8e7a6227d7bca1350b3e2bb7279f7897b87bb6854b783c60e80311ae3079")


def test_x25519_low_order_point_refused():
    k = x25519.PrivateKey(bytes(range(32)))
    for low in (bytes(32), b"\x01" + bytes(31)):
        try:
            k.exchange(x25519.PublicKey(low))
            raise AssertionError("all-zero shared secret accepted")
        except ValueError as e:
            assert "low-order" in str(e)


def test_pure_x25519_matches_loaded_key():
    # The pure key (what MicroPython uses) against whatever load_identity chose here.
    ids = fixture()["ids"]
    pure = trusting.private_from_json(ids["dev-b"], native=False)
    other = fixture()["dev-b"].key
    a = fixture()["dev-a"].key.public
    assert pure.public.pub == other.public.pub == bytes.fromhex(ids["dev-b"]["x25519"])
    assert pure.exchange(a) == other.exchange(a) == fixture()["dev-a"].key.exchange(pure.public)


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
    trusting.trust_add(st, "stranger", "device", fixture()["stranger"].key.public)
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
    ts.revoke(trusting.trusted_keys(ts)["dev-b"][1].fingerprint())
    c = ClientSession(fixture()["dev-b"], st, "dev-a", clock=lambda: NOW)
    assert code_of(s.receive, c.start()) == "revoked"
    # Client side: we refuse to connect to a revoked server.
    c = ClientSession(fixture()["controller"], load_trust(trust_json()), "dev-old")
    assert code_of(c.start) == "revoked"


def test_bad_signature():
    c, s = pair()
    hello = c.start()
    h = hello["hello"]
    mac = bytearray(b64decode(h["mac"]))
    mac[10] ^= 1
    h["mac"] = b64encode(bytes(mac)).decode()
    assert code_of(s.receive, hello) == "bad-signature"
    # Made with another key (dev-b's) but claiming to be the controller.
    st = load_trust(trust_json())
    fake = session.Identity("controller", "controller", fixture()["dev-b"].key)
    c = ClientSession(fake, st, "dev-a", clock=lambda: NOW)
    _, s = pair()
    assert code_of(s.receive, c.start()) == "bad-signature"
    # A field changed after the MAC was made: the nonce, or the time inside the window.
    for field, value in (("nonce", b64encode(bytes(16)).decode()), ("ts", NOW + 1)):
        c, s = pair()
        hello = c.start()
        hello["hello"][field] = value
        assert code_of(s.receive, hello) == "bad-signature"
    # The client holds an outdated key for the server (here: dev-b's key under dev-a's name).
    st = load_trust(trust_json())
    trusting.trust_add(st, "dev-a", "device", fixture()["dev-b"].key.public)
    c = ClientSession(fixture()["controller"], st, "dev-a", clock=lambda: NOW)
    _, s = pair()
    e = None
    try:
        s.receive(c.start())
    except HandshakeError as x:
        e = x
    assert e.code == "bad-signature" and "outdated" in e.message


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


def N(tag):
    """A hello's 16-byte nonce named tag."""
    return tag + bytes(16 - len(tag))


def test_replay_cache_is_bounded_and_never_forgets_unsafely():
    cache = ReplayCache(window=60, size=4)
    for i in range(4):
        cache.check(N(b"n%d" % i), NOW + i, NOW + 4)
        cache.add(N(b"n%d" % i), NOW + i, NOW + 4)
    cache.check(N(b"n4"), NOW + 4, NOW + 4)
    cache.add(N(b"n4"), NOW + 4, NOW + 4)            # evicts n0 (ts NOW): floor is now NOW
    assert len(cache.entries()) == 4
    assert code_of(cache.check, N(b"n0"), NOW, NOW + 4) == "replay"
    assert code_of(cache.check, N(b"n1"), NOW + 1, NOW + 4) == "replay"
    cache.check(N(b"new"), NOW + 5, NOW + 5)
    # Once the old entries leave the window they are dropped instead of raising the floor.
    cache.add(N(b"late"), NOW + 200, NOW + 200)
    # (so are the cut-offs: hellos that old are stale anyway)
    assert list(cache.entries()) == [N(b"late")] and cache.floors == {}


def test_one_key_cannot_lock_out_others():
    # A reader fills the cache with hellos dated near the window's edge: it evicts only its
    # own entries and moves only its own cut-off; other keys' hellos dated now still pass.
    cache = ReplayCache(window=60, size=8)
    cache.add(N(b"c0"), NOW, NOW, "controller")
    refused = 0
    for i in range(66):
        try:
            cache.check(N(b"r%d" % i), NOW + 55, NOW, "reader-1")
            cache.add(N(b"r%d" % i), NOW + 55, NOW, "reader-1")
        except HandshakeError:
            refused += 1      # once it has evicted its own entries, its own cut-off stops it
    assert refused == 66 - 8, refused
    seen = cache.entries()
    assert len(seen) == 8 and seen[N(b"c0")] == (NOW, "controller")
    assert cache.floors == {"reader-1": NOW + 55}
    cache.check(N(b"c1"), NOW + 1, NOW + 1, "controller")
    cache.check(N(b"x"), NOW + 1, NOW + 1, "reader-2")
    assert code_of(cache.check, N(b"c0"), NOW, NOW + 1, "controller") == "replay"      # its nonce is kept
    assert code_of(cache.check, N(b"r0"), NOW + 55, NOW + 1, "reader-1") == "replay"   # the reader's cut-off
    # the same through whole handshakes: 66 hellos of reader-1 dated 55 s ahead, then the controller
    cache = ReplayCache(window=60, size=8)
    codes = []
    for i in range(66):
        c, s = pair("reader-1", "dev-a", clock=NOW + 55, sclock=NOW, replay=cache)
        try:
            s.receive(c.start())
            codes.append("ok")
        except HandshakeError as e:
            codes.append(e.code)
    assert set(codes) == {"ok", "replay"}, codes
    c, s = pair("controller", "dev-a", sclock=NOW, replay=cache)
    assert "welcome" in s.receive(c.start())


def test_replay_cache_memory_is_fixed_and_names_are_reused():
    """However many hellos and keys come, the cache holds `size` records of 21 bytes and at
    most one name per record; what it remembers is still refused, and a name's slot goes to
    another key once no record holds it. A size it cannot hold, or a nonce that is not 16
    bytes, is refused with what is wrong."""
    from sensormesh.device.secure.basics import REC, replay_state
    cache = ReplayCache(window=60, size=8)
    for i in range(300):
        who = "reader-%d" % (i % 40)
        now = NOW + i            # every hello is new, and the old ones leave the window
        cache.check(N(b"h%d" % i), now, now, who)
        cache.add(N(b"h%d" % i), now, now, who)
        assert len(cache.state[0]) <= 8 * REC and len(cache.state[1]) <= 8, i
    seen = cache.entries()
    assert len(seen) == 8
    assert seen[N(b"h299")] == (NOW + 299, "reader-19")
    for nonce, (ts, who) in seen.items():
        assert code_of(cache.check, nonce, ts + 1, NOW + 300, who) == "replay"
    # a cache grows 8 records at a time, up to its size
    small = ReplayCache(size=3)
    small.add(N(b"a"), NOW, NOW, "a")
    assert len(small.state[0]) == 3 * REC
    for bad in (0, 255, 1000):
        try:
            replay_state(bad)
            raise AssertionError("size %d accepted" % bad)
        except ValueError as e:
            assert "replay cache size" in str(e)
    try:
        small.add(b"short", NOW, NOW, "a")
        raise AssertionError("a 5-byte nonce accepted")
    except ValueError as e:
        assert "nonce is 5 bytes, not 16" in str(e), str(e)


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
    for k, v in (("v", 1), ("v", True), ("v", "2"), ("ts", "1700000000"), ("ts", 1.7e9), ("ts", True),
                 ("from", ""), ("from", "a b"), ("from", 5), ("from", "x" * 65), ("to", None),
                 ("nonce", "AAAA"), ("nonce", "%" * 24), ("mac", good["mac"][:-4]),
                 ("mac", good["mac"] + "AAAA"), ("mac", 7)):
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
    forged = {"welcome": {"v": 2, "from": "dev-a", "nonce": b64encode(bytes(16)).decode(),
                          "proof": b64encode(bytes(32)).decode()}}
    assert code_of(c.receive, forged) == "bad-signature"
    assert not c.done and c.wrap is None
    c, _ = pair()
    c.start()
    assert code_of(c.receive, {"welcome": {"v": 2, "from": "dev-b", "nonce": "", "proof": ""}}) == "unknown-key"
    c, _ = pair()
    c.start()
    assert code_of(c.receive, [1, 2]) == "malformed"
    c, _ = pair()
    c.start()
    assert code_of(c.receive, {"error": "garbage"}) == "malformed"



def test_a_welcome_that_fails_its_check_says_which():
    """welcome.channel takes a welcome or not; what failed is dial_failed.why's (wire.py's texts):
    each field's check in turn, then the proof."""
    from sensormesh.device.secure.handshake import HandshakeError as Error

    def why(msg):
        c, _ = pair()
        c.start()
        try:
            c.receive(msg)
        except Error as e:
            return e.code, e.message
        raise AssertionError("accepted")
    nonce, proof = b64encode(bytes(16)).decode(), b64encode(bytes(32)).decode()
    ok = {"v": 2, "from": "dev-a", "nonce": nonce, "proof": proof}

    def welcome(**kw):
        w = dict(ok)
        w.update(kw)
        return {"welcome": w}
    assert why({"ping": 1}) == ("malformed", "expected a welcome from 'dev-a'")
    assert why({"welcome": 5}) == ("malformed", "'welcome' must be an object")
    assert why(welcome(v=3)) == ("malformed", "unsupported handshake version 3 (this side speaks 2)")
    assert why(welcome(v=True))[0] == "malformed"
    assert why(welcome(nonce=nonce[:-4])) == ("malformed", "'nonce' must be 16 bytes in url-safe base64")
    assert why(welcome(proof=proof.replace("A", "+"))) == ("malformed", "'proof' must be 32 bytes in url-safe base64")
    assert why(welcome()) == ("bad-signature", "'dev-a' could not prove it holds its private key "
                                               "(wrong key-confirmation proof)")


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
    assert sorted(trusting.trusted_keys(st)) == ["controller", "dev-a", "dev-b", "dev-old", "reader-1"]
    assert trusting.trusted_keys(st)["dev-a"][0] == "device"
    assert len(st.revoked) == 1
    assert isinstance(st, TrustStore)
    if MICROPYTHON:
        assert isinstance(fixture()["dev-a"].key, x25519.PrivateKey)


def test_trust_store_of_a_fleet_is_compact_and_exact():
    # every board of a fleet holds every key of it: 300 devices must not cost a board's heap
    import gc
    obj = trust_json()
    fleet = {}
    for i in range(300):
        fleet["b%04d" % i] = bytes([i % 256, i // 256, 7]) + bytes(29)
        obj["keys"]["b%04d" % i] = {"role": "device", "x25519": "".join("%02x" % c for c in fleet["b%04d" % i])}
    gc.collect()
    before = gc.mem_alloc() if MICROPYTHON else 0
    st = load_trust(obj)
    gc.collect()
    if MICROPYTHON:
        held = gc.mem_alloc() - before
        assert held < 300 * 60, held          # about 40 bytes a key (as objects: about 270)
    assert len(st) == 305
    for name in fleet:
        role, key = st.lookup(name, "peer")
        assert role == "device" and key.pub == fleet[name], name
    assert st.lookup("controller", "client")[0] == "controller"
    assert st.lookup("reader-1", "client")[0] == "reader"
    # only whole names match: no prefix, suffix, or two names with the separator between them
    for name in ("b000", "b00000", "0001", "b0001\nb0002", "", "dev", 5, None):
        assert code_of(st.lookup, name, "peer") == "unknown-key", name
    assert code_of(st.lookup, "dev-old", "peer") == "revoked"
    # a name trusted again with a new key and role replaces the old entry in place
    trusting.trust_add(st, "b0007", "reader", bytes(range(32)))
    assert st.lookup("b0007", "peer")[0] == "reader" and st.lookup("b0007", "peer")[1].pub == bytes(range(32))
    assert st.lookup("b0008", "peer")[1].pub == fleet["b0008"] and len(st) == 305
    trusting.trust_add(st, "b0300", "device", bytes(32))
    keys = trusting.trusted_keys(st)
    assert len(st) == 306 and sorted(keys)[:2] == ["b0000", "b0001"] and keys["b0299"][1].pub == fleet["b0299"]
    assert keys["b0300"][1].pub == bytes(32) and st.lookup("b0300", "peer")[0] == "device"
    # a name given twice when the store is made: the later key counts
    st = trusting.trust_store([("x", "device", bytes(32)), ("y", "reader", bytes(32)), ("x", "reader", bytes(range(32)))])
    assert len(st) == 2 and st.lookup("x", "peer")[0] == "reader" and st.lookup("x", "peer")[1].pub == bytes(range(32))


def test_trust_file_is_read_a_key_at_a_time_whatever_its_layout():
    # a file is read in pieces, each key's object parsed alone: the result is the store the
    # whole object gives, however the file is laid out; other keys and objects are skipped
    import os
    obj = trust_json()
    for i in range(60):
        obj["keys"]["b%04d" % i] = {"role": "device", "x25519": "%02x" % i * 32}
    ids = fixture()["ids"]
    obj["revoked"].append({"name": "gone", "fingerprint": x25519.fingerprint(bytes.fromhex(ids["dev-b"]["x25519"]))})
    want = load_trust(obj)
    path = "/tmp/sensormesh-test-trust-%s.json" % ("mp" if MICROPYTHON else "cp")
    layouts = [json.dumps(obj), json.dumps(obj).replace(", ", ",\n   ").replace("{", "{ \n")]
    tricky = dict(obj, version=2, note='a "quoted" {brace} [and] \\ backslash',
                  other={"keys": {"intruder": {"role": "controller", "x25519": "ff" * 32}}, "revoked": ["x"]})
    layouts.append(json.dumps(tricky))
    try:
        for text in layouts:
            with open(path, "w") as f:
                f.write(text)
            got = load_trust(path)
            have, should = trusting.trusted_keys(got), trusting.trusted_keys(want)
            assert sorted(have) == sorted(should) and len(have) == 65, sorted(have)
            for name in should:
                assert have[name][0] == should[name][0] and have[name][1].pub == should[name][1].pub, name
            assert got.revoked == want.revoked and "gone" in got.revoked_names
            assert code_of(got.lookup, "intruder", "peer") == "unknown-key"
            assert code_of(got.lookup, "dev-b", "peer") == "revoked"
        with open(path, "w") as f:
            f.write(json.dumps(obj)[:-40])
        try:
            load_trust(path)
            raise AssertionError("a cut trust file loaded")
        except ValueError as e:
            assert "ends before" in str(e) or "JSON" in str(e) or "syntax" in str(e), e
    finally:
        os.remove(path)


def test_a_file_that_is_no_trust_store_or_revoked_list_is_refused_saying_so():
    # a trust store that trusted no one (a list, an identity file given as the trust store, keys
    # of the wrong type) used to load as an empty store: the device then refused every
    # connection, the controller's too, without saying why; a revoked list of the wrong shape
    # was ignored, its keys trusted on
    import os
    from sensormesh.device.secure import trust
    path = "/tmp/sensormesh-test-notrust-%s.json" % ("mp" if MICROPYTHON else "cp")
    good = trust_json()
    shapes = ["[]", "{}", '{"version": 2}', '{"version": 2, "keys": []}', '{"keys": null}',
              '{"keys": {}, "revoked": {}}', json.dumps(fixture()["ids"]["dev-a"])]
    try:
        for text in shapes:
            with open(path, "w") as f:
                f.write(text)
            for src in (path, json.loads(text)):
                try:
                    load_trust(src)
                    raise AssertionError("loaded as a trust store: %s" % text)
                except ValueError as e:
                    assert "not a trust store" in str(e) and '"keys" object' in str(e), (text, e)
        with open(path, "w") as f:
            f.write('{"keys": {}}')
        assert len(load_trust(path)) == 0       # a store that trusts no one yet, said so plainly
        for revoked in ('{"fingerprints": []}', '{"revoked": {"a": 1}}', "5"):
            with open(path, "w") as f:
                f.write(revoked)
            st = load_trust(good)
            try:
                trust._add_revoked(st, path)
                raise AssertionError("loaded as a revoked list: %s" % revoked)
            except ValueError as e:
                assert "not a revoked list" in str(e), (revoked, e)
        fp = x25519.fingerprint(bytes.fromhex(fixture()["ids"]["dev-b"]["x25519"]))
        for revoked in ([{"name": "dev-b", "fingerprint": fp}], {"revoked": [fp]}):
            with open(path, "w") as f:
                f.write(json.dumps(revoked))
            st = load_trust(good)
            trust._add_revoked(st, path)
            assert code_of(st.lookup, "dev-b", "peer") == "revoked", revoked
    finally:
        os.remove(path)


def test_pair_key_computed_once_per_peer():
    f = fixture()
    t = load_trust(trust_json())
    cp, sp = session.PairCache(4), session.PairCache(2)
    for i in range(3):
        c = ClientSession(f["controller"], t, "dev-a", clock=lambda: NOW, pairs=cp)
        s = ServerSession(f["dev-a"], t, replay=ReplayCache(), clock=lambda: NOW, pairs=sp)
        handshake(c, s)
        assert c.done and s.done
    assert cp.computed == 1 and sp.computed == 1        # one scalar multiplication each side
    # Bounded: a third peer pushes the oldest out of a 2-entry cache.
    for name in ("dev-b", "reader-1", "controller"):
        c = ClientSession(f[name], t, "dev-a", clock=lambda: NOW)
        s = ServerSession(f["dev-a"], t, replay=ReplayCache(), clock=lambda: NOW, pairs=sp)
        handshake(c, s)
    assert len(sp.keys) == 2 and sp.computed == 4
    # A replaced key for a name is a different cache entry: the old pair key is never used.
    t2 = load_trust(trust_json())
    trusting.trust_add(t2, "dev-b", "device", f["stranger"].key.public)
    c = ClientSession(f["dev-b"], t, "dev-a", clock=lambda: NOW)
    s = ServerSession(f["dev-a"], t2, replay=ReplayCache(), clock=lambda: NOW, pairs=sp)
    assert code_of(s.receive, c.start()) == "bad-signature"


def test_a_frame_that_could_not_be_sealed_takes_no_frame_number():
    """A token that could not be made (a board short of heap: MemoryError) uses no frame number:
    the next frame is the one the peer expects, and the session goes on."""
    from sensormesh.device.secure import channel
    c, s = pair()
    handshake(c, s)
    real = channel.seal

    def short(*args):
        raise MemoryError("memory allocation failed")
    channel.seal = short
    try:
        c.wrap(b"lost")
        raise AssertionError("no MemoryError")
    except MemoryError:
        pass
    finally:
        channel.seal = real
    assert bytes(s.unwrap(c.wrap(b"next"))) == b"next"
    assert bytes(c.unwrap(s.wrap(b"back"))) == b"back"
