# The accepting side of a pipe's handshake on a device with keys, on both interpreters (pytest,
# and: micropython tests/mprun.py test_secure_accept): the deployment prepares the sender named
# by its pipe_in's "peer" (keys.prepare), and the sender's hello is then checked with server.py
# alone, with every check of the trust store's path. Keys: security_keys.json (test only).
import json

from sensormesh.device import status, transport
from sensormesh.device.secure.fernet import b64decode, b64encode
from sensormesh.device.secure.handshake import ClientSession, HandshakeError, PairCache, ReplayCache, ServerSession
from sensormesh.device.secure.basics import replay_state as fresh_replay

from loopkit import listen
from test_secure_device import SecureClient, delivered, forgets, keyed
from test_session import NOW, fixture, load_trust, trust_json


def _outcome(s, hello):
    try:
        s.receive(json.loads(json.dumps(hello)))
    except HandshakeError as e:
        return (e.code, e.message)
    return ("welcome", s.peer, s.role, s.peer_fp)


def _hellos():
    """Hellos to dev-b: good ones, and each way one can be wrong."""
    f = fixture()
    t = load_trust(trust_json())
    out = []

    def hello(who="dev-a", clock=NOW, to="dev-b", ident=None):
        return ClientSession(ident or f[who], t, to, clock=lambda: clock).start()
    good = hello()
    out += [good, good]                                           # the second one: a replay
    for field, value in (("nonce", b64encode(bytes(16)).decode()), ("ts", NOW + 1), ("from", "dev-old"),
                         ("from", "stranger"), ("from", 5), ("v", 1), ("mac", "AAAA")):
        h = json.loads(json.dumps(good))
        h["hello"][field] = value
        out.append(h)
    h = json.loads(json.dumps(good))
    mac = bytearray(b64decode(h["hello"]["mac"]))
    mac[3] ^= 1
    h["hello"]["mac"] = b64encode(bytes(mac)).decode()
    out.append(h)
    # made with another key (the controller's) under dev-a's name
    from sensormesh.device.secure.handshake import Identity
    out.append(hello(ident=Identity("dev-a", "device", f["controller"].key)))
    out += [hello(clock=NOW - 61), hello(clock=NOW + 61), hello(to="dev-a"), hello(), hello("reader-1"),
            {"hello": {}}, [1, 2], {"ping": {}}]
    return out


def test_a_known_client_gets_every_check_of_the_trust_stores_path():
    """A client the device prepared (known: its role, pair key and fingerprint, as keys.prepare
    keeps them) is checked exactly as when looked up in the trust store: the same refusals with
    the same codes and messages, in the same order, and the same replay protection (other
    clients are looked up in the trust store as before)."""
    f = fixture()
    t = load_trust(trust_json())
    role, key = t.lookup("dev-a", "client")
    known = {"dev-a": (role, PairCache(4).get(f["dev-b"], key), key.fingerprint())}
    by_store, by_known = ReplayCache(), ReplayCache()
    hellos = _hellos()
    results = []
    for h in hellos:
        a = _outcome(ServerSession(f["dev-b"], t, replay=by_store, clock=lambda: NOW), h)
        b = _outcome(ServerSession(f["dev-b"], t, replay=by_known, clock=lambda: NOW, known=known), h)
        assert a == b, (h, a, b)
        results.append(a[0])
    assert results[0] == "welcome" and results[1] == "replay", results
    for code in ("bad-signature", "revoked", "unknown-key", "malformed", "stale-timestamp", "plaintext-refused"):
        assert code in results, (code, results)
    assert results.count("welcome") == 3, results      # dev-a twice, the reader once


