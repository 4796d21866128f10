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


def test_a_deliver_message_of_the_wrong_shape_is_ignored_and_said_not_raised():
    # a step or run the controller cannot key its numbering by (a list) made take() raise
    # TypeError inside the controller's loop, which stopped the whole run
    d = Deliveries()
    for body in ({"step": "k", "values": [1], "seq": 0, "run": [1]},
                 {"step": ["k"], "values": [1], "seq": 0, "run": 1},
                 {"step": {"k": 1}, "values": [1], "seq": 0, "run": 1}):
        assert d.take("c", body, via=object()) == ([], None), body
    news = d.news()
    assert len(news) == 3 and all(n.startswith("device c sent a deliver message whose step or run") for n in news), news
    # the device's well-formed values go on as before
    assert d.take("c", {"step": "k", "values": [5, 6], "seq": 0, "run": 2}) == (
        [5, 6], {"delivered": {"step": "k", "seq": 2, "run": 2}})


def test_the_supervisor_survives_a_reply_it_cannot_handle_and_serves_the_other_devices(tmp_path):
    # A device whose answer nests a name the controller keys its routes by as a list: handling
    # it raised inside the controller's loop, which stopped `status` (and a watching `up`) with a
    # traceback. The connection is closed, said as an event, and the other device is served.
    import socket
    import threading

    from sensormesh.controller.pipeline_file import load_model
    from sensormesh.controller.supervisor import Supervisor
    from sensormesh.device import codec

    def device(srv, name, bad):
        def answer(conn, m):
            if "status" in m:
                reply = {"status": {"name": name, "streams": [], "connections": 1, "errors": 0}}
                conn.sendall(codec.encode({"forwarded": {"from": ["x"], "message": reply}} if bad else reply))
            return False
        try:
            _serve_one(srv, answer)
        except OSError:
            pass
    srvs = {}
    for name in ("good", "bad"):
        srvs[name] = socket.socket()
        srvs[name].bind(("127.0.0.1", 0))
        srvs[name].listen(1)
        srvs[name].settimeout(10)
    threads = [threading.Thread(target=device, args=(srvs[n], n, n == "bad"), daemon=True) for n in srvs]
    for t in threads:
        t.start()
    f = tmp_path / "p.yaml"
    f.write_text("pipeline: p\ndevices:\n" + "".join(
        '  %s: {interpreter: cpython, address: "127.0.0.1:%d", sensors: [counter]}\n' % (n, srvs[n].getsockname()[1])
        for n in srvs) + "steps:\n  s: {type: source, sensor: counter, on: good}\nsinks:\n  k: {type: callback, input: s, on: good}\n")
    sup = Supervisor(load_model(str(f)), "edge", timeout=3.0)
    try:
        st, _ = sup.status()
        assert st["good"]["name"] == "good", st
        assert "error" in st["bad"], st
        assert any("could not be handled and its connection was closed: TypeError" in e for e in sup.events), sup.events
    finally:
        sup.close()
        for s in srvs.values():
            s.close()
        for t in threads:
            t.join(10)


def test_an_exception_of_the_users_own_callback_still_reaches_the_user(tmp_path):
    # the controller's loop closes a connection whose message it cannot handle; what the user's
    # own on_deliver raises is not that: it goes to the user as it is
    import socket
    import threading

    import pytest

    from sensormesh.controller.pipeline_file import load_model
    from sensormesh.controller.supervisor import Supervisor
    from sensormesh.device import codec

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    srv.settimeout(0.2)
    done = threading.Event()
    polls = []

    def answer(conn, m):
        key = next(iter(m))
        if key == "hello":
            conn.sendall(codec.encode({"info": {"name": "c", "sensors": {}}}))
        elif key == "deploy":
            conn.sendall(codec.encode({"deployed": {"pipeline": "p", "epoch": 1, "steps": 2}}))
        elif key == "start":
            conn.sendall(codec.encode({"started": {"pipeline": "p", "epoch": 1}}))
        elif key == "status":       # (from the second poll on the watch runs: the value comes inside its loop)
            conn.sendall(codec.encode({"status": {"name": "c", "streams": [], "connections": 1, "errors": 0}}))
            polls.append(1)
            if len(polls) > 1:
                conn.sendall(codec.encode({"deliver": {"step": "k", "epoch": 1, "values": [1], "seq": 0, "run": 3}}))
        elif key in ("stop", "undeploy"):
            conn.sendall(codec.encode({"stopped": {"pipeline": "p", "epoch": 1, "state": "stopped", "steps": {}}}))
        elif key not in ("delivered",):
            conn.sendall(codec.encode({key: {}}))
        return False

    def serve():
        while not done.is_set():
            try:
                _serve_one(srv, answer)
            except socket.timeout:
                continue
            except OSError:
                return
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    f = tmp_path / "p.yaml"
    f.write_text('pipeline: p\ndevices:\n  c: {interpreter: cpython, address: "127.0.0.1:%d", sensors: [counter]}\n'
                 'steps:\n  s: {type: source, sensor: counter, on: c}\nsinks:\n  k: {type: callback, input: s, on: c}\n'
                 % srv.getsockname()[1])
    sup = Supervisor(load_model(str(f)), "edge", timeout=3.0, interval=0.3)

    def mine(device, step, values):
        raise ValueError("the user's own bug")
    try:
        sup.deploy()
        with pytest.raises(ValueError, match="the user's own bug"):
            sup.watch(mine, lambda: False, timeout=10, on_event=[].append)
    finally:
        sup.close()
        done.set()
        t.join(10)
        srv.close()
