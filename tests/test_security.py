"""Issue 6 on CPython: interop with cryptography and with the MicroPython unix port, every
handshake failure code across interpreters, property tests on bad input, and `sensormesh keys`.

The plain device tests (spec vectors, handshake state machines) are tests/device/test_fernet.py
and test_session.py, which pytest runs here and tests/test_security_micropython.py runs on
MicroPython.
"""
import json
import os
import select
import stat
import subprocess
import time

import pytest
from click.testing import CliRunner
from cryptography.fernet import Fernet as CFernet
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import test_session as devtests
from procs import ROOT, need_micropython
from sensormesh.device import codec
from sensormesh.device import status
from sensormesh.device.secure import fernet
from sensormesh.device.secure import handshake as session
from sensormesh.device.secure import trust as trusting
from sensormesh.device.secure import x25519
from sensormesh.controller.keys import KeyStore
from sensormesh.controller.keys_cli import keys as keys_cli
from sensormesh.device.secure.handshake import ClientSession, HandshakeError, ServerSession, load_identity, load_trust

HELPER = os.path.join(ROOT, "tests", "mp_crypto_peer.py")
PROPS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# -- helpers ------------------------------------------------------------------------------------
class Peer:
    """The MicroPython end (tests/mp_crypto_peer.py), one line per message over pipes."""

    def __init__(self, *args):
        self.p = subprocess.Popen([need_micropython(), HELPER] + list(args), cwd=ROOT, text=True,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def send(self, line):
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()

    def recv(self, timeout=60):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            assert left > 0, "no answer from micropython"
            r, _, _ = select.select([self.p.stdout], [], [], left)
            if r:
                line = self.p.stdout.readline()
                assert line, "micropython exited: %s" % self.p.stderr.read()
                return line.rstrip("\n")

    def finish(self):
        try:
            self.p.stdin.write("END\n")
            self.p.stdin.close()
        except BrokenPipeError:
            pass
        rest = self.p.stdout.read()
        err = self.p.stderr.read()
        self.p.wait(timeout=60)
        assert self.p.returncode == 0, err
        return rest


def run_helper(args, lines):
    r = subprocess.run([need_micropython(), HELPER] + args, input="\n".join(lines + ["END"]) + "\n",
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout.splitlines()


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A key store made with `sensormesh keys`, plus the files the MicroPython peer loads."""
    d = tmp_path_factory.mktemp("keys")
    ks = str(d / "store")
    cli = CliRunner()
    for args in (["init"], ["issue", "dev-a", "--role", "device"], ["issue", "dev-b", "--role", "device"],
                 ["issue", "reader-1", "--role", "reader"], ["issue", "dev-old", "--role", "device"]):
        r = cli.invoke(keys_cli, ["--dir", ks] + args)
        assert r.exit_code == 0, r.output
    ids = {}
    for name in ("controller", "dev-a", "dev-b", "reader-1", "dev-old"):
        with open(os.path.join(ks, "private", name + ".json")) as f:
            ids[name] = json.load(f)
    r = cli.invoke(keys_cli, ["--dir", ks, "revoke", "dev-old"])
    assert r.exit_code == 0, r.output
    keyfile = str(d / "ids.json")
    with open(keyfile, "w") as f:
        json.dump({"identities": ids}, f)
    return {"dir": ks, "ids": ids, "keyfile": keyfile, "trust": os.path.join(ks, "trust.json")}


def ident(store, name, native=None):
    # Loading an OpenSSL key checks it (tens of ms): load each once per module.
    k = ("ident", name, native)
    if k not in store:
        store[k] = load_identity(store["ids"][name], native)
    return store[k]


def trust(store):
    if "trust-obj" not in store:
        store["trust-obj"] = load_trust(store["trust"])
    t = store["trust-obj"]
    # a copy a test may change
    c = trusting.trust_store([(n, k[0], k[1]) for n, k in trusting.trusted_keys(t).items()], t.revoked)
    c.revoked_names = set(t.revoked_names)
    return c


# -- Fernet: cryptography <-> CPython module <-> MicroPython -------------------------------------
PAYLOADS = [b"", b"1", b"[21.5]", bytes(range(256)), b'[{"t":1,"v":2}]' * 300, bytes(311), bytes(312), bytes(695)]


def test_fernet_micropython_tokens_open_with_cryptography():
    key = CFernet.generate_key().decode()
    toks = run_helper(["fernet-enc", key], [p.hex() for p in PAYLOADS])
    assert len(toks) == len(PAYLOADS)
    for p, t in zip(PAYLOADS, toks):
        assert CFernet(key).decrypt(t) == p
        assert fernet.Fernet(key).decrypt(t) == p
        assert fernet.PureFernet(key).decrypt(t) == p


def test_fernet_cryptography_tokens_open_on_micropython():
    key = CFernet.generate_key().decode()
    toks = [CFernet(key).encrypt(p).decode() for p in PAYLOADS]
    toks += [fernet.Fernet(key).encrypt(b"ours").decode(), CFernet(CFernet.generate_key()).encrypt(b"x").decode(),
             toks[2][:-2] + ("AA" if toks[2][-2:] != "AA" else "BB"), "garbage"]
    out = run_helper(["fernet-dec", key], toks)
    assert out == [p.hex() for p in PAYLOADS] + [b"ours".hex(), "INVALID", "INVALID", "INVALID"]


@given(st.binary(max_size=40), st.integers(min_value=0, max_value=2 ** 40))
@PROPS
def test_fernet_pure_equals_cryptography(data, t):
    key = CFernet.generate_key()
    iv = os.urandom(16)
    tok = fernet.PureFernet(key)._encrypt_from_parts(data, t, iv)
    assert tok == CFernet(key)._encrypt_from_parts(data, t, iv)
    assert CFernet(key).decrypt(tok) == data


@given(st.one_of(st.binary(max_size=200), st.text(max_size=200)))
@PROPS
def test_fernet_decrypt_arbitrary_input_only_invalid_token(junk):
    key = CFernet.generate_key()
    for f in (fernet.PureFernet(key), fernet.Fernet(key)):
        with pytest.raises(fernet.InvalidToken):
            f.decrypt(junk)
        with pytest.raises(fernet.InvalidToken):
            f.decrypt_at_time(junk, 60, 1000)


TOKEN_KEY = CFernet.generate_key()
TOKEN = CFernet(TOKEN_KEY).encrypt(b'[1.5,2.5,{"a":3}]')


@given(st.integers(min_value=0, max_value=len(TOKEN) - 1), st.integers(min_value=0, max_value=255))
@PROPS
def test_fernet_mutated_tokens_refused(pos, byte):
    bad = bytearray(TOKEN)
    bad[pos] = byte
    assume(bytes(bad) != TOKEN)
    for f in (fernet.PureFernet(TOKEN_KEY), fernet.Fernet(TOKEN_KEY)):
        with pytest.raises(fernet.InvalidToken):
            f.decrypt(bytes(bad))


# -- X25519 against OpenSSL ------------------------------------------------------------------------
def _openssl_x25519(k, u):
    return X25519PrivateKey.from_private_bytes(k).exchange(X25519PublicKey.from_public_bytes(u))


def test_x25519_pure_against_cryptography(store):
    obj = store["ids"]["dev-a"]
    pure = trusting.private_from_json(obj, native=False)
    native = trusting.private_from_json(obj, native=True)
    assert pure.public.pub == native.public.pub == bytes.fromhex(obj["x25519"])
    for _ in range(5):
        other = X25519PrivateKey.generate()
        pub = x25519.PublicKey(other.public_key().public_bytes_raw())
        assert pure.exchange(pub) == native.exchange(pub) == other.exchange(X25519PublicKey.from_public_bytes(pure.public.pub))
    assert pure.public.fingerprint() == x25519.fingerprint(bytes.fromhex(obj["x25519"]))


def test_x25519_iterated_1000_rfc7748():
    # RFC 7748 section 5.2: k = u = 9, then 1,000 times k, u = X25519(k, u), k.
    k = u = b"\x09" + bytes(31)
    for _ in range(1000):
        k, u = x25519.scalarmult(k, u), k
    assert k.hex() == "684cf59ba83309552800ef566f2f4d3c1c3887c49360e3875f2eb94d99532c51"


@given(k=st.binary(min_size=32, max_size=32), u=st.binary(min_size=32, max_size=32))
@settings(max_examples=60, deadline=None)
def test_x25519_pure_equals_openssl_on_arbitrary_input(k, u):
    # Any 32 bytes are a valid input (non-canonical u and the high bit included).
    try:
        expect = _openssl_x25519(k, u)
    except ValueError:          # OpenSSL refuses an all-zero result
        expect = bytes(32)
    assert x25519.scalarmult(k, u) == expect


# -- handshakes across interpreters --------------------------------------------------------------
def test_handshake_cpython_client_micropython_server(store):
    peer = Peer("server", store["keyfile"], store["trust"], "dev-a")
    c = ClientSession(ident(store, "controller"), trust(store), "dev-a")
    peer.send(json.dumps(c.start()))
    c.receive(json.loads(peer.recv()))
    assert c.done and c.peer == "dev-a" and c.role == "device"
    for i in range(3):
        peer.send(c.wrap(b'{"deploy":%d}' % i).decode())
        assert c.unwrap(peer.recv().encode()) == b'echo:{"deploy":%d} from controller as controller' % i
    peer.finish()


def test_handshake_micropython_client_cpython_server(store):
    peer = Peer("client", store["keyfile"], store["trust"], "dev-b", "dev-a")
    s = ServerSession(ident(store, "dev-a"), trust(store))
    hello = json.loads(peer.recv())
    peer.send(json.dumps(s.receive(hello)))
    assert s.done and s.peer == "dev-b" and s.role == "device"
    assert s.unwrap(peer.recv().encode()) == b"ping from dev-b"
    peer.send(s.wrap(b"pong to " + s.peer.encode()).decode())
    assert peer.recv() == "RESULT pong to dev-b"
    peer.finish()


def test_handshake_micropython_to_micropython_through_cpython(store):
    # Two MicroPython processes; this test only carries the lines between them (a reader).
    srv = Peer("server", store["keyfile"], store["trust"], "dev-a")
    cli = Peer("client", store["keyfile"], store["trust"], "reader-1", "dev-a")
    srv.send(cli.recv())
    cli.send(srv.recv())
    srv.send(cli.recv())
    cli.send(srv.recv())
    assert cli.recv() == "RESULT echo:ping from reader-1 from reader-1 as reader"
    srv.finish()
    cli.finish()


def mp_server_refuses(store, client_id, client_trust, server="dev-a", mutate=None, clock=None):
    peer = Peer("server", store["keyfile"], store["trust"], server)
    c = ClientSession(client_id, client_trust, server, clock=clock)
    hello = c.start()
    if mutate:
        mutate(hello["hello"])
    peer.send(json.dumps(hello))
    reply = json.loads(peer.recv())
    peer.finish()
    with pytest.raises(HandshakeError) as e:
        c.receive(reply)
    assert not c.done and c.wrap is None
    return e.value


def test_failure_codes_reported_by_micropython_server(store):
    # unknown key: a key the controller never issued
    st = trust(store)
    stranger = devtests.fixture()["stranger"]
    trusting.trust_add(st, "stranger", "device", stranger.key.public)
    e = mp_server_refuses(store, stranger, st)
    assert e.code == "unknown-key" and "stranger" in e.message
    # revoked: dev-old's key is still a valid key, but its fingerprint is in the trust store's list
    st = trust(store)
    trusting.trust_add(st, "dev-old", "device", trusting.public_from_json(store["ids"]["dev-old"]))
    e = mp_server_refuses(store, ident(store, "dev-old"), st)
    assert e.code == "revoked" and "dev-old" in e.message
    # bad signature (the hello's MAC)
    def flip(h):
        s = h["mac"]
        h["mac"] = ("B" if s[0] == "A" else "A") + s[1:]
    e = mp_server_refuses(store, ident(store, "controller"), trust(store), mutate=flip)
    assert e.code == "bad-signature"
    # stale timestamp: the client's clock is ten minutes slow
    e = mp_server_refuses(store, ident(store, "controller"), trust(store), clock=lambda: time.time() - 600)
    assert e.code == "stale-timestamp" and "window 60 s" in e.message
    # malformed
    e = mp_server_refuses(store, ident(store, "controller"), trust(store), mutate=lambda h: h.pop("nonce"))
    assert e.code == "malformed"


def test_plaintext_refused_by_micropython_server(store):
    peer = Peer("server", store["keyfile"], store["trust"], "dev-a")
    peer.send(json.dumps({"data-request": {"sensor": "dht11"}}))
    reply = json.loads(peer.recv())
    peer.finish()
    assert reply["error"]["code"] == "plaintext-refused"


def test_micropython_client_reports_refusal(store):
    # dev-a's trust store in this test does not list dev-b: the MicroPython client is told why.
    t = json.load(open(store["trust"]))
    del t["keys"]["dev-b"]
    s = ServerSession(ident(store, "dev-a"), load_trust(t))
    peer = Peer("client", store["keyfile"], store["trust"], "dev-b", "dev-a")
    with pytest.raises(HandshakeError) as e:
        s.receive(json.loads(peer.recv()))
    peer.send(json.dumps(e.value.to_message()))
    line = peer.recv()
    assert line.startswith("ERROR unknown-key refused by dev-a:"), line
    peer.finish()


def test_micropython_client_refuses_impostor_server(store):
    # dev-b answers a hello meant for dev-a (say, it took over dev-a's address): it cannot make
    # the pair key of controller and dev-a, so whatever it sends, the client refuses it.
    peer = Peer("client", store["keyfile"], store["trust"], "controller", "dev-a")
    hello = json.loads(peer.recv())
    s = ServerSession(ident(store, "dev-b"), trust(store))
    with pytest.raises(HandshakeError) as e:
        s.receive(hello)
    assert e.value.code == "unknown-key"
    forged = {"welcome": {"v": 2, "from": "dev-a", "nonce": fernet.b64encode(os.urandom(16)).decode(),
                          "proof": fernet.b64encode(os.urandom(32)).decode()}}
    peer.send(json.dumps(forged))
    assert peer.recv().startswith("ERROR bad-signature")
    peer.finish()


# -- property tests: arbitrary and mutated handshake messages -------------------------------------
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
    max_leaves=12)
FIELDS = ("v", "from", "to", "ts", "nonce", "mac")


@pytest.fixture(scope="module")
def hello(store):
    c = ClientSession(ident(store, "controller"), trust(store), "dev-a")
    return c.start()


def fresh_server(store, at=None):
    # at: pin the server's clock (to the shared hello's time, however long the run takes)
    return ServerSession(ident(store, "dev-a"), trust(store), replay=session.ReplayCache(),
                         clock=None if at is None else (lambda: at))


@given(msg=JSON)
@PROPS
def test_server_survives_arbitrary_messages(store, msg):
    for m in (msg, {"hello": msg}):
        with pytest.raises(HandshakeError) as e:
            fresh_server(store).receive(m)
        assert e.value.code in session.CODES


@given(field=st.sampled_from(FIELDS + ("extra",)), value=JSON)
@PROPS
def test_server_survives_field_replaced(store, hello, field, value):
    h = dict(hello["hello"])
    assume(h.get(field) != value or type(h.get(field)) is not type(value))
    h[field] = value
    s = fresh_server(store, hello["hello"]["ts"])
    try:
        s.receive({"hello": h})
    except HandshakeError as e:
        assert e.code in session.CODES
        return
    assert field == "extra" and s.peer == "controller"   # a field the hello does not read


@given(pos=st.integers(min_value=0), ch=st.characters(max_codepoint=0x7f))
@PROPS
def test_server_survives_mutated_hello_text(store, hello, pos, ch):
    text = json.dumps(hello)
    pos %= len(text)
    bad = text[:pos] + ch + text[pos + 1:]
    try:
        msg = json.loads(bad)
    except ValueError:
        return  # the codec refuses it before the session sees it
    s = fresh_server(store, hello["hello"]["ts"])
    try:
        s.receive(msg)
    except HandshakeError as e:
        assert e.code in session.CODES
        return
    assert msg == hello   # only a change that means the same thing (e.g. whitespace) gets through


@given(msg=JSON)
@PROPS
def test_client_survives_arbitrary_replies(store, msg):
    c = ClientSession(ident(store, "controller"), trust(store), "dev-a")
    c.start()
    for m in (msg, {"welcome": msg}, {"error": msg}):
        c2 = ClientSession(ident(store, "controller"), trust(store), "dev-a")
        c2._pending = c._pending
        with pytest.raises(HandshakeError) as e:
            c2.receive(m)
        assert e.value.code in session.CODES
        assert not c2.done


@given(junk=st.binary(max_size=300))
@PROPS
def test_channel_unwrap_arbitrary_frames(store, junk):
    c, s = devtests.pair()
    devtests.handshake(c, s)
    tok = c.wrap(b"[1]")
    with pytest.raises(codec.ProtocolError):
        s.unwrap(junk)
    assert s.unwrap(tok) == b"[1]"   # junk did not disturb the session


def test_old_rsa_key_store_and_files_get_a_clear_error(tmp_path):
    d = tmp_path / "old"
    d.mkdir()
    (d / "registry.json").write_text(json.dumps({"version": 1, "controller": "controller", "keys": {}}))
    r = invoke(str(d), "list")
    assert r.exit_code == 1 and "older sensormesh" in r.output and "X25519" in r.output
    with pytest.raises(ValueError, match="RSA key from an older sensormesh"):
        load_identity({"name": "x", "role": "device", "n": "ab", "e": 65537, "d": "01"})
    with pytest.raises(ValueError, match="RSA key from an older sensormesh"):
        load_trust({"keys": {"x": {"role": "device", "n": "ab", "e": 65537}}})


# -- sensormesh keys -------------------------------------------------------------------------------
def invoke(d, *args):
    return CliRunner().invoke(keys_cli, ["--dir", d] + list(args))


def test_keys_cli_files_and_permissions(tmp_path):
    d = str(tmp_path / "ks")
    r = invoke(d, "issue", "dev-a", "--role", "device")
    assert r.exit_code != 0 and "keys init" in r.output
    r = invoke(d, "init")
    assert r.exit_code == 0, r.output
    assert invoke(d, "init").exit_code != 0              # no silent replacement
    assert invoke(d, "issue", "dev-a", "--role", "device").exit_code == 0
    assert invoke(d, "issue", "r1", "--role", "reader").exit_code == 0
    assert invoke(d, "issue", "x", "--role", "controller").exit_code == 2
    assert invoke(d, "issue", "bad name", "--role", "device").exit_code == 1
    assert invoke(d, "issue", "dev-a", "--role", "device").exit_code == 1
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    for name in ("controller", "dev-a", "r1"):
        p = os.path.join(d, "private", name + ".json")
        assert stat.S_IMODE(os.stat(p).st_mode) == 0o600
        ident_obj = json.load(open(p))
        assert ident_obj["name"] == name and len(ident_obj["secret"]) == 64
    assert stat.S_IMODE(os.stat(os.path.join(d, "private")).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(os.path.join(d, "registry.json")).st_mode) == 0o600
    t = json.load(open(os.path.join(d, "trust.json")))
    assert sorted(t["keys"]) == ["controller", "dev-a", "r1"] and t["revoked"] == []
    assert t["keys"]["r1"]["role"] == "reader"
    for ent in t["keys"].values():
        assert set(ent) == {"role", "x25519"}              # public data only
    r = invoke(d, "list")
    assert r.exit_code == 0
    assert "dev-a" in r.output and "reader" in r.output and "active" in r.output
    js = json.loads(invoke(d, "list", "--json").output)
    assert [e["name"] for e in js] == ["controller", "dev-a", "r1"]


def test_keys_cli_never_prints_private_material(tmp_path):
    d = str(tmp_path / "ks")
    outputs = [invoke(d, "init").output, invoke(d, "issue", "dev-a", "--role", "device").output]
    outputs += [invoke(d, "list").output, invoke(d, "list", "--json").output,
                invoke(d, "export", "dev-a", str(tmp_path / "prov")).output, invoke(d, "revoke", "dev-a").output]
    for name in ("controller",):
        obj = json.load(open(os.path.join(d, "private", name + ".json")))
        for out in outputs:
            assert obj["secret"][:16] not in out and obj["secret"][-16:] not in out
    obj = json.load(open(str(tmp_path / "prov" / "identity.json")))
    for out in outputs:
        assert obj["secret"][:16] not in out


def test_keys_revoke_refused_from_next_connection(tmp_path):
    d = str(tmp_path / "ks")
    ks = KeyStore(d)
    ks.init()
    ks.issue("dev-a", "device")
    ks.issue("dev-b", "device")
    prov = str(tmp_path / "dev-a")
    assert invoke(d, "export", "dev-a", prov).exit_code == 0
    assert stat.S_IMODE(os.stat(os.path.join(prov, "identity.json")).st_mode) == 0o600
    dev_a = load_identity(os.path.join(prov, "identity.json"))
    dev_b = load_identity(os.path.join(d, "private", "dev-b.json"))
    server_trust = load_trust(os.path.join(prov, "trust.json"))
    client_trust = load_trust(os.path.join(d, "trust.json"))
    c = ClientSession(dev_b, client_trust, "dev-a")
    s = ServerSession(dev_a, server_trust)
    c.receive(s.receive(c.start()))
    assert c.done and s.role == "device"
    r = invoke(d, "revoke", "dev-b")
    assert r.exit_code == 0 and "revoked device dev-b" in r.output
    assert not os.path.exists(os.path.join(d, "private", "dev-b.json"))
    assert invoke(d, "revoke", "dev-b").exit_code == 1
    assert invoke(d, "revoke", "controller").exit_code == 1
    assert invoke(d, "revoke", "nobody").exit_code == 1
    assert "revoked" in invoke(d, "list").output
    # The device gets the new trust store; the old session is not touched, the next one is refused.
    new_trust = load_trust(os.path.join(d, "trust.json"))
    assert "dev-b" not in trusting.trusted_keys(new_trust)
    s2 = ServerSession(dev_a, new_trust)
    c2 = ClientSession(dev_b, client_trust, "dev-a")
    with pytest.raises(HandshakeError) as e:
        s2.receive(c2.start())
    assert e.value.code == "revoked" and "dev-b" in e.value.message
    # A trust store that still lists the key but carries the revoked fingerprint says the same.
    server_trust.revoked |= new_trust.revoked
    with pytest.raises(HandshakeError) as e:
        ServerSession(dev_a, server_trust).receive(ClientSession(dev_b, client_trust, "dev-a").start())
    assert e.value.code == "revoked"
    assert s.unwrap(c.wrap(b"[1]")) == b"[1]"


def test_keys_reissue_revokes_old_key(tmp_path):
    d = str(tmp_path / "ks")
    ks = KeyStore(d)
    ks.init()
    old = ks.issue("dev-a", "device")
    new = ks.issue("dev-a", "device", force=True)
    assert old["fingerprint"] != new["fingerprint"]
    t = ks.trust()
    assert {"name": "dev-a", "fingerprint": old["fingerprint"]} in t["revoked"]
    assert trusting.public_from_json(t["keys"]["dev-a"]).fingerprint() == new["fingerprint"]
    ctl_old = ks.entries()[0]["fingerprint"]
    r = invoke(d, "init", "--force")
    assert r.exit_code == 0
    assert ctl_old in [r["fingerprint"] for r in ks.trust()["revoked"]]


# -- a device short of memory during a handshake (CPython stands in: MemoryError is injected) ------
def test_handshake_without_memory_is_refused_busy_and_the_next_one_works(monkeypatch):
    """A MemoryError inside the server side of the handshake is answered with 'busy' (the peer
    is not left waiting for a welcome) and the device serves the next handshake."""
    import test_secure_device as sd
    from sensormesh.device import transport as tr
    from sensormesh.device.secure import server
    loop = tr.Loop()
    dev = sd.keyed("dev-a", ["counter@0"], loop)
    addr = sd.listen(dev)
    real = server.ServerSession

    class Short(real):
        def receive(self, msg):
            raise MemoryError("memory allocation failed")
    monkeypatch.setattr(server, "ServerSession", Short)
    c = sd.SecureClient(loop, addr, "controller", "dev-a")
    assert loop.run_until(lambda: c.error is not None, 5000)
    assert c.error.code == "busy" and "no memory free for a handshake" in c.error.message, c.error
    monkeypatch.setattr(server, "ServerSession", real)
    c = sd.SecureClient(loop, addr, "controller", "dev-a")
    assert loop.run_until(c.ready, 5000) and c.error is None, c.error
    st = status.security(dev.security)
    assert st["accepted"] == 1 and st["refused"] == {"busy": 1} and st["handshakes"] == 0, st
    dev.close()


def test_handshake_code_loads_again_after_a_memory_error(monkeypatch):
    """secure.load() collects and tries once more when loading a handshake module hits a
    MemoryError (what the connections before left may only now be garbage)."""
    import builtins
    from sensormesh.device import secure
    real = builtins.__import__
    calls = []

    def short_once(name, *a, **kw):
        if name == "sensormesh.device.secure.admit":
            calls.append(name)
            if len(calls) == 1:
                raise MemoryError("memory allocation failed")
        return real(name, *a, **kw)
    monkeypatch.setattr(builtins, "__import__", short_once)
    mod = secure.load("admit")
    assert mod.__name__ == "sensormesh.device.secure.admit" and len(calls) == 2


def test_a_deployment_short_of_memory_for_preparing_its_pipes_dial_runs_and_the_dial_does_it(monkeypatch):
    """A MemoryError while a deployment prepares its pipes' dials (keys.prepare_peer) does not
    refuse the deployment: the pipe's dial looks the peer up and computes the pair key itself."""
    import test_secure_device as sd
    from sensormesh.device import transport as tr
    from sensormesh.device.secure import keys
    loop = tr.Loop()
    b, baddr, cb = sd._receiver(loop)
    a = sd.keyed("dev-a", ["counter@0"], loop)
    ca = sd.SecureClient(loop, sd.listen(a), "controller", "dev-a")
    assert loop.run_until(ca.ready, 5000) and ca.error is None, ca.error
    real = keys.prepare_peer
    calls = []

    def short(sec, peer):
        calls.append(peer)
        if len(calls) == 1:
            raise MemoryError("memory allocation failed")
        return real(sec, peer)
    monkeypatch.setattr(keys, "prepare_peer", short)
    ca.conn.send({"deploy": {"assignment": sd._pipe_to(baddr)}})
    assert loop.run_until(lambda: ca.replies("deployed"), 5000), ca.messages
    assert a.security.prepared == {}
    ca.conn.send({"start": {}})
    assert loop.run_until(lambda: len(sd.delivered(cb)) >= 50, 10000), a.runtime.status()
    assert sd.delivered(cb) == list(range(50))
    assert calls == ["dev-b", "dev-b"] and "dev-b" in a.security.prepared     # the dial did it
    a.close()
    b.close()
