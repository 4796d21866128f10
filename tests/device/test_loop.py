# The device runtime in one process: a Device and a dialing client share one Loop. Runs on
# CPython and on the MicroPython unix port, so the device's own event loop is proven on both.
from sensormesh.device import transport
from sensormesh.device.core import Device

from loopkit import Collector, listen, raw_listener

def setup(sensors):
    dev = Device("t", sensors)
    return dev, listen(dev)


def request(dev, addr, body):
    c = Collector()
    conn = transport.dial(dev.loop, addr, c)
    conn.send({"data-request": body})
    return c, conn


def test_batched_counter_stream_in_order():
    dev, addr = setup(["counter@0"])
    c, conn = request(dev, addr, {"sensor": "counter", "time-frame": 20})
    assert dev.loop.run_until(lambda: sum(len(m) for m in c.messages) >= 2000, 5000)
    values = []
    for m in c.messages:
        values += m
    assert values[:2000] == list(range(2000))
    conn.close()
    dev.close()


def test_values_per_frame_are_counted():
    dev, addr = setup(["counter@0"])
    c, conn = request(dev, addr, {"sensor": "counter", "time-frame": 50, "values-per-time-frame": 5})
    assert dev.loop.run_until(lambda: len(c.messages) >= 4, 5000)
    for m in c.messages[:4]:
        assert len(m) == 5, m
    conn.close()
    dev.close()


def test_unknown_sensor_then_other_client_unharmed():
    dev, addr = setup(["counter@200", "dht11"])
    good, gconn = request(dev, addr, {"sensor": "counter"})
    bad, bconn = request(dev, addr, {"sensor": "nope"})
    assert dev.loop.run_until(lambda: bad.closed is not None and len(good.messages) >= 10, 5000)
    assert bad.messages[0]["error"]["code"] == "unknown-sensor"
    assert "counter, dht11" in bad.messages[0]["error"]["message"]
    n = len(good.messages)
    assert dev.loop.run_until(lambda: len(good.messages) >= n + 5, 5000)
    assert good.closed is None
    gconn.close()
    dev.close()


def test_a_request_with_an_infinite_time_frame_gets_a_bad_field_reply():
    # 1e400 is valid JSON and reads as infinity: refused with a reply naming the field, and
    # the device serves on (a client on another connection still gets its values)
    dev, addr = setup(["counter@200"])
    for field in ("time-frame", "values-per-time-frame", "max-frame"):
        c = Collector()
        conn = transport.dial(dev.loop, addr, c)
        conn.send_payload(b'{"data-request":{"sensor":"counter","%s":1e400}}' % field.encode())
        assert dev.loop.run_until(lambda: c.closed is not None, 5000)
        err = c.messages[0]["error"]
        assert err["code"] == "bad-field" and field in err["message"], err
    good, gconn = request(dev, addr, {"sensor": "counter"})
    assert dev.loop.run_until(lambda: len(good.messages) >= 3, 5000)
    gconn.close()
    dev.close()


def test_an_address_with_a_port_out_of_range_is_refused_by_name():
    from sensormesh.device.transport import parse_address
    assert parse_address("h:65535") == ("tcp", "h", 65535)
    assert parse_address(":0") == ("tcp", "127.0.0.1", 0)
    for text in ("h:65536", "h:99999", "h:-1", "nohostport", "h:x"):
        try:
            parse_address(text)
        except ValueError as e:
            assert ("bad address %r" % text) in str(e) and "0..65535" in str(e), e
        else:
            raise AssertionError("accepted %r" % text)


def test_a_device_configured_with_a_port_out_of_range_or_no_connections_does_not_start():
    from sensormesh.device import boot
    for cfg, words in (({"port": 65536, "host": "127.0.0.1"}, "port 65536: a TCP port is 0..65535"),
                       ({"port": -1, "max_conns": 0}, "max_conns 0: at least 1")):
        try:
            boot.start(cfg)
        except ValueError as e:
            assert words in str(e), e
        else:
            raise AssertionError("started with %r" % (cfg,))


def test_a_control_message_on_a_streaming_connection_is_refused_by_name():
    dev, addr = setup(["counter@100"])
    c, conn = request(dev, addr, {"sensor": "counter"})
    assert dev.loop.run_until(lambda: len(c.messages) >= 2, 5000)
    conn.send({"info": {}})
    assert dev.loop.run_until(lambda: c.closed is not None, 5000)
    err = c.replies("error")[-1]
    assert err["code"] == "bad-request" and "this connection is streaming" in err["message"], err
    assert "'info'" in err["message"], err
    dev.close()


