# Devices with keys in one process and one loop (pytest, and: micropython tests/mprun.py
# test_secure_device): handshake on every connection, roles, refusals, limits, and a pipeline
# whose pipe authenticates with the devices' own identities. Keys: security_keys.json (test only).
from sensormesh.device import codec
from sensormesh.device.secure import handshake as session
from sensormesh.device import status, transport
from sensormesh.device.core import Device

from loopkit import Collector, listen
from test_session import fixture, trust_json


def handshake_loaded():
    import sys
    return ("sensormesh.device.secure.handshake" in sys.modules or "sensormesh.device.secure.hello" in sys.modules
            or "sensormesh.device.secure.dialer" in sys.modules)


def forgets():
    # MicroPython from .mpy files (tests/test_heap.py runs these tests so); from .py sources, and
    # on CPython, the handshake's code stays loaded
    from sensormesh.device.secure import keys
    return keys.forgets()


def keyed(name, sensors, loop, **extra):
    d = Device(name, sensors, loop=loop)
    cfg = {"identity": fixture()["ids"][name], "trust": trust_json()}
    for k in extra:
        cfg[k] = extra[k]
    from sensormesh.device import boot
    boot.secure(d, cfg)
    return d


class SecureClient(Collector):
    """The client side of the handshake over the device's own loop (what a controller does)."""

    def __init__(self, loop, addr, who, server):
        Collector.__init__(self)
        self.cs = session.ClientSession(fixture()[who], session.load_trust(trust_json()), server)
        self.error = None
        self.conn = transport.dial(loop, addr, self)
        self.conn.send(self.cs.start())

    def on_message(self, conn, msg):
        if self.cs.done:
            self.messages.append(msg)
            return
        try:
            self.cs.receive(msg)
        except session.HandshakeError as e:
            self.error = e
            return
        conn.channel = self.cs.channel
        conn.peer_max_frame = session.wrap_limit(conn.peer_max_frame)

    def ready(self):
        return self.cs.done or self.error is not None

    def errors(self):
        return [m["error"] for m in self.messages if type(m) is dict and "error" in m]


def delivered(c):
    """The values a callback sink handed to the controller's client c, in order."""
    vals = []
    for d in c.replies("deliver"):
        vals += d["values"]
    return vals


def test_secure_pipeline_between_two_devices():
    loop = transport.Loop()
    a = keyed("dev-a", ["counter@0"], loop)
    b = keyed("dev-b", [], loop)
    aaddr, baddr = listen(a), listen(b)
    asg_b = {"pipeline": "p", "epoch": 1, "steps": [
        {"id": "in", "type": "pipe_in", "params": {"edge": "e1"}},
        {"id": "k", "type": "callback", "params": {"name": "out"}, "inputs": ["in"]}]}
    asg_a = {"pipeline": "p", "epoch": 1, "steps": [
        {"id": "s", "type": "source", "params": {"sensor": "counter", "count": 300}},
        {"id": "o", "type": "pipe_out", "params": {"edge": "e1", "to": baddr, "peer": "dev-b", "time-frame": 5},
         "inputs": ["s"]}]}
    cb = SecureClient(loop, baddr, "controller", "dev-b")
    ca = SecureClient(loop, aaddr, "controller", "dev-a")
    assert loop.run_until(lambda: cb.ready() and ca.ready(), 5000)
    assert cb.error is None and ca.error is None, (cb.error, ca.error)
    cb.conn.send({"deploy": {"assignment": asg_b}})
    ca.conn.send({"deploy": {"assignment": asg_a}})
    assert loop.run_until(lambda: cb.replies("deployed") and ca.replies("deployed"), 5000), cb.messages + ca.messages
    cb.conn.send({"start": {}})
    assert loop.run_until(lambda: cb.replies("started"), 5000)
    ca.conn.send({"start": {}})

    def got():
        return delivered(cb)
    assert loop.run_until(lambda: len(got()) >= 300, 10000), (len(got()), a.runtime.status())
    assert got() == list(range(300))
    # b accepted two sessions: the controller's and dev-a's pipe, as a device key
    st = status.security(b.security)
    assert st["accepted"] == 2 and st["refused"] == {}, st
    roles = sorted(c.protocol.role for c in b.listeners[0].conns)
    assert roles == ["controller", "device"], roles
    # the pipe's handshake (a dialing out) is over: a board has forgotten its code
    assert handshake_loaded() == (not forgets())
    a.close()
    b.close()


