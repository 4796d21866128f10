"""The controller's side of confirmed callback deliveries: each value handed on once."""
from sensormesh.controller.deliveries import Deliveries


def _serve_one(srv, answer):
    """A device on loopback for one controller connection: answer(conn, msg) replies to each
    message the controller sends and returns True once the device is done (it then closes)."""
    from sensormesh.device import codec
    conn, _ = srv.accept()
    conn.settimeout(10)
    dec = codec.Decoder()
    try:
        while True:
            data = conn.recv(65536)
            if not data:
                return
            dec.feed(data)
            while True:
                m = dec.next()
                if m is None:
                    break
                if answer(conn, m):
                    return
    finally:
        conn.close()


def test_values_numbered_again_are_dropped_and_confirmed():
    d = Deliveries()
    vals, ack = d.take("c", {"step": "k", "values": [0, 1, 2], "seq": 0, "run": 7})
    assert vals == [0, 1, 2] and ack == {"delivered": {"step": "k", "seq": 3, "run": 7}}
    # the restarted sink device sends 1.. again (it took the numbering back from its upstream)
    vals, ack = d.take("c", {"step": "k", "values": [1, 2, 3, 4], "seq": 1, "run": 7})
    assert vals == [3, 4] and ack["delivered"]["seq"] == 5 and d.duplicates == 2
    vals, ack = d.take("c", {"step": "k", "values": [1], "seq": 1, "run": 7})
    assert vals == [] and ack["delivered"]["seq"] == 5


def test_a_new_numbering_counts_afresh_and_a_gap_is_counted():
    d = Deliveries()
    d.take("c", {"step": "k", "values": [0, 1], "seq": 0, "run": 1})
    vals, ack = d.take("c", {"step": "k", "values": [9], "seq": 0, "run": 2})
    assert vals == [9] and ack["delivered"] == {"step": "k", "seq": 1, "run": 2}
    assert d.news() == []
    vals, _ = d.take("c", {"step": "k", "values": [5], "seq": 4, "run": 2})
    assert vals == [5] and d.lost == 3
    # a gap is reported once, naming the values that never arrived
    assert d.news() == ["device c, callback k: values 1-3 of its numbering never reached the controller "
                        "(3 lost in all)"]
    assert d.news() == []
    # steps and devices are numbered apart
    vals, _ = d.take("m", {"step": "k", "values": [1], "seq": 0, "run": 2})
    assert vals == [1]


def test_a_gap_on_one_connection_is_values_the_device_left_out_not_lost_while_no_one_listened():
    d = Deliveries()
    link, other = object(), object()
    d.take("c", {"step": "k", "values": [0, 1], "seq": 0, "run": 1}, via=link)
    d.take("c", {"step": "k", "values": [3], "seq": 3, "run": 1}, via=link)     # 2 was NaN
    assert d.left_out == {"c": 1} and d.lost == 0
    assert d.news() == ["device c, callback k: value 2 of its numbering was left out by the device while the "
                        "controller listened (a value JSON cannot carry, such as NaN, or one too large to send; "
                        "1 in all)"]
    # after a new connection a gap may be values dropped while no controller listened
    d.take("c", {"step": "k", "values": [9], "seq": 9, "run": 1}, via=other)
    assert d.left_out == {"c": 1} and d.lost == 5
    # noted the 1st, 2nd, 4th... time only
    for seq in range(11, 30, 2):
        d.take("c", {"step": "k", "values": [seq], "seq": seq, "run": 1}, via=other)
    assert d.left_out == {"c": 11}
    assert [n.split(";")[1] for n in d.news() if "left out" in n] == [" 2 in all)", " 4 in all)", " 8 in all)"]


def test_devices_that_never_delivered_number_from_0():
    d = Deliveries()
    d.fresh = True         # `up`'s own devices: a first message at 2 left out 0 and 1
    link = object()
    d.take("c", {"step": "k", "values": [2], "seq": 2, "run": 1}, via=link)
    assert d.left_out == {"c": 2} and d.lost == 0
    # a callback moved to another device keeps its numbering (its run): nothing left out
    d.take("m", {"step": "k", "values": [3], "seq": 3, "run": 1}, via=object())
    assert d.left_out == {"c": 2} and d.lost == 0