def test_a_stream_cut_off_inside_a_frame_is_closed_even_without_memory_to_say_how_far():
    # The sentence saying how far the frame got is refused.py's, loaded for it: a board without
    # the memory for that still closes the connection (its reason: the MemoryError's).
    import socket
    from sensormesh.device import codec
    dev, addr = setup(["counter@100"])
    lst = dev.listeners[0]
    real = codec._refused

    def no_memory():
        raise MemoryError("memory allocation failed")
    codec._refused = no_memory
    s = socket.socket()
    try:
        host, port = addr.split(":")
        s.connect(socket.getaddrinfo(host, int(port))[0][-1])
        assert dev.loop.run_until(lambda: len(lst.conns) == 1, 5000)
        s.send(b"\x00\x00\x00\x09[1,")      # 3 of a frame's 9 bytes, then the end of the stream
        s.close()
        assert dev.loop.run_until(lambda: not lst.conns, 5000)
        assert dev.errors == 0
    finally:
        codec._refused = real
        dev.close()


def test_a_sealed_frame_without_memory_for_all_its_pieces_leaves_nothing_of_it_queued():
    """A secure frame is sealed and queued in pieces: when a later piece finds no heap, the
    pieces already queued are taken back out, so the peer never gets part of a frame and the
    connection's next frame arrives whole (the device answers it)."""
    class Short:
        def wrap(self, payload, put=None):
            if put is not None:       # MicroPython: the frame's length and a first piece, queued
                put(b"\x00\x00\x02\x00" + b"A" * 200)
            raise MemoryError("memory allocation failed, allocating 260 bytes")
    dev, addr = setup(["counter@0"])
    c = Collector()
    conn = transport.dial(dev.loop, addr, c)
    assert dev.loop.run_until(lambda: c.connected, 5000)
    before = conn.backlog()
    conn.channel = Short()
    try:
        conn.send({"ping": 1})
        raise AssertionError("no MemoryError")
    except MemoryError:
        pass
    conn.channel = None
    assert conn.backlog() == before
    conn.send({"ping": 2})
    assert dev.loop.run_until(lambda: c.replies("pong") or c.closed, 5000)
    assert c.replies("pong") == [2] and c.closed is None, (c.messages, c.closed)
    conn.close()
    dev.close()


def test_malformed_frame_gets_protocol_error():
    dev, addr = setup(["counter@100"])
    c = Collector()
    conn = transport.dial(dev.loop, addr, c)
    conn.send_payload(b"{\"x\":")
    assert dev.loop.run_until(lambda: c.closed is not None, 5000)
    err = c.messages[-1]["error"]
    assert err["code"] == "protocol" and "not valid JSON" in err["message"], err
    dev.close()


def test_a_frame_without_memory_to_decode_it_closes_its_connection_only():
    # A board short of heap cannot take a frame out: that connection hears why and is closed
    # (nothing left waiting for a frame that was lost); another one keeps its stream.
    from sensormesh.device import codec
    real = codec.decode_payload

    def short(payload):
        if b"no-room" in bytes(payload):
            raise MemoryError("memory allocation failed")
        return real(payload)
    dev, addr = setup(["counter@200"])
    good, gconn = request(dev, addr, {"sensor": "counter"})
    codec.decode_payload = short
    try:
        bad = Collector()
        bconn = transport.dial(dev.loop, addr, bad)
        bconn.send({"data-request": {"sensor": "no-room"}})
        assert dev.loop.run_until(lambda: bad.closed is not None and len(good.messages) >= 5, 5000)
    finally:
        codec.decode_payload = real
    err = bad.messages[-1]["error"]
    assert err["code"] == "busy" and "no memory free for this frame" in err["message"], err
    n = len(good.messages)
    assert dev.loop.run_until(lambda: len(good.messages) >= n + 5, 5000)
    assert good.closed is None
    assert dev.errors == 0          # nothing raised inside the device
    gconn.close()
    dev.close()