def test_a_pipe_serves_only_the_device_it_is_named_for():
    # b's pipe_in e1 takes values from dev-a and a's pipe_out e1 sends them to dev-b: another
    # device key (here each device's own, claiming the edge) may neither feed values into the
    # pipe_in nor pull the pipe_out's values, and the pipe's real connection stays in place
    loop = transport.Loop()
    a = keyed("dev-a", ["counter@0"], loop)
    b = keyed("dev-b", [], loop)
    aaddr, baddr = listen(a), listen(b)
    asg_b = {"pipeline": "p", "epoch": 1, "steps": [
        {"id": "in", "type": "pipe_in", "params": {"edge": "e1", "peer": "dev-a"}},
        {"id": "k", "type": "callback", "params": {"name": "out"}, "inputs": ["in"]}]}
    asg_a = {"pipeline": "p", "epoch": 1, "steps": [
        {"id": "s", "type": "source", "params": {"sensor": "counter", "rate": 200}},
        {"id": "o", "type": "pipe_out", "params": {"edge": "e1", "to": baddr, "peer": "dev-b", "time-frame": 5},
         "inputs": ["s"]}]}
    cb = SecureClient(loop, baddr, "controller", "dev-b")
    ca = SecureClient(loop, aaddr, "controller", "dev-a")
    assert loop.run_until(lambda: cb.ready() and ca.ready(), 5000)
    cb.conn.send({"deploy": {"assignment": asg_b}})
    ca.conn.send({"deploy": {"assignment": asg_a}})
    assert loop.run_until(lambda: cb.replies("deployed") and ca.replies("deployed"), 5000), cb.messages + ca.messages
    cb.conn.send({"start": {}})
    assert loop.run_until(lambda: cb.replies("started"), 5000)
    ca.conn.send({"start": {}})
    assert loop.run_until(lambda: len(delivered(cb)) >= 10, 5000)
    inject = SecureClient(loop, baddr, "dev-b", "dev-b")
    steal = SecureClient(loop, aaddr, "dev-a", "dev-a")
    assert loop.run_until(lambda: inject.ready() and steal.ready(), 5000)
    assert inject.error is None and steal.error is None, (inject.error, steal.error)
    inject.conn.send({"pipe": {"edge": "e1", "epoch": 1, "from": "dev-a"}})
    inject.conn.send([-1, -1, -1])
    steal.conn.send({"pull": {"edge": "e1", "epoch": 1, "from": "dev-b", "expect": [0, 0]}})
    assert loop.run_until(lambda: inject.closed and steal.closed, 5000), (inject.messages, steal.messages)
    for c, words in ((inject, "edge 'e1' of device dev-b is dev-a's; this session is dev-b's"),
                     (steal, "edge 'e1' of device dev-a is dev-b's; this session is dev-a's")):
        err = c.errors()
        assert err and err[0]["code"] == "wrong-peer" and words in err[0]["message"], c.messages
        assert [m for m in c.messages if type(m) is list or (type(m) is dict and ("ack" in m or "seq" in m))] == []
    n = len(delivered(cb))
    assert loop.run_until(lambda: len(delivered(cb)) >= n + 20, 5000)
    vals = delivered(cb)
    assert vals == list(range(len(vals))), vals[-10:]      # nothing injected, nothing missing
    ca.conn.send({"status": {}})
    assert loop.run_until(lambda: ca.replies("status"), 5000)
    assert ca.replies("status")[0]["assignment"]["steps"]["o"]["connects"] == 1   # never displaced
    a.close()
    b.close()


def test_plaintext_and_wrong_role_refused_device_keeps_serving():
    loop = transport.Loop()
    a = keyed("dev-a", ["counter@100"], loop, max_handshakes=16)   # 6 at once from one address
    addr = listen(a)
    plain = []
    for msg in ({"hello": {}}, {"data-request": {"sensor": "counter"}}, [1, 2], {"deploy": {}}):
        c = Collector()
        conn = transport.dial(loop, addr, c)
        conn.send(msg)
        plain.append(c)
    dev = SecureClient(loop, addr, "dev-b", "dev-a")
    rdr = SecureClient(loop, addr, "reader-1", "dev-a")
    assert loop.run_until(lambda: all(c.closed for c in plain) and dev.ready() and rdr.ready(), 5000)
    for c in plain:
        assert c.replies("error")[0]["code"] == "plaintext-refused", c.messages
    assert "no credentials" in plain[0].replies("error")[0]["message"]
    dev.conn.send({"deploy": {"assignment": {"steps": []}}})
    rdr.conn.send({"data-request": {"sensor": "counter", "time-frame": 50}})
    assert loop.run_until(lambda: dev.closed and len([m for m in rdr.messages if type(m) is list]) >= 3, 5000)
    err = dev.errors()[0]
    assert err["code"] == "wrong-role" and "'deploy'" in err["message"] and "dev-b" in err["message"], err
    vals = [v for m in rdr.messages if type(m) is list for v in m]
    assert vals == list(range(vals[0], vals[0] + len(vals)))
    assert a.runtime is None          # nothing was deployed
    st = status.security(a.security)
    assert st["refused"] == {"plaintext-refused": 4, "wrong-role": 1}, st
    a.close()


def secure_imports(fn):
    """The secure modules imported (or looked up again) while fn() runs: their names after
    'sensormesh.device.secure.', in order."""
    import builtins
    seen = []
    real = builtins.__import__

    def traced(name, *args):
        if name.startswith("sensormesh.device.secure."):
            seen.append(name[25:])
        return real(name, *args)
    builtins.__import__ = traced
    try:
        fn()
    finally:
        builtins.__import__ = real
    return seen


def test_a_client_without_keys_is_refused_without_loading_the_server_side():
    # A first message that is no keyed hello is refused in the server's words without loading
    # what checking a keyed hello needs (wire.py, keys.py, server.py: about 14 KB of a board's
    # heap, and trust.py to read the key files): a client without keys must not make a busy
    # board load it.
    loop = transport.Loop()
    a = keyed("dev-a", ["counter@100"], loop, max_handshakes=16)
    addr = listen(a)
    plain = []

    def refused():
        for msg in ({"hello": {}}, {"data-request": {"sensor": "counter"}}, [1, 2]):
            c = Collector()
            conn = transport.dial(loop, addr, c)
            conn.send(msg)
            plain.append(c)
        assert loop.run_until(lambda: all(c.closed for c in plain), 5000)
    seen = secure_imports(refused)
    errs = [c.replies("error")[0] for c in plain]
    assert [e["code"] for e in errs] == ["plaintext-refused"] * 3, errs
    assert "the hello carries no credentials" in errs[0]["message"], errs
    assert "the first message must be a hello, got a control message 'data-request'" in errs[1]["message"], errs
    assert "the first message must be a hello, got a data message" in errs[2]["message"], errs
    assert "accept" in seen and not set(seen) & {"wire", "keys", "server", "trust", "pubkey"}, seen
    assert status.security(a.security)["refused"] == {"plaintext-refused": 3}
    # a keyed client is served as before
    rdr = SecureClient(loop, addr, "reader-1", "dev-a")
    assert loop.run_until(rdr.ready, 5000) and rdr.error is None, rdr.error
    a.close()