def test_a_known_clients_session_works_both_ways():
    f = fixture()
    t = load_trust(trust_json())
    role, key = t.lookup("dev-a", "client")
    known = {"dev-a": (role, PairCache(4).get(f["dev-b"], key), key.fingerprint())}
    c = ClientSession(f["dev-a"], t, "dev-b", clock=lambda: NOW)
    s = ServerSession(f["dev-b"], None, clock=lambda: NOW, known=known)
    c.receive(json.loads(json.dumps(s.receive(json.loads(json.dumps(c.start()))))))
    assert c.done and s.done and (s.peer, s.role, s.peer_fp) == ("dev-a", "device", key.fingerprint())
    assert bytes(s.unwrap(c.wrap(b"up"))) == b"up" and bytes(c.unwrap(s.wrap(b"down"))) == b"down"


def test_a_prepared_clients_hello_is_served_without_server_py_only_when_server_py_would_serve_it():
    """accept.fast (a prepared client's hello, served without server.py and wire.py) welcomes
    exactly the hellos server.ServerSession welcomes from that client, with the same peer, role
    and fingerprint and a session that works; every other hello it leaves to server.py (None),
    its replay cache unchanged, and a hello whose nonce it remembers is a replay for server.py."""
    from sensormesh.device.secure import accept
    f = fixture()
    t = load_trust(trust_json())
    role, key = t.lookup("dev-a", "client")
    known = {"dev-a": (role, PairCache(4).get(f["dev-b"], key), key.fingerprint())}

    class Sec:
        name = "dev-b"
        prepared = known
        trust_src = revoked_src = None
        stamps = (None, None)

    sec = Sec()
    sec.replay_state = fresh_replay()
    by_server = ReplayCache()
    served = 0
    hellos = _hellos()
    for h in hellos:
        m = json.loads(json.dumps(h))
        want = _outcome(ServerSession(f["dev-b"], t, replay=by_server, clock=lambda: NOW, known=known), m)
        before = (bytes(sec.replay_state[0]), list(sec.replay_state[1]), dict(sec.replay_state[2]))
        got = accept.fast(sec, m, NOW)
        if got is None:
            assert want[0] != "welcome" or want[1] != "dev-a", (h, want)
            assert (bytes(sec.replay_state[0]), sec.replay_state[1], sec.replay_state[2]) == before, h
            continue
        served += 1
        ch, welcome, who = got
        assert want == ("welcome", who[1], who[0], who[2]), (h, want, who)
        assert set(welcome) == {"welcome"} and welcome["welcome"]["from"] == "dev-b"
    assert served == 2, served              # the good hello (not its replay) and a later one
    # a hello it served is a replay for server.py
    good = hellos[0]
    assert _outcome(ServerSession(f["dev-b"], None, replay=ReplayCache(state=sec.replay_state), clock=lambda: NOW,
                                  known=known), json.loads(json.dumps(good)))[0] == "replay"


def test_a_prepared_clients_fast_session_works_both_ways():
    from sensormesh.device.secure import accept
    f = fixture()
    t = load_trust(trust_json())
    role, key = t.lookup("dev-a", "client")

    class Sec:
        name = "dev-b"
        prepared = {"dev-a": (role, PairCache(4).get(f["dev-b"], key), key.fingerprint())}
        trust_src = revoked_src = None
        stamps = (None, None)
        replay_state = fresh_replay()

    c = ClientSession(f["dev-a"], t, "dev-b", clock=lambda: NOW)
    ch, welcome, who = accept.fast(Sec(), json.loads(json.dumps(c.start())), NOW)
    c.receive(json.loads(json.dumps(welcome)))
    assert c.done and who == ("device", "dev-a", key.fingerprint())
    assert bytes(ch.unwrap(c.wrap(b"up"))) == b"up" and bytes(c.unwrap(ch.wrap(b"down"))) == b"down"