def test_closing_after_a_partial_send_sends_the_rest_once():
    # A connection closed after an error sends what is still queued. When a send had taken only
    # part of the first queued chunk, the rest follows once: the peer reads every frame whole,
    # never a frame's tail where a length prefix belongs.
    from sensormesh.device import closing, codec
    from sensormesh.device.compat import MICROPYTHON
    srv, port = raw_listener()
    loop = transport.Loop()
    c = Collector()
    conn = transport.dial(loop, "127.0.0.1:%d" % port, c)
    peer, _ = srv.accept()
    assert loop.run_until(lambda: c.connected, 5000)
    # (list(range(300)): a frame larger than the chunks small frames share, queued as it is)
    sent = [{"error": {"code": "protocol", "message": "x" * 40}}, [1, 2, 3], list(range(300)), {"bye": {}}]
    for m in sent:
        conn.send(m)
    if MICROPYTHON:
        first = conn.chunks[0]
        n = conn.sock.send(memoryview(first)[:7])
        conn.chunks[0] = memoryview(first)[n:]     # as Connection.flush leaves a chunk sent in part
    else:
        n = conn.sock.send(bytes(conn.out[:7]))
        del conn.out[:n]
    assert n == 7
    closing.close_after_flush(conn, "test")
    dec = codec.Decoder()
    got = []
    for _ in range(100):
        data = peer.recv(4096)
        if not data:
            break
        dec.feed(data)
        while True:
            m = dec.next()
            if m is None:
                break
            got.append(m)
    peer.close()
    srv.close()
    assert got == sent, got


def test_info_lists_sensors_and_implementation():
    dev, addr = setup(["dht11", "co2@2"])
    c = Collector()
    conn = transport.dial(dev.loop, addr, c)
    conn.send({"info": {}})
    assert dev.loop.run_until(lambda: c.messages, 5000)
    info = c.messages[0]["info"]
    assert sorted(info["sensors"]) == ["co2", "dht11"]
    assert info["sensors"]["co2"]["rate"] == 2
    import sys
    assert info["implementation"] == sys.implementation.name
    conn.close()
    dev.close()


def test_unknown_control_message_is_named():
    dev, addr = setup(["dht11"])
    c = Collector()
    conn = transport.dial(dev.loop, addr, c)
    conn.send({"frobnicate": 1})
    assert dev.loop.run_until(lambda: c.closed is not None, 5000)
    err = c.messages[0]["error"]
    assert err["code"] == "unknown-message" and "'frobnicate'" in err["message"], err
    dev.close()


def test_dial_to_a_missing_unix_socket_closes_with_the_reason():
    from loopkit import Collector
    loop = transport.Loop()
    box = Collector()
    conn = transport.dial(loop, "unix:/tmp/sensormesh-test-nobody-listens.sock", box)
    assert loop.run_until(lambda: box.closed is not None, 2000)
    assert "unix:/tmp/sensormesh-test-nobody-listens.sock" in box.closed, box.closed
    assert conn.closed


def test_run_once_with_nothing_to_do_waits_for_its_bound():
    # A loop turned by run_once(max_wait) (the controller's watch does so) with no timer and no
    # socket ready must wait in poll for max_wait, not return at once: it spun a CPU core.
    from sensormesh.device.compat import ticks_diff, ticks_ms
    loop = transport.Loop()
    t0 = ticks_ms()
    turns = 0
    while ticks_diff(ticks_ms(), t0) < 100 and turns < 1000:
        loop.run_once(20)
        turns += 1
    assert turns <= 10, turns


def test_a_cancelled_timer_leaves_the_loop_at_once():
    # A handshake deadline (seconds away) is cancelled as soon as its connection authenticates
    # or is refused. Behind a stream's tick, which is always due first, a cancelled deadline
    # that stayed until its time would pile up: a burst of connections held a board's heap.
    loop = transport.Loop()
    fired = []

    def tick():
        fired.append(1)
        loop.call_later(1, tick)
    loop.call_later(0, tick)
    for i in range(500):
        t = loop.call_later(10000, lambda: fired.append("deadline"))
        if i % 50 == 0:
            loop.run_once(0)
        t.cancel()
    assert len(loop._timers) == 1, len(loop._timers)     # the tick alone
    kept = loop.call_later(5, lambda: fired.append("kept"))
    gone = loop.call_later(3, lambda: fired.append("gone"))
    gone.cancel()
    gone.cancel()                                         # twice is harmless
    assert loop.run_until(lambda: "kept" in fired, 2000)
    assert "gone" not in fired and "deadline" not in fired and kept.timers is None