def test_the_deploying_controller_s_next_session_needs_no_trust_store_lookup():
    # The deployment keeps the controller that deployed it (keys.prepare): its next session (a
    # status while the pipeline runs) is checked by accept.fast, without keys.py, server.py and
    # wire.py (about 14 KB a busy board may not have free), and is a controller session as before.
    loop = transport.Loop()
    a = keyed("dev-a", ["counter@0"], loop)
    addr = listen(a)
    c1 = SecureClient(loop, addr, "controller", "dev-a")
    assert loop.run_until(c1.ready, 5000) and c1.error is None, c1.error
    c1.conn.send({"deploy": {"assignment": {"pipeline": "p", "epoch": 1, "steps": [
        {"id": "s", "type": "source", "params": {"sensor": "counter", "count": 5}},
        {"id": "k", "type": "callback", "params": {"name": "out"}, "inputs": ["s"]}]}}})
    assert loop.run_until(lambda: c1.replies("deployed"), 5000), c1.messages
    c2 = []

    def second():
        c2.append(SecureClient(loop, addr, "controller", "dev-a"))
        assert loop.run_until(c2[0].ready, 5000) and c2[0].error is None, c2[0].error
    seen = secure_imports(second)
    c2 = c2[0]
    assert "accept" in seen and not set(seen) & {"wire", "keys", "server", "trust", "x25519"}, seen
    c2.conn.send({"status": {}})
    assert loop.run_until(lambda: c2.replies("status"), 5000), c2.messages
    assert c2.replies("status")[0]["assignment"]["state"] == "deployed"
    roles = sorted(c.protocol.role for c in a.listeners[0].conns if not c.closed)
    assert roles == ["controller", "controller"], roles
    st = status.security(a.security)
    assert st["accepted"] == 2 and st["key_agreements"] == 1, st
    a.close()


def test_pipe_without_peer_refused_on_keyed_device():
    loop = transport.Loop()
    a = keyed("dev-a", ["counter@0"], loop)
    addr = listen(a)
    c = SecureClient(loop, addr, "controller", "dev-a")
    assert loop.run_until(c.ready, 5000) and c.error is None
    c.conn.send({"deploy": {"assignment": {"pipeline": "p", "epoch": 1, "steps": [
        {"id": "s", "type": "source", "params": {"sensor": "counter"}},
        {"id": "o", "type": "pipe_out", "params": {"edge": "e", "to": "127.0.0.1:9"}, "inputs": ["s"]}]}}})
    assert loop.run_until(lambda: c.errors(), 5000)
    err = c.errors()[0]
    assert err["code"] == "bad-assignment" and "peer" in err["message"], err
    a.close()


def test_busy_and_handshake_timeout_bound_half_open_connections():
    loop = transport.Loop()
    # 4 slots, at most 2 of them for one address (the flood comes from one)
    a = keyed("dev-a", ["counter@100"], loop, max_handshakes=4, handshake_ms=300)
    addr = listen(a)
    ok = SecureClient(loop, addr, "reader-1", "dev-a")   # completes before the flood
    assert loop.run_until(ok.ready, 5000) and ok.error is None
    ok.conn.send({"data-request": {"sensor": "counter", "time-frame": 50}})
    idle = []
    for i in range(6):
        c = Collector()
        transport.dial(loop, addr, c)
        idle.append(c)
    assert loop.run_until(lambda: sum(1 for c in idle if c.closed) >= 4, 5000)
    assert a.security.pending == 2
    busy = [c for c in idle if c.closed]
    for c in busy:
        assert c.replies("error")[0]["code"] == "busy", c.messages
    # the two held ones are closed by the handshake timeout, with a reason
    assert loop.run_until(lambda: all(c.closed for c in idle), 5000)
    assert a.security.pending == 0
    codes = sorted(c.replies("error")[0]["code"] for c in idle)
    assert codes == ["busy"] * 4 + ["timeout"] * 2, codes
    # a frame larger than a hello could be is refused before the handshake
    big = Collector()
    conn = transport.dial(loop, addr, big)
    conn.send([1] * 3000)
    assert loop.run_until(lambda: big.closed, 5000)
    e = big.replies("error")[0]
    assert e["code"] == "protocol" and "exceeds the limit" in e["message"], e
    # the stream went on without a gap, and new handshakes are accepted again
    late = SecureClient(loop, addr, "controller", "dev-a")
    assert loop.run_until(late.ready, 5000) and late.error is None
    assert loop.run_until(lambda: len([m for m in ok.messages if type(m) is list]) >= 4, 5000)
    vals = [v for m in ok.messages if type(m) is list for v in m]
    assert vals == list(range(vals[0], vals[0] + len(vals)))
    a.close()


class _Server:
    """Sends a plaintext frame, switches wrap on, and sends two tokens, all in one loop turn."""

    def __init__(self, ch):
        self.ch = ch

    def on_open(self, conn):
        conn.send({"welcome": 1})
        conn.channel = self.ch
        conn.send([1, 2])
        conn.send({"x": 3})

    def on_message(self, conn, msg):
        pass


class _Client(Collector):
    def __init__(self, ch):
        Collector.__init__(self)
        self.ch = ch

    def on_message(self, conn, msg):
        self.messages.append(msg)
        if msg == {"welcome": 1}:
            conn.channel = self.ch


def test_transport_switches_unwrap_between_frames_of_one_read():
    k1, k2 = b"1" * 32, b"2" * 32
    loop = transport.Loop()
    port = 47250
    while True:
        port += 1
        try:
            lst = transport.listen_tcp(loop, "127.0.0.1", port, lambda: _Server(session.Channel(k1, k2)))
            break
        except OSError:
            pass
    cli = _Client(session.Channel(k2, k1))
    conn = transport.dial(loop, "127.0.0.1:%d" % port, cli)
    assert loop.run_until(lambda: len(cli.messages) >= 3 or cli.closed, 5000)
    assert cli.messages == [{"welcome": 1}, [1, 2], {"x": 3}], (cli.messages, cli.closed)
    assert conn.bytes_in > 0 and not cli.closed
    conn.close()
    lst.close()


def test_wrapped_output_split_within_peer_limit():
    # A reader that accepts frames of at most 2048 bytes gets the batched stream as tokens that
    # each fit (the device splits by session.wrap_limit); a larger one would be a protocol error.
    loop = transport.Loop()
    a = keyed("dev-a", ["counter@0"], loop)
    addr = listen(a)
    c = SecureClient(loop, addr, "reader-1", "dev-a")
    c.conn.decoder.max_frame = 2048
    assert loop.run_until(c.ready, 5000) and c.error is None
    c.conn.send({"data-request": {"sensor": "counter", "time-frame": 50, "max-frame": 2048}})

    def data():
        return [m for m in c.messages if type(m) is list]
    assert loop.run_until(lambda: len(data()) >= 12 or c.closed, 10000), (c.closed, c.messages[-1:])
    assert not c.closed, c.closed
    vals = [v for m in data() for v in m]
    assert vals == list(range(len(vals))), vals[:5]
    assert max(len(m) for m in data()) > 50       # batched: many values per token
    c.conn.close()
    a.close()