def _receiving(loop, peer="dev-a", trust_src=None):
    """dev-b deployed with a pipe_in whose sender is `peer` (as the controller names it) and a
    callback sink, and its controller's client."""
    b = keyed("dev-b", [], loop)
    if trust_src is not None:
        b.security.trust_src = trust_src
    baddr = listen(b)
    cb = SecureClient(loop, baddr, "controller", "dev-b")
    assert loop.run_until(cb.ready, 5000) and cb.error is None, cb.error
    agreed = status.security(b.security)["key_agreements"]        # the controller's pair key
    cb.conn.send({"deploy": {"assignment": {"pipeline": "p", "epoch": 1, "steps": [
        {"id": "in", "type": "pipe_in", "params": {"edge": "e1", "peer": peer}},
        {"id": "k", "type": "callback", "params": {"name": "out"}, "inputs": ["in"]}]}}})
    assert loop.run_until(lambda: cb.replies("deployed"), 5000), cb.messages
    cb.conn.send({"start": {}})
    assert loop.run_until(lambda: cb.replies("started"), 5000)
    return b, baddr, cb, agreed


def _sender(loop, baddr, count=50):
    a = keyed("dev-a", ["counter@0"], loop)
    ca = SecureClient(loop, listen(a), "controller", "dev-a")
    assert loop.run_until(ca.ready, 5000) and ca.error is None, ca.error
    ca.conn.send({"deploy": {"assignment": {"pipeline": "p", "epoch": 1, "steps": [
        {"id": "s", "type": "source", "params": {"sensor": "counter", "count": count}},
        {"id": "o", "type": "pipe_out", "params": {"edge": "e1", "to": baddr, "peer": "dev-b", "time-frame": 5},
         "inputs": ["s"]}]}}})
    assert loop.run_until(lambda: ca.replies("deployed"), 5000), ca.messages
    return a, ca


def _record_loads():
    """Record the handshake modules loaded from now on (secure.load: name, and whether keys.py
    and admit.py were in memory then); returns (records, undo)."""
    import sys
    from sensormesh.device import secure
    real = secure.load
    seen = []

    def load(name):
        m = real(name)
        seen.append((name, "sensormesh.device.secure.keys" in sys.modules,
                     "sensormesh.device.secure.admit" in sys.modules))
        return m
    # kept loaded (CPython, .py sources): their own binding of load
    mods = [m for m in (sys.modules.get("sensormesh.device.secure." + n) for n in ("admit", "accept")) if m]
    secure.load = load
    for m in mods:
        m.load = load

    def undo():
        secure.load = real
        for m in mods:
            m.load = real
    return seen, undo


def test_a_pipes_sender_prepared_at_the_deployment_is_accepted_without_the_trust_stores_code():
    """The deployment of a receiving device looks up the pipe's sender ("peer" of its pipe_in)
    and computes the pair key at once; the sender's connection is then accepted with admit.py,
    accept.py and what it imports only (server.py, wire.py and keys.py not loaded for it, no key
    agreement), and the pipe works."""
    loop = transport.Loop()
    b, baddr, cb, agreed = _receiving(loop)
    role, pair, fp = b.security.prepared["dev-a"]
    assert role == "device" and len(pair) == 32 and len(fp) == 32, (role, fp)
    assert status.security(b.security)["key_agreements"] == agreed + 1
    a, ca = _sender(loop, baddr)
    seen, undo = _record_loads()
    try:
        ca.conn.send({"start": {}})
        assert loop.run_until(lambda: len(delivered(cb)) >= 50, 10000), (len(delivered(cb)), b.runtime.status())
    finally:
        undo()
    assert delivered(cb) == list(range(50))
    names = [n for n, _, _ in seen]
    # served by accept.py (fast): neither server.py and wire.py nor keys.py loaded for it
    assert "accept" in names and not [n for n in names if n in ("server", "wire", "keys")], seen
    if forgets():          # a board running .mpy files: keys.py not in memory during the accept,
        assert not any(k for n, k, _ in seen if n in ("admit", "accept", "server")), seen
        # nor admit.py while its hello is checked (no other connection waits for a hello)
        assert not any(a for n, _, a in seen if n in ("accept", "server")), seen
    st = status.security(b.security)
    assert st["key_agreements"] == agreed + 1 and st["accepted"] == 2 and st["refused"] == {}, st
    a.close()
    b.close()