def test_a_timer_further_than_2_31_ms_away_waits_and_fires():
    # A heartbeat or timeout of 30 days: poll() takes its wait as a C int, so CPython raised
    # OverflowError and MicroPython waited for ever; the loop waits a day at a time instead.
    loop = transport.Loop()

    class Poll:
        waits = []

        def poll(self, ms):
            self.waits.append(ms)
            return []
    loop._poll = Poll()
    loop.running = True
    fired = []
    month = 30 * 24 * 3600 * 1000
    loop.call_later(month, lambda: fired.append("month"))
    loop.run_once()
    assert 0 < Poll.waits[0] <= 86400000 and not fired, Poll.waits
    loop._now += month          # a month passes
    loop.run_once()
    assert fired == ["month"] and Poll.waits[1] == 0, Poll.waits


def test_poll_event_bits_are_the_numbers_transport_uses():
    # transport.py and connect.py use these numbers as constants (no names kept on a board)
    import select
    assert (select.POLLIN, select.POLLOUT, select.POLLERR, select.POLLHUP) == (1, 4, 8, 16)


def test_a_listener_counts_its_connections_and_refuses_beyond_its_limit():
    # Accepting is accepting.py's (loaded for each accept): the listener counts each connection
    # while it is open, tells one beyond max_conns "busy", and frees the place when one closes.
    dev = Device("t", ["counter@10"], max_conns=1)
    addr = listen(dev)
    lst = dev.listeners[0]
    first, c1 = request(dev, addr, {"sensor": "counter"})
    assert dev.loop.run_until(lambda: len(first.messages) >= 1, 5000)
    assert len(lst.conns) == 1 and lst.conns[0].peer is not None
    second, c2 = request(dev, addr, {"sensor": "counter"})
    assert dev.loop.run_until(lambda: second.closed is not None, 5000)
    assert second.messages[0]["error"]["code"] == "busy", second.messages
    assert "limit 1" in second.messages[0]["error"]["message"]
    assert len(lst.conns) == 1
    c1.close()
    assert dev.loop.run_until(lambda: not lst.conns, 5000)
    third, c3 = request(dev, addr, {"sensor": "counter"})
    assert dev.loop.run_until(lambda: len(third.messages) >= 1, 5000)
    assert len(lst.conns) == 1 and third.closed is None
    c3.close()
    dev.close()


def test_a_listener_without_memory_for_its_accept_closes_the_waiting_connection_and_serves_on():
    # A board short of heap cannot load accepting.py to accept: the waiting connection is closed
    # at once (its peer dials again later), not left pending to wake the loop on every turn, and
    # the next connection, with room again, is served.
    dev = Device("t", ["counter@10"])
    addr = listen(dev)
    real = transport._accepting
    tries = [0]

    def short():
        tries[0] += 1
        raise MemoryError("memory allocation failed, allocating 368 bytes")
    transport._accepting = short
    try:
        bad = Collector()
        transport.dial(dev.loop, addr, bad)
        assert dev.loop.run_until(lambda: bad.closed is not None, 5000)
        for _ in range(20):       # more turns: nothing is left waiting on the listener
            dev.loop.run_once(10)
    finally:
        transport._accepting = real
    assert tries[0] == 1, tries[0]
    assert dev.errors == 1          # the loop logged the MemoryError once
    good, conn = request(dev, addr, {"sensor": "counter"})
    assert dev.loop.run_until(lambda: len(good.messages) >= 2, 5000)
    assert good.closed is None
    conn.close()
    dev.close()