def test_secure_dial_holds_messages_until_the_session_is_up():
    # What a controller on a loop uses (hello.dial): messages sent at once leave encrypted later.
    from sensormesh.device.secure import hello
    loop = transport.Loop()
    a = keyed("dev-a", ["counter@0"], loop)
    addr = listen(a)
    creds = session.Credentials(fixture()["controller"], session.load_trust(trust_json()))
    got = Collector()
    conn = hello.dial(loop, addr, got, creds, "dev-a")
    conn.send({"hello": {}})
    conn.send({"ping": 3})
    assert loop.run_until(lambda: got.replies("pong") or got.closed, 5000), got.messages
    assert got.connected and got.replies("info")[0]["secure"] is True and got.replies("pong") == [3]
    # a server name it does not trust: refused before anything is sent, reported, closed
    bad = Collector()
    hello.dial(loop, addr, bad, creds, "dev-zz").send({"ping": 1})
    assert loop.run_until(lambda: bad.closed, 5000)
    assert bad.replies("error")[0]["code"] == "unknown-key" and not bad.replies("pong")
    assert status.security(a.security)["refused"] == {}
    conn.close()
    a.close()


# -- control through a gateway, end to end (forward.py) -----------------------------------------
def _e2e(server):
    """The controller's own session with a device behind a gateway."""
    return session.ClientSession(fixture()["controller"], session.load_trust(trust_json()), server)


def _token(cs, msg):
    return cs.wrap(codec.dumps(msg)).decode()


def _opened(cs, fwd):
    assert "message" not in fwd, fwd           # after the welcome: tokens only
    return codec.decode_payload(cs.unwrap(fwd["token"].encode()))


def test_gateway_relays_an_end_to_end_session_it_cannot_read():
    loop = transport.Loop()
    gw = keyed("dev-b", [], loop)
    target = keyed("dev-a", ["counter@0"], loop)
    gw_addr, t_addr = listen(gw), listen(target)
    c = SecureClient(loop, gw_addr, "controller", "dev-b")
    assert loop.run_until(c.ready, 5000) and c.error is None
    cs = _e2e("dev-a")
    c.conn.send({"forward": {"to": t_addr, "message": cs.start(), "timeout": 5000}})
    assert loop.run_until(lambda: c.replies("forwarded") or c.closed, 5000), c.messages
    f = c.replies("forwarded")[0]
    assert f["from"] == t_addr and "welcome" in f["message"], f
    cs.receive(f["message"])
    up = gw.forwarder.ups[0]
    assert up.conn.relay                       # from the welcome on, the gateway relays raw frames
    c.conn.send({"forward": {"to": t_addr, "token": _token(cs, {"ping": 7}), "timeout": 5000}})
    c.conn.send({"forward": {"to": t_addr, "token": _token(cs, {"status": {}}), "timeout": 5000}})
    assert loop.run_until(lambda: len(c.replies("forwarded")) >= 3 or c.closed, 5000), c.messages
    f = c.replies("forwarded")
    assert _opened(cs, f[1]) == {"pong": 7}
    st = _opened(cs, f[2])["status"]
    assert st["name"] == "dev-a" and st["security"]["accepted"] == 1
    # a plaintext message for the target does not enter that session: the gateway opens a new
    # connection for it, where the target refuses it
    c.conn.send({"forward": {"to": t_addr, "message": {"ping": 8}, "timeout": 5000}})
    assert loop.run_until(lambda: len(c.replies("forwarded")) >= 4 or c.closed, 5000), c.messages
    assert up.conn.closed
    assert c.replies("forwarded")[3]["message"]["error"]["code"] == "plaintext-refused"
    # a token for a target without a session here is not sent on
    n = len(c.errors())
    c.conn.send({"forward": {"to": t_addr, "token": _token(cs, {"ping": 9}), "timeout": 5000}})
    assert loop.run_until(lambda: [e for e in c.errors()[n:] if "no secure session" in e["message"]], 5000)
    c.conn.close()
    gw.close()
    target.close()