def test_a_sender_revoked_after_the_deployment_is_refused_at_its_accept():
    """What the deployment prepared for a pipe's sender is used only while the trust store is
    the one it came from: a trust file changed in between (the sender revoked) is read again
    when the sender's hello arrives, which is refused."""
    import os
    path = "/tmp/sensormesh-test-trust-accept-%s.json" % "".join("%02x" % c for c in os.urandom(6))
    with open(path, "w") as f:
        json.dump(trust_json(), f)
    loop = transport.Loop()
    logs = []
    b = a = None
    try:
        b, baddr, cb, agreed = _receiving(loop, trust_src=path)
        b.log = logs.append
        assert "dev-a" in b.security.prepared
        with open(path, "w") as f:
            json.dump(trust_json(revoked=("dev-old", "dev-a")), f)
        a, ca = _sender(loop, baddr)
        ca.conn.send({"start": {}})
        assert loop.run_until(lambda: status.security(b.security)["refused"].get("revoked"), 5000), logs
        assert any("trust store reloaded" in line for line in logs), logs
        assert "dev-a" not in b.security.prepared
        assert status.security(b.security)["accepted"] == 1 and delivered(cb) == []
    finally:
        for d in (a, b):
            if d is not None:
                d.close()
        os.remove(path)


def test_a_hello_that_finds_no_heap_for_its_code_closes_its_connection():
    """A hello arrives when accept.py cannot be loaded (a MemoryError): the connection is closed
    (its peer dials again), its pre-authentication slot released, and nothing escapes to the
    loop; the next hello, with heap for it, is welcomed."""
    from sensormesh.device import secure
    loop = transport.Loop()
    a = keyed("dev-a", [], loop)
    addr = listen(a)
    errors = []
    loop.on_error = lambda e, fn: errors.append(e)
    real = secure.load

    def load(name):
        if name == "accept":
            raise MemoryError("no heap")
        return real(name)
    secure.load = load
    try:
        c = SecureClient(loop, addr, "controller", "dev-a")
        assert loop.run_until(lambda: c.closed, 5000), c.messages
    finally:
        secure.load = real
    assert errors == [] and not c.cs.done and a.security.pending == 0, (errors, a.security.pending)
    c = SecureClient(loop, addr, "controller", "dev-a")
    assert loop.run_until(c.ready, 5000) and c.error is None and c.cs.done, c.error
    a.close()


def _failing(names, after=0):
    """A secure.load that raises MemoryError for the modules `names` once `after` loads of them
    have passed; returns (load, restore)."""
    from sensormesh.device import secure
    real = secure.load
    seen = [0]

    def load(name):
        if name in names:
            seen[0] += 1
            if seen[0] > after:
                raise MemoryError("no heap")
        return real(name)

    def restore():
        secure.load = real
    secure.load = load
    return restore


def test_a_handshake_whose_end_finds_no_heap_frees_its_slot_and_answers():
    """Once a connection holds its slot, basics.py and refused.py cannot be loaded any more (the
    heap is full): a keyed hello is still welcomed and a plaintext request still refused with a
    closed connection (not left waiting), and no slot stays counted: every later handshake would
    have been refused as busy."""
    from sensormesh.device.core import Device  # noqa: F401  (keyed() makes it)
    loop = transport.Loop()
    a = keyed("dev-a", [], loop)
    addr = listen(a)
    errors = []
    loop.on_error = lambda e, fn: errors.append(e)
    restore = _failing(("basics", "refused"))
    try:
        c = SecureClient(loop, addr, "controller", "dev-a")
        assert loop.run_until(c.ready, 5000) and c.error is None and c.cs.done, (c.error, c.messages)
    finally:
        restore()
    restore = _failing(("basics", "refused"))
    try:
        from loopkit import Collector
        p = Collector()
        conn = transport.dial(loop, addr, p)
        conn.send({"data-request": {"sensor": "counter"}})
        assert loop.run_until(lambda: p.closed, 5000), p.messages
    finally:
        restore()
    assert a.security.pending == 0 and a.security.pending_by == {}, (a.security.pending, errors)
    assert errors == [], errors
    c.conn.close()
    a.close()