def test_a_dial_without_memory_to_finish_connecting_is_closed_not_polled_again():
    # A board short of heap cannot load connect.py when its dial's socket becomes writable: the
    # connection is closed at once with the reason (its dialer dials again later), not left
    # connecting, which would wake the loop on every turn with the same event and log the same
    # MemoryError each time.
    srv, port = raw_listener()     # the kernel completes the connection: nothing serves it
    loop = transport.Loop()
    errors = []
    loop.on_error = lambda e, where: errors.append(e)
    c = Collector()
    conn = transport.dial(loop, "127.0.0.1:%d" % port, c)
    real = transport._connect
    tries = [0]

    def short():
        tries[0] += 1
        raise MemoryError("memory allocation failed, allocating 256 bytes")
    transport._connect = short     # (run_until needs connect.py too: the loop is turned here)
    try:
        for _ in range(500):      # each turn waits at most 10 ms for the socket's event
            loop.run_once(10)
            if c.closed is not None:
                break
        for _ in range(20):       # more turns: nothing wakes the loop for that socket again
            loop.run_once(10)
    finally:
        transport._connect = real
        srv.close()
    assert c.closed == "no memory free to finish connecting", c.closed
    assert conn.closed and not c.connected
    assert tries[0] == 1, tries[0]
    assert len(errors) == 1 and type(errors[0]) is MemoryError, errors   # the loop logs it once


class _NoHeapChannel:
    """A secure session's channel with no heap free to seal a frame."""

    def wrap(self, payload, put=None):
        raise MemoryError("memory allocation failed, allocating 320 bytes")


def test_a_secure_dial_without_memory_for_its_first_messages_closes_rather_than_runs_without_them():
    # The messages a secure dial held until its session was up leave when it is released; one
    # that finds no heap to be sealed closes the connection (its dialer dials again and sends
    # them all) instead of leaving a connection up that never said them.
    dev = Device("t", ["counter@10"])
    addr = listen(dev)
    c = Collector()
    conn = transport.dial(dev.loop, addr, c)
    assert dev.loop.run_until(lambda: c.connected, 5000)
    conn.held = [{"pipe": {"edge": "e"}}, [1, 2, 3]]
    conn.channel = _NoHeapChannel()
    try:
        conn.release()
        raised = False
    except MemoryError:
        raised = True
    assert raised
    assert conn.closed and c.closed == "no memory free for its first messages", c.closed
    assert conn.backlog() == 0      # nothing of them half-queued
    dev.close()


def test_a_handler_failing_on_every_turn_is_counted_and_logged_at_every_doubling():
    dev = Device("t", [])
    lines = []
    dev.log = lines.append

    def broken():
        raise ValueError("always")
    for _ in range(70):
        dev.loop.call_soon(broken)
    dev.loop.run_once(0)
    assert dev.errors == 70
    # the first 16 one by one, then the 32nd and the 64th, saying so
    assert len(lines) == 18, lines
    assert lines[0].startswith("error in broken: ValueError: always"), lines[0]
    assert "(16 so far; more logged at every doubling)" in lines[15] and "(32 so far" in lines[16] and "(64 so far" in lines[17]
    dev.close()


def test_status_is_answered_without_loading_control_py():
    # status is polled while a controller watches and its reply is a running device's largest:
    # status.py answers it alone, without control.py's code (the rare control messages)
    import sys
    import sensormesh.device as pkg
    dev, addr = setup(["counter@10"])
    c = Collector()
    conn = transport.dial(dev.loop, addr, c)
    sys.modules.pop("sensormesh.device.control", None)
    if "control" in pkg.__dict__:
        delattr(pkg, "control")
    conn.send({"status": {}})
    assert dev.loop.run_until(lambda: c.replies("status"), 5000)
    st = c.replies("status")[0]
    assert st["name"] == "t" and st["connections"] == 1 and st["errors"] == 0 and st["streams"] == []
    assert "sensormesh.device.control" not in sys.modules
    conn.send({"launch": {}})      # a rare one loads control.py, which names the known messages
    assert dev.loop.run_until(lambda: c.closed is not None, 5000)
    assert c.messages[-1]["error"]["code"] == "unknown-message" and "status" in c.messages[-1]["error"]["message"]
    dev.close()


class Flaky:
    """A sensor that counts 0, 1, 2... and raises (unplugged) while its `down` flag is set."""
    RATE_HZ = 0

    def __init__(self):
        self.n = 0
        self.down_at = None     # it is unplugged once it has given this many values

    def get(self):
        if self.down_at is not None and self.n >= self.down_at:
            raise OSError(19, "ENODEV")
        n = self.n
        self.n = n + 1
        return n


def values_of(c):
    out = []
    for m in c.messages:
        if type(m) is list:
            out += m
    return out


def status_of(dev, addr):
    c = Collector()
    conn = transport.dial(dev.loop, addr, c)
    conn.send({"status": {}})
    assert dev.loop.run_until(lambda: c.replies("status"), 5000)
    conn.close()
    return c.replies("status")[0]