def test_keyed_device_registers_with_a_gateway_and_serves_the_controllers_hello():
    from sensormesh.device import forward
    loop = transport.Loop()
    gw = keyed("dev-b", [], loop, max_handshakes=4)   # 2 per address: the registration and us
    gw_addr = listen(gw)
    dev = keyed("dev-a", ["counter@0"], loop)
    reg = forward.register(dev, gw_addr)       # plaintext "register", then it waits for a hello
    assert loop.run_until(lambda: "dev-a" in forward.forwarder(gw).registered, 5000)
    # on the gateway the registration is unauthenticated (a slot, a deadline, small frames)
    # until the welcome of the controller's end-to-end session has passed through it
    assert status.security(dev.security)["handshakes"] == 0 and status.security(gw.security)["handshakes"] == 1
    c = SecureClient(loop, gw_addr, "controller", "dev-b")
    assert loop.run_until(c.ready, 5000) and c.error is None
    # anything but a hello is refused by the registered device; it registers again at once
    first = reg.conn
    c.conn.send({"forward": {"to": "dev-a", "message": {"ping": 1}, "timeout": 5000}})
    assert loop.run_until(lambda: c.replies("forwarded") or c.closed, 5000), c.messages
    assert c.replies("forwarded")[0]["message"]["error"]["code"] == "plaintext-refused"
    # the hello waits (within its timeout) for the registration, then reaches the device
    cs = _e2e("dev-a")
    c.conn.send({"forward": {"to": "dev-a", "message": cs.start(), "timeout": 5000}})
    assert loop.run_until(lambda: len(c.replies("forwarded")) >= 2 or c.closed, 5000), c.messages
    assert reg.conn is not first
    cs.receive(c.replies("forwarded")[1]["message"])
    c.conn.send({"forward": {"to": "dev-a", "token": _token(cs, {"ping": 2}), "timeout": 5000}})
    assert loop.run_until(lambda: len(c.replies("forwarded")) >= 3 or c.closed, 5000), c.messages
    assert _opened(cs, c.replies("forwarded")[2]) == {"pong": 2}
    assert status.security(gw.security)["handshakes"] == 0
    held = forward.forwarder(gw).registered["dev-a"].conn
    assert held.decoder.max_frame == gw.max_frame
    # a second controller session takes the registration over: the first is told it lost it
    c2 = SecureClient(loop, gw_addr, "controller", "dev-b")
    assert loop.run_until(c2.ready, 5000) and c2.error is None
    cs2 = _e2e("dev-a")
    c2.conn.send({"forward": {"to": "dev-a", "message": cs2.start(), "timeout": 5000}})
    assert loop.run_until(lambda: c2.replies("forwarded") or c2.closed, 5000), c2.messages
    cs2.receive(c2.replies("forwarded")[0]["message"])
    c2.conn.send({"forward": {"to": "dev-a", "token": _token(cs2, {"ping": 3}), "timeout": 5000}})
    assert loop.run_until(lambda: len(c2.replies("forwarded")) >= 2 or c2.closed, 5000), c2.messages
    assert _opened(cs2, c2.replies("forwarded")[1]) == {"pong": 3}
    assert [e for e in c.errors() if e["code"] == "unreachable" and e["to"] == "dev-a"], c.messages
    assert status.security(dev.security)["accepted"] == 2
    for x in (c.conn, c2.conn, reg.conn):
        x.close()
    gw.close()
    dev.close()


def test_gateway_bounds_what_strangers_register():
    # Registration is not authenticated: whatever names strangers register, the gateway keeps a
    # bounded list of them, and refuses overlong names.
    from sensormesh.device import forward
    loop = transport.Loop()
    gw = keyed("dev-b", [], loop)
    gw_addr = listen(gw)
    keep = forward.SEEN_MAX
    forward.SEEN_MAX = 3
    try:
        for i in range(6):
            c = Collector()
            conn = transport.dial(loop, gw_addr, c)
            conn.send({"register": {"name": "stranger-%d" % i}})
            assert loop.run_until(lambda: c.replies("registered") or c.closed, 5000), c.messages
            conn.close()
            assert loop.run_until(lambda: "stranger-%d" % i not in gw.forwarder.registered, 5000)
        assert gw.forwarder.seen == ["stranger-3", "stranger-4", "stranger-5"]
        c = Collector()
        conn = transport.dial(loop, gw_addr, c)
        conn.send({"register": {"name": "x" * (forward.NAME_MAX + 1)}})
        assert loop.run_until(lambda: c.closed is not None, 5000)
        err = c.replies("error")[0]
        assert err["code"] == "bad-request" and "characters" in err["message"], err
        assert len(gw.forwarder.seen) == 3
    finally:
        forward.SEEN_MAX = keep
        gw.close()


def test_a_board_forgets_the_handshake_code_between_handshakes():
    """On MicroPython from .mpy files the handshake's code (handshake.py, hello.py) is loaded for
    a handshake and unloaded when none is in progress (secure/keys.py idle), and loaded again by
    the next; CPython, and MicroPython from .py sources, keep it."""
    loop = transport.Loop()
    b = keyed("dev-b", ["counter@0"], loop)
    addr = listen(b)
    assert handshake_loaded() == (not forgets())     # after loading the keys
    for n in (1, 2):          # the second handshake imports it again
        c = SecureClient(loop, addr, "controller", "dev-b")
        assert loop.run_until(c.ready, 5000)
        assert c.error is None, c.error
        c.conn.send({"info": {}})
        assert loop.run_until(lambda: c.replies("info"), 5000)
        assert status.security(b.security)["accepted"] == n
        assert handshake_loaded() == (not forgets())
        c.conn.close()
    b.close()


def _pipe_to(baddr, count=50):
    return {"pipeline": "p", "epoch": 1, "steps": [
        {"id": "s", "type": "source", "params": {"sensor": "counter", "count": count}},
        {"id": "o", "type": "pipe_out", "params": {"edge": "e1", "to": baddr, "peer": "dev-b", "time-frame": 5},
         "inputs": ["s"]}]}


def _receiver(loop):
    b = keyed("dev-b", [], loop)
    baddr = listen(b)
    cb = SecureClient(loop, baddr, "controller", "dev-b")
    assert loop.run_until(cb.ready, 5000) and cb.error is None, cb.error
    cb.conn.send({"deploy": {"assignment": {"pipeline": "p", "epoch": 1, "steps": [
        {"id": "in", "type": "pipe_in", "params": {"edge": "e1"}},
        {"id": "k", "type": "callback", "params": {"name": "out"}, "inputs": ["in"]}]}}})
    assert loop.run_until(lambda: cb.replies("deployed"), 5000), cb.messages
    cb.conn.send({"start": {}})
    assert loop.run_until(lambda: cb.replies("started"), 5000)
    return b, baddr, cb