def test_a_device_that_does_not_number_its_deliveries_is_passed_through():
    d = Deliveries()
    assert d.take("c", {"step": "k", "values": [1, 1]}) == ([1, 1], None)
    assert d.take("c", {"step": "k", "values": "bad", "seq": 0}) == ([], None)


def test_values_sent_before_the_reply_to_start_are_handed_on_and_confirmed():
    # A sink deployed again gets its input replayed as soon as its pipe exists, so its first
    # callback values may come before the reply to start. A device on loopback answers exactly
    # that way: deploy() sets them aside, watch() hands them on and confirms them. A gap in the
    # numbering afterwards is reported to the operator.
    import socket
    import threading

    from sensormesh.controller.deploy import deploy
    from sensormesh.device import codec

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(10)
    seen = []

    def answer(conn, m):
        seen.append(m)
        if "hello" in m:
            conn.sendall(codec.encode({"info": {"name": "c"}}))
        elif "deploy" in m:
            conn.sendall(codec.encode({"deployed": {"pipeline": "p", "epoch": 1, "steps": 2}}))
        elif "start" in m:
            conn.sendall(codec.encode({"deliver": {"step": "k", "epoch": 1, "values": [7, 8],
                                                   "seq": 7, "run": 3}}))
            conn.sendall(codec.encode({"started": {"pipeline": "p", "epoch": 1}}))
        elif "delivered" in m and m["delivered"]["seq"] == 9:
            # values 9-11 never leave (a device that dropped them): a reported gap
            conn.sendall(codec.encode({"deliver": {"step": "k", "epoch": 1, "values": [12],
                                                   "seq": 12, "run": 3}}))
        elif "delivered" in m:
            return True
        return False
    t = threading.Thread(target=_serve_one, args=(srv, answer), daemon=True)
    t.start()
    try:
        asg = {"c": {"pipeline": "p", "epoch": 1, "steps": []}}
        dep = deploy(asg, {"c": "127.0.0.1:%d" % srv.getsockname()[1]})
        got = []
        events = []
        dep.watch(lambda d, s, v: got.extend(v), lambda: len(got) >= 3, timeout=10, on_event=events.append)
        t.join(10)
        dep.close()
    finally:
        srv.close()
    assert got == [7, 8, 12]
    assert {"delivered": {"step": "k", "seq": 9, "run": 3}} in seen, seen
    assert events == ["device c, callback k: values 9-11 of its numbering never reached the controller "
                      "(3 lost in all)"], events


def test_a_device_whose_connection_is_reset_while_watched_is_reported_not_raised():
    # A device killed with the controller's messages unread resets the connection. watch() must
    # report it and go on reading the other devices (it raised ConnectionResetError before).
    import socket
    import struct
    import threading

    from sensormesh.controller.deploy import deploy
    from sensormesh.device import codec

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(10)
    ready = threading.Event()

    def answer(conn, m):
        if "hello" in m:
            conn.sendall(codec.encode({"info": {"name": "c"}}))
        elif "deploy" in m:
            conn.sendall(codec.encode({"deployed": {"pipeline": "p", "epoch": 1, "steps": 2}}))
        elif "start" in m:
            conn.sendall(codec.encode({"started": {"pipeline": "p", "epoch": 1}}))
            conn.sendall(codec.encode({"deliver": {"step": "k", "epoch": 1, "values": [1],
                                                   "seq": 0, "run": 3}}))
        elif "delivered" in m:
            # killed: the connection is reset (SO_LINGER 0), what we were sent unread
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()
            ready.set()
            return True
        return False
    t = threading.Thread(target=_serve_one, args=(srv, answer), daemon=True)
    t.start()
    try:
        dep = deploy({"c": {"pipeline": "p", "epoch": 1, "steps": []}},
                     {"c": "127.0.0.1:%d" % srv.getsockname()[1]})
        got, events = [], []
        dep.watch(lambda d, s, v: got.extend(v), lambda: ready.is_set() and bool(events), timeout=10,
                  on_event=events.append)
        t.join(10)
        dep.close()
    finally:
        srv.close()
    assert got == [1]
    assert any(e.startswith("device c") and ("lost" in e or "closed its control session" in e) for e in events), events