def test_a_sensor_that_fails_mid_stream_is_counted_named_and_read_again():
    # Before: the read's exception ended the stream's timer: the client got nothing more and no
    # word, the connection stayed open, and the log named no sensor.
    for rate, tf in ((0, 0), (0, 20), (200, 0), (200, 20)):
        dev, addr = setup(["counter@200"])
        flaky = Flaky()
        dev.sensors["flaky"] = (flaky, rate)
        lines = []
        dev.log = lines.append
        c, conn = request(dev, addr, {"sensor": "flaky", "time-frame": tf})
        other, oconn = request(dev, addr, {"sensor": "counter"})
        assert dev.loop.run_until(lambda: len(values_of(c)) >= 5, 5000), (rate, tf)
        n = flaky.down_at = flaky.n + 10     # unplugged in the middle of a run of reads
        assert dev.loop.run_until(lambda: [s for s in dev.streams if s.failed >= 2], 5000), (rate, tf)
        st = [s for s in status_of(dev, addr)["streams"] if s["sensor"] == "flaky"][0]
        assert st["failed"] >= 2, st
        assert "OSError" in st["last_error"], st
        assert [ln for ln in lines if "sensor flaky: read failed: OSError" in ln], lines
        # what was read before it failed still leaves, in its time frame
        assert dev.loop.run_until(lambda: len(values_of(c)) >= n, 5000), (rate, tf, len(values_of(c)), n)
        # the other stream and the device go on; the failing stream reads again once plugged in
        k = len(values_of(other))
        assert dev.loop.run_until(lambda: len(values_of(other)) >= k + 3, 5000)
        flaky.down_at = None
        assert dev.loop.run_until(lambda: len(values_of(c)) >= n + 3, 5000), (rate, tf)
        got = values_of(c)
        assert got == list(range(len(got))), (rate, tf, got)    # nothing read was lost
        assert c.closed is None and dev.errors == 0, (c.closed, dev.errors)
        conn.close()
        oconn.close()
        dev.close()


class WithNaN:
    RATE_HZ = 0

    def __init__(self):
        self.n = 0

    def get(self):
        n = self.n
        self.n = n + 1
        return float("nan") if n % 3 == 1 else n


def test_a_value_json_cannot_carry_is_sent_as_null_and_the_stream_goes_on():
    # Before: a NaN from a sensor (a CSV cell "nan") raised in the send: the stream stopped
    # silently, and a batched frame holding it was lost whole.
    for rate, tf in ((0, 0), (0, 20), (200, 0), (200, 20)):
        dev, addr = setup([])
        dev.sensors["w"] = (WithNaN(), rate)
        lines = []
        dev.log = lines.append
        c, conn = request(dev, addr, {"sensor": "w", "time-frame": tf})
        assert dev.loop.run_until(lambda: len(values_of(c)) >= 9, 5000), (rate, tf)
        got = values_of(c)
        assert got == [None if i % 3 == 1 else i for i in range(len(got))], (rate, tf, got[:12])
        st = [s for s in status_of(dev, addr)["streams"] if s["sensor"] == "w"][0]
        assert st["nulled"] >= 3 and st["failed"] == 0, st
        assert [ln for ln in lines if "sensor w: a value cannot travel" in ln], lines
        assert dev.errors == 0
        conn.close()
        dev.close()


def test_a_sensor_rate_that_is_not_a_number_of_0_or_more_is_refused_by_name():
    # Before: "dht11@-5" gave one value and then nothing, "counter@nan" raised in every stream
    # that read it, and a configuration file's "rate": "10" failed in the first request.
    from sensormesh.device.sensors import SensorError
    for specs, shown in ((["dht11@-5"], "-5.0"), (["counter@nan"], "nan"), (["c=counter@inf"], "inf"),
                         ([{"kind": "counter", "rate": "10"}], "'10'"),
                         ([{"kind": "counter", "name": "n", "rate": True}], "True"),
                         ([{"kind": "counter", "rate": -1}], "-1")):
        try:
            Device("t", specs)
        except SensorError as e:
            name = specs[0]["name"] if type(specs[0]) is dict and "name" in specs[0] else None
            words = "rate must be a number of samples per second, 0 or more"
            assert words in str(e) and str(e).endswith("not " + shown), (specs, str(e))
            if name:
                assert ("sensor %r" % name) in str(e), str(e)
        else:
            raise AssertionError("accepted %r" % (specs,))
    dev = Device("t", ["counter@0", "counter2=counter@2.5", {"kind": "clock", "rate": 10}])
    assert dev.sensors["counter"][1] == 0 and dev.sensors["counter2"][1] == 2.5 and dev.sensors["clock"][1] == 10
    dev.close()