def test_a_deployment_prepares_its_pipes_dial_which_then_needs_only_the_client_side():
    """The deploy message makes the device look the pipe's peer up in its trust store and compute
    the pair key at once (while its heap is low); the pipe's dial then needs only the client side
    of the handshake (dial_hello.py, dial_wait.py, welcome.py): no look-up again, neither keys.py nor hello.py
    loaded, and the session works."""
    import sys
    loop = transport.Loop()
    b, baddr, cb = _receiver(loop)
    a = keyed("dev-a", ["counter@0"], loop)
    ca = SecureClient(loop, listen(a), "controller", "dev-a")
    assert loop.run_until(ca.ready, 5000) and ca.error is None, ca.error
    agreed = status.security(a.security)["key_agreements"]        # the controller's pair key
    ca.conn.send({"deploy": {"assignment": _pipe_to(baddr)}})
    assert loop.run_until(lambda: ca.replies("deployed"), 5000), ca.messages
    role, pair, fp = a.security.prepared["dev-b"]
    assert role == "device" and len(pair) == 32 and len(fp) == 32, (role, fp)
    assert status.security(a.security)["key_agreements"] == agreed + 1
    keys_name = "sensormesh.device.secure.keys"
    looked_up = []
    kept = sys.modules.get(keys_name)      # CPython, and MicroPython from .py sources, keep keys.py
    if kept is not None:
        real_prepare = kept.prepare_peer
        kept.prepare_peer = lambda sec, peer: looked_up.append(peer) or real_prepare(sec, peer)
    at_dial = []
    real_dial = a.security.dial

    def dial(*args):
        conn = real_dial(*args)
        at_dial.append((keys_name in sys.modules, "sensormesh.device.secure.hello" in sys.modules,
                        "sensormesh.device.secure.dialer" in sys.modules,
                        "sensormesh.device.secure.dial_hello" in sys.modules,
                        "sensormesh.device.secure.wire" in sys.modules,
                        "sensormesh.device.secure.basics" in sys.modules,
                        "sensormesh.device.secure.dial_wait" in sys.modules))
        return conn
    a.security.dial = dial
    try:
        ca.conn.send({"start": {}})
        assert loop.run_until(lambda: len(delivered(cb)) >= 50, 10000), (len(delivered(cb)), a.runtime.status())
    finally:
        if kept is not None:
            kept.prepare_peer = real_prepare
    assert delivered(cb) == list(range(50))
    assert len(at_dial) == 1 and looked_up == [], (at_dial, looked_up)
    # the pipe's connection splits what it sends so that every token fits the peer's frame limit,
    # and keeps at most 12 attributes of its own (a dict of 12 slots, not 17)
    conn = list(a.runtime.pipe_outs.values())[0].conn
    assert conn.channel is not None and conn.peer_max_frame == session.wrap_limit(codec.MIN_MAX_FRAME)
    assert len(conn.__dict__) <= 12, sorted(conn.__dict__)
    if forgets():        # a board running .mpy files: keys.py was forgotten after the deployment,
        # and while the dial waits for its welcome only dial_wait.py is in memory (the dial is
        # plain data): neither the code that made the hello nor the welcome's checks
        assert at_dial[0] == (False, False, False, False, False, False, True), at_dial
    assert status.security(a.security)["key_agreements"] == agreed + 1          # nothing computed again
    assert status.security(b.security)["accepted"] == 2 and status.security(b.security)["refused"] == {}
    assert handshake_loaded() == (not forgets())
    a.close()
    b.close()


def _deployed_sender(loop, baddr, trust_src=None):
    """dev-a, deployed by the controller with a pipe to dev-b at baddr (not started yet): the
    device, the controller's client, the device's log lines."""
    a = keyed("dev-a", ["counter@0"], loop)
    if trust_src is not None:
        a.security.trust_src = trust_src
    logs = []
    a.log = logs.append
    ca = SecureClient(loop, listen(a), "controller", "dev-a")
    assert loop.run_until(ca.ready, 5000) and ca.error is None, ca.error
    ca.conn.send({"deploy": {"assignment": _pipe_to(baddr)}})
    assert loop.run_until(lambda: ca.replies("deployed"), 5000), ca.messages
    return a, ca, logs


def _record_dials(a):
    """The connections device a's pipes dial from now on, in order (a list that grows)."""
    real_dial = a.security.dial
    dials = []

    def dial(*args):
        conn = real_dial(*args)
        dials.append(conn)
        return conn
    a.security.dial = dial
    return dials


def _start_until_delivered(loop, ca, cb, logs, n=50):
    """Start the sender's pipeline (its controller's client ca) and wait for n values at cb."""
    ca.conn.send({"start": {}})
    assert loop.run_until(lambda: len(delivered(cb)) >= n, 15000), (len(delivered(cb)), logs)


def _short_once(real_load, module):
    """A secure.load whose first load of `module` finds no heap free (a MemoryError), and the
    list that records it."""
    failed = []

    def load(name):
        if name == module and not failed:
            failed.append(name)
            raise MemoryError("memory allocation failed")
        return real_load(name)
    return load, failed


def test_no_memory_for_the_welcomes_check_closes_only_that_dial_which_is_made_again():
    """A board with no heap free to check the pipe's welcome (loading welcome.py fails) closes that
    connection only, saying so; the pipe dials again and every value arrives in order, and the
    controller's session goes on."""
    loop = transport.Loop()
    b, baddr, cb = _receiver(loop)
    a, ca, logs = _deployed_sender(loop, baddr)
    dials = _record_dials(a)
    from sensormesh.device import secure
    real_load = secure.load

    def load(name):
        if name == "welcome" and len(dials) == 1:      # the first dial's welcome finds no heap free
            raise MemoryError("memory allocation failed")
        return real_load(name)
    # the dial's protocol (dial_wait.py) loads welcome.py for the welcome: with secure.load, which it
    # takes from the package when it is imported (on a board, at each dial), or kept from before
    import sys
    waits = sys.modules.get("sensormesh.device.secure.dial_wait")
    secure.load = load
    if waits is not None:
        waits.load = load
    try:
        _start_until_delivered(loop, ca, cb, logs)
    finally:
        secure.load = real_load
        if waits is not None:
            waits.load = real_load
    assert delivered(cb) == list(range(50))
    assert len(dials) >= 2 and dials[0].closed, dials
    assert [t for t in logs if "no memory free for the handshake with dev-b" in t], logs
    ca.conn.send({"ping": 7})
    assert loop.run_until(lambda: ca.replies("pong"), 5000) and ca.replies("pong") == [7]
    a.close()
    b.close()