def test_a_connection_whose_slot_finds_no_heap_is_closed_at_once():
    """A connection is accepted when admit.py, the code of its pre-authentication slot, cannot
    be loaded (a MemoryError): it is closed at once rather than left open without a slot, a
    deadline or the small frame limit of a hello; nothing escapes to the loop, no slot stays
    counted, and the next connection, with heap for it, is welcomed."""
    loop = transport.Loop()
    a = keyed("dev-a", [], loop)
    addr = listen(a)
    errors = []
    loop.on_error = lambda e, fn: errors.append(e)
    from loopkit import Collector
    restore = _failing(("admit",))
    try:
        p = Collector()
        transport.dial(loop, addr, p)
        assert loop.run_until(lambda: p.closed, 5000), p.messages
    finally:
        restore()
    assert errors == [] and a.security.pending == 0 and a.security.pending_by == {}, (errors, a.security.pending)
    c = SecureClient(loop, addr, "controller", "dev-a")
    assert loop.run_until(c.ready, 5000) and c.error is None and c.cs.done, (c.error, c.messages)
    c.conn.close()
    a.close()


def test_a_hello_whose_slot_finds_no_heap_to_be_released_closes_and_the_slot_frees_at_its_deadline():
    """The hello arrives, but admit.py, needed to release the connection's pre-authentication
    slot, cannot be loaded any more (a MemoryError): the connection is closed at once (before,
    it stayed open, the MemoryError escaping on every message), and the slot is released at its
    deadline, so later handshakes are not refused as busy for good."""
    loop = transport.Loop()
    a = keyed("dev-a", [], loop)
    a.security.handshake_ms = 2000
    addr = listen(a)
    errors = []
    loop.on_error = lambda e, fn: errors.append(e)
    restore = _failing(("admit",), after=1)     # its slot is taken; its release finds no heap
    try:
        c = SecureClient(loop, addr, "controller", "dev-a")
        assert loop.run_until(lambda: c.closed, 1000), "still open before its deadline"
        assert not c.cs.done and a.security.pending == 1
    finally:
        restore()
    assert loop.run_until(lambda: a.security.pending == 0, 4000), a.security.pending
    assert a.security.pending_by == {} and all(isinstance(e, MemoryError) for e in errors), errors
    c = SecureClient(loop, addr, "controller", "dev-a")
    assert loop.run_until(c.ready, 5000) and c.error is None and c.cs.done, (c.error, c.messages)
    c.conn.close()
    a.close()


def test_a_slot_whose_deadline_finds_no_heap_counts_nothing():
    """A connection's pre-authentication slot is being taken when its deadline's timer finds no
    heap (a MemoryError): the connection is closed, and no slot stays counted (before, the
    counts came first: the slot stayed taken with no deadline to release it, and a board, with
    two slots, refused every later handshake as busy after two such connections)."""
    loop = transport.Loop()
    a = keyed("dev-a", [], loop)
    addr = listen(a)
    errors = []
    loop.on_error = lambda e, fn: errors.append(e)
    from loopkit import Collector
    real = loop.call_later
    short = []

    def call_later(ms, fn):
        if ms == a.security.handshake_ms and len(short) < 3:    # the slot's deadline
            short.append(ms)
            raise MemoryError("no heap")
        return real(ms, fn)
    loop.call_later = call_later
    try:
        for _ in range(3):
            p = Collector()
            transport.dial(loop, addr, p)
            assert loop.run_until(lambda: p.closed, 5000), p.messages
    finally:
        loop.call_later = real
    assert len(short) == 3 and a.security.pending == 0 and a.security.pending_by == {}, \
        (short, a.security.pending, a.security.pending_by)
    c = SecureClient(loop, addr, "controller", "dev-a")
    assert loop.run_until(c.ready, 5000) and c.error is None and c.cs.done, (c.error, c.messages)
    c.conn.close()
    a.close()