def test_bad_sensor_specs_are_refused_naming_the_sensor_and_the_problem():
    # Before: a text seed hung the start building a string billions of characters long; a text
    # counter start failed every read; a kind that is not a string or a driver that is a list
    # ended in a traceback; a sensor named 7 broke every sorted list of the device's sensors
    from sensormesh.device.sensors import SensorError
    for spec, words in (({"kind": "temperature", "seed": "abc"}, "sensor 'temperature': seed must be a whole number, not 'abc'"),
                        ({"kind": "counter", "name": "c", "start": "x"}, "sensor 'c': start must be a whole number, not 'x'"),
                        ({"kind": 5, "driver": "esp32"}, "kind must be a string, not 5"),
                        ({"kind": "co2", "driver": ["a"]}, "sensor 'co2': unknown sensor driver ['a']"),
                        ({"kind": "co2", "name": 7}, "sensor 7: name must be a string"),
                        ({"kind": "csv"}, "sensor 'csv': a CSV replay needs \"path\""),
                        ({"kind": "temperature", "name": "t", "pin": 4}, "sensor 't': bad parameters for the sim temperature driver"),
                        (7, "a sensor spec is a \"KIND@HZ\" string or an object with a \"kind\", not 7")):
        try:
            Device("t", [spec])
        except SensorError as e:
            assert words in str(e), (spec, str(e))
        else:
            raise AssertionError("accepted %r" % (spec,))


def test_two_sensors_of_one_name_are_refused_saying_how_to_name_them():
    # two CSV replays without names are both named "csv"
    from sensormesh.device.sensors import SensorError
    try:
        Device("t", ["counter", "counter@5"])
    except SensorError as e:
        assert str(e) == "sensor name 'counter' is configured twice (name each one: NAME=KIND or NAME=csv:PATH)", str(e)
    else:
        raise AssertionError("accepted")


def test_a_memory_error_in_reporting_an_error_does_not_end_the_loop():
    # A handler fails and the report of its failure finds no heap either (the log line's text is
    # the allocation that fails on a full board): the error is counted, the loop runs on.
    dev = Device("t", [])
    ran = []

    def short_log(text):
        raise MemoryError

    def broken():
        raise ValueError("broken handler")

    dev.log = short_log
    dev.loop.call_later(1, broken)
    dev.loop.call_later(5, lambda: ran.append(1))
    dev.loop.call_later(10, dev.loop.stop)
    dev.loop.call_later(3000, dev.loop.stop)      # bound: the test never hangs
    dev.loop.run()
    assert dev.errors == 1, dev.errors
    assert ran == [1]
    dev.close()


def test_a_memory_error_outside_every_guard_is_counted_and_the_loop_goes_on():
    # The loop's own error hook is where an error escapes every handler's guard: a MemoryError
    # there reaches run(), which counts it and turns again (a board's main loop must not end).
    loop = transport.Loop()
    seen = []

    def hook(exc, where):
        seen.append(type(exc).__name__)
        raise MemoryError

    def broken():
        raise ValueError("broken handler")

    loop.on_error = hook
    loop.call_later(1, broken)
    loop.call_later(5, lambda: seen.append("later"))
    loop.call_later(10, loop.stop)
    loop.call_later(3000, loop.stop)
    loop.run()
    assert seen == ["ValueError", "later"], seen
    assert loop.short == 1, loop.short


def test_other_errors_from_outside_every_guard_still_end_the_loop():
    # only a shortfall is ridden out: a bug in the loop's own hook is not hidden
    loop = transport.Loop()

    def hook(exc, where):
        raise RuntimeError("hook bug")

    loop.on_error = hook
    loop.call_later(1, lambda: 1 / 0)
    loop.call_later(3000, loop.stop)
    try:
        loop.run()
    except RuntimeError as e:
        assert "hook bug" in str(e)
    else:
        assert False, "the loop ran on past a bug in its error hook"