def test_no_memory_to_wait_for_the_welcome_closes_that_dial_which_is_made_again():
    """A board with no heap free for the dial's wait (loading dial_wait.py once the hello is
    made fails) closes that connection before its hello leaves; the pipe, told by the
    MemoryError, dials again, and every value arrives in order. No dial is left waiting."""
    from sensormesh.device import secure
    loop = transport.Loop()
    b, baddr, cb = _receiver(loop)
    a, ca, logs = _deployed_sender(loop, baddr)
    real_dial = a.security.dial
    real_load = secure.load
    dials = []
    load, failed = _short_once(real_load, "dial_wait")     # the first dial finds no heap free for it

    def dial(*args):
        try:
            conn = real_dial(*args)
        except MemoryError:
            dials.append(None)
            raise
        dials.append(conn)
        return conn
    a.security.dial = dial
    secure.load = load
    try:
        _start_until_delivered(loop, ca, cb, logs)
    finally:
        secure.load = real_load
    assert failed and dials[0] is None and len(dials) >= 2, dials
    assert delivered(cb) == list(range(50))
    assert secure.dials == []
    # the failed dial's hello never left (its connection closed first): dev-b accepted the
    # controller's session and the one pipe connection only
    assert loop.run_until(lambda: status.security(b.security)["handshakes"] == 0, 5000)
    assert status.security(b.security)["accepted"] == 2, status.security(b.security)
    a.close()
    b.close()


def test_no_memory_for_the_hellos_code_closes_the_connection_the_dial_opened():
    """A board with no heap free for the hello's code (loading dial_hello.py fails) right after
    the pipe's connection was opened: that connection closes at once. Before, it stayed open
    with no protocol, and what its peer then sent (a refusal for want of a hello) raised an
    AttributeError on every read. The pipe dials again and every value arrives in order."""
    from sensormesh.device import secure
    loop = transport.Loop()
    b, baddr, cb = _receiver(loop)
    a, ca, logs = _deployed_sender(loop, baddr)
    errors = []
    loop.on_error = lambda e, fn: errors.append(e)
    real_load = secure.load
    opened = []
    load, failed = _short_once(real_load, "dial_hello")    # the first dial finds no heap free for it
    had = "dial" in transport.__dict__
    real_transport_dial = transport.dial

    def dial(*args, **kw):
        conn = real_transport_dial(*args, **kw)
        opened.append(conn)
        return conn
    transport.dial = dial
    secure.load = load
    try:
        _start_until_delivered(loop, ca, cb, logs)
    finally:
        secure.load = real_load
        if had:
            transport.dial = real_transport_dial
        else:
            del transport.dial
    assert failed and len(opened) >= 2, opened
    assert opened[0].closed, "the connection of the dial that found no heap is still open"
    assert delivered(cb) == list(range(50))
    assert all(isinstance(e, MemoryError) for e in errors), errors
    a.close()
    b.close()


def test_no_memory_to_take_a_dials_session_closes_it_and_the_pipe_dials_again():
    """The pipe's session is up (its welcome checked), but the code that hands the connection
    to the pipe (connect.py: what waited is sent, then the pipe's on_connect) finds no heap
    free: that connection closes at once. Before, it stayed up but was never taken, and the
    pipe's values waited until something else closed it. The pipe dials again and every value
    arrives in order."""
    loop = transport.Loop()
    b, baddr, cb = _receiver(loop)
    a, ca, logs = _deployed_sender(loop, baddr)
    errors = []
    loop.on_error = lambda e, fn: errors.append(e)
    real_release, real_connect = transport.Connection.release, transport._connect
    releasing, failed = [], []

    def release(conn):
        releasing.append(conn)
        try:
            return real_release(conn)
        finally:
            releasing.pop()

    def connect():
        if releasing and not failed:      # the first release of a dial's session
            failed.append(releasing[-1])
            raise MemoryError("memory allocation failed")
        return real_connect()
    opened = _record_dials(a)
    transport.Connection.release, transport._connect = release, connect
    try:
        _start_until_delivered(loop, ca, cb, logs)
    finally:
        transport.Connection.release, transport._connect = real_release, real_connect
    assert failed and failed[0] is opened[0] and len(opened) >= 2, (failed, opened)
    assert opened[0].closed, "the session that found no heap to be taken is still open"
    assert delivered(cb) == list(range(50))
    assert errors and all(isinstance(e, MemoryError) for e in errors), errors
    a.close()
    b.close()


def test_a_peer_revoked_after_the_deployment_is_refused_by_the_pipes_dial():
    """What a deployment prepared for a pipe's dial is used only while the trust store is the
    one it came from: a trust file changed in between (the peer revoked) is read again at the
    dial, which refuses the peer; the peer never sees a hello."""
    import json
    import os
    from test_session import trust_json
    path = "/tmp/sensormesh-test-trust-prepared.json"
    with open(path, "w") as f:
        json.dump(trust_json(), f)
    loop = transport.Loop()
    b, baddr, cb = _receiver(loop)
    a, ca, logs = _deployed_sender(loop, baddr, path)
    assert "dev-b" in a.security.prepared
    with open(path, "w") as f:
        json.dump(trust_json(revoked=("dev-old", "dev-b")), f)
    try:
        ca.conn.send({"start": {}})
        assert loop.run_until(lambda: getattr(a.runtime.pipe_outs["e1"], "last_error", None), 5000), logs
        err = getattr(a.runtime.pipe_outs["e1"], "last_error", None)
        assert "revoked" in err, err
        assert any("trust store reloaded" in line for line in logs), logs
        assert "dev-b" not in a.security.prepared
        st = status.security(b.security)
        assert st["accepted"] == 1 and st["refused"] == {}, st      # only the controller's session
    finally:
        a.close()
        b.close()
        os.remove(path)


def test_a_pipe_to_a_peer_not_trusted_as_a_device_is_refused_at_its_dial():
    """The deployment prepares nothing for a peer its trust store lacks, or holds with another
    role; the pipe's dial then looks it up and refuses it with the handshake's error, and the
    other end never sees a hello."""
    loop = transport.Loop()
    b, baddr, cb = _receiver(loop)
    for peer, why in (("stranger", "not in this side's trust store"), ("reader-1", "has role 'reader'"),
                      ("controller", "has role 'controller'")):   # prepared, but as a client
        a = keyed("dev-a", ["counter@0"], loop)
        ca = SecureClient(loop, listen(a), "controller", "dev-a")
        assert loop.run_until(ca.ready, 5000) and ca.error is None, ca.error
        asg = _pipe_to(baddr)
        asg["steps"][1]["params"]["peer"] = peer
        ca.conn.send({"deploy": {"assignment": asg}})
        assert loop.run_until(lambda: ca.replies("deployed"), 5000), ca.messages
        # nothing for the peer; the controller that deployed is kept for its next session
        assert list(a.security.prepared) == ["controller"], a.security.prepared
        ca.conn.send({"start": {}})
        assert loop.run_until(lambda: getattr(a.runtime.pipe_outs["e1"], "last_error", None), 5000)
        err = getattr(a.runtime.pipe_outs["e1"], "last_error", None)
        assert why in err, err
        a.close()
        ca.conn.close()
    st = status.security(b.security)
    assert st["accepted"] == 1 and st["refused"] == {}, st
    b.close()


class _StatusSession:
    """A control session whose connection keeps what is sent to it."""

    class conn:
        closed = None
        sent = []

        @classmethod
        def send(cls, msg):
            cls.sent.append(msg)

    def __init__(self):
        self.conn.sent = []


def test_a_status_reply_waits_for_a_handshake_in_progress_then_answers_anyway():
    from sensormesh.device.secure import admitting
    loop = transport.Loop()
    a = keyed("dev-a", ["counter@100"], loop, handshake_ms=60000)
    addr = listen(a)
    # no handshake in progress: answered at once
    s = _StatusSession()
    a.dispatch(s, "status", {})     # as a controller's status request is handled
    assert len(s.conn.sent) == 1 and s.conn.sent[0]["status"]["security"]["handshakes"] == 0, s.conn.sent
    # a connection waiting for its hello: the reply waits until that connection is gone
    half = Collector()
    c = transport.dial(loop, addr, half)
    assert loop.run_until(lambda: a.security.pending == 1, 5000)
    s = _StatusSession()
    a.dispatch(s, "status", {})     # as a controller's status request is handled
    assert s.conn.sent == [] and admitting[0] == 1
    c.close("gone")
    assert loop.run_until(lambda: s.conn.sent, 5000)
    assert admitting[0] == 0 and s.conn.sent[0]["status"]["security"]["handshakes"] == 0, s.conn.sent
    # one that stays: answered anyway after a few waits, with the handshake in progress counted
    half = Collector()
    transport.dial(loop, addr, half)
    assert loop.run_until(lambda: a.security.pending == 1, 5000)
    s = _StatusSession()
    a.dispatch(s, "status", {})     # as a controller's status request is handled
    assert s.conn.sent == []
    assert loop.run_until(lambda: s.conn.sent, 5000)
    assert admitting[0] == 1 and s.conn.sent[0]["status"]["security"]["handshakes"] == 1, s.conn.sent
    a.close()


def test_a_status_reply_waits_for_a_dial_waiting_for_its_welcome():
    """A pipe's dial waiting for its welcome (a peer that accepts and never answers) holds the
    status reply back until the dial is over; its connection closing ends it, and the pipe (the
    dial's protocol) hears of it."""
    from sensormesh.device.secure import dials
    from loopkit import raw_listener
    loop = transport.Loop()
    a = keyed("dev-a", ["counter@100"], loop, handshake_ms=60000)
    srv, port = raw_listener()
    pipe = Collector()
    conn = a.security.dial("127.0.0.1:%d" % port, pipe, "dev-b", None)
    assert len(dials) == 1 and dials[0][0] is conn and not conn.closed
    s = _StatusSession()
    a.dispatch(s, "status", {})     # as a controller's status request is handled
    assert s.conn.sent == []
    conn.close("gone")
    assert dials == [] and pipe.closed, (dials, pipe.closed)
    assert loop.run_until(lambda: s.conn.sent, 5000)
    assert "status" in s.conn.sent[0], s.conn.sent
    srv.close()
    a.close()


def _raw_dial(loop, host, port, src):
    """A plain socket from address src to host:port that says nothing (connected without waiting)."""
    import socket
    s = socket.socket()
    s.bind(socket.getaddrinfo(src, 0)[0][-1])
    s.setblocking(False)
    try:
        s.connect(socket.getaddrinfo(host, port)[0][-1])
    except OSError:
        pass        # in progress: the device's loop accepts it
    return s


def test_a_flood_from_many_addresses_stays_within_the_slots_and_a_reader_s_frames_are_small():
    loop = transport.Loop()
    a = keyed("dev-a", ["counter@100"], loop, max_handshakes=4, handshake_ms=3000)
    addr = listen(a)
    host, port = addr.split(":")
    flood = [_raw_dial(loop, host, int(port), "127.0.0.%d" % (10 + i)) for i in range(6)]
    assert loop.run_until(lambda: a.security.pending == 4 and a.security.refused.get("busy", 0) == 2, 5000), \
        (a.security.pending, a.security.refused)
    assert len(a.security.pending_by) == 4          # one slot each: four addresses
    # an authenticated reader may not send a frame larger than a request needs
    for s in flood:
        s.close()
    assert loop.run_until(lambda: a.security.pending == 0, 5000)
    rdr = SecureClient(loop, addr, "reader-1", "dev-a")
    assert loop.run_until(rdr.ready, 5000) and rdr.error is None, rdr.error
    rdr.conn.sock.send(b"\x00\x01\x86\xa0" + b"x" * 64)      # announces 100000 bytes
    assert loop.run_until(lambda: rdr.closed, 5000)
    err = rdr.errors()[0]
    assert err["code"] == "protocol" and "exceeds the limit of 16384" in err["message"], err
    # a controller's session keeps the device's frame limit, and the device serves on
    ctl = SecureClient(loop, addr, "controller", "dev-a")
    assert loop.run_until(ctl.ready, 5000) and ctl.error is None, ctl.error
    ctl.conn.send({"ping": 1})
    assert loop.run_until(lambda: ctl.messages, 5000) and ctl.messages[0] == {"pong": 1}, ctl.messages
    roles = [(c.protocol.role, c.decoder.max_frame) for c in a.listeners[0].conns if not c.closed]
    assert roles == [("controller", a.max_frame)], roles
    a.close()
