# Assignments larger than one frame, sent in parts (sensormesh/device/runtime/parts.py), on both
# interpreters (pytest, and: micropython tests/mprun.py test_assignment_parts): a keyed device
# with a board's frame limit takes an assignment of 200 pipe inputs; a part missing, one too
# many, a wrong size or a timeout is an error, and the running assignment keeps running.
from sensormesh.device import codec, transport
from sensormesh.device.compat import MICROPYTHON
from sensormesh.device.core import Device
from sensormesh.device.runtime import parts, parts_sender
from sensormesh.device.secure import handshake as session

from loopkit import listen
from test_secure_device import SecureClient
from test_session import fixture, trust_json

N_INPUTS = 200


def fan_in(n, epoch=7):
    """The assignment of a device merging n pipes (the PC of n boards)."""
    steps = [{"id": "in:w%03d->pc" % i, "type": "pipe_in", "params": {"edge": "w%03d->pc" % i, "buffer": 64}}
             for i in range(n)]
    steps.append({"id": "all", "type": "merge", "inputs": [s["id"] for s in steps]})
    steps.append({"id": "out", "type": "callback", "params": {"name": "out"}, "inputs": ["all"]})
    return {"pipeline": "fleet", "epoch": epoch, "steps": steps}


def counting(epoch=1):
    return {"pipeline": "small", "epoch": epoch, "steps": [
        {"id": "s", "type": "source", "params": {"sensor": "counter", "rate": 200}},
        {"id": "k", "type": "callback", "params": {}, "inputs": ["s"]}]}


def board_device(loop):
    """A keyed device that accepts no more than a board does (codec.MIN_MAX_FRAME)."""
    d = Device("dev-a", ["counter@0"], max_frame=codec.MIN_MAX_FRAME, loop=loop)
    from sensormesh.device import boot
    boot.secure(d, {"identity": fixture()["ids"]["dev-a"], "trust": trust_json()})
    return d


def connect(loop, dev):
    c = SecureClient(loop, listen(dev), "controller", "dev-a")
    assert loop.run_until(c.ready, 5000) and c.error is None, c.error
    return c


def send_parts(loop, c, msgs):
    """Send each part after the previous one's answer; returns the last answer."""
    for m in msgs:
        n = len(c.messages)
        c.conn.send(m)
        assert loop.run_until(lambda: len([x for x in c.messages[n:] if "deliver" not in x]) > 0, 10000), c.messages[n:]
        reply = [x for x in c.messages[n:] if "deliver" not in x][0]
        if "received" not in reply:
            return reply
    return reply


def changed(body, key, value):
    out = {}
    for k in body:
        out[k] = body[k]
    out[key] = value
    return {"deploy-part": out}


def answer(loop, c, msg):
    n = len(c.messages)
    c.conn.send(msg)
    assert loop.run_until(lambda: len([x for x in c.messages[n:] if "deliver" not in x]) > 0, 10000)
    return [x for x in c.messages[n:] if "deliver" not in x][0]


def test_200_pipe_inputs_reach_a_keyed_device_with_a_boards_frame_limit():
    loop = transport.Loop()
    dev = board_device(loop)
    c = connect(loop, dev)
    a = fan_in(N_INPUTS)
    room = session.wrap_limit(codec.MIN_MAX_FRAME)
    whole = {"deploy": {"assignment": a}}
    assert len(codec.dumps(whole)) > room      # it cannot travel as one frame
    try:
        c.conn.send(whole)
        raise AssertionError("a control message over the frame limit was sent")
    except codec.ProtocolError as e:
        assert "exceeds the frame limit" in str(e)
    text = codec.dumps(a).decode()
    msgs = parts_sender.split(text, room, "fleet-7")
    assert len(msgs) >= 2
    for m in msgs:
        assert len(codec.dumps(m)) <= room
    assert "".join(m["deploy-part"]["text"] for m in msgs) == text
    reply = send_parts(loop, c, msgs)
    assert reply == {"deployed": {"pipeline": "fleet", "epoch": 7, "steps": N_INPUTS + 2}}, reply
    assert len(dev.runtime.pipe_ins) == N_INPUTS and getattr(dev.runtime, "incoming", None) is None
    # per-step counts of 202 steps do not fit this session's frames: their number comes instead
    st = answer(loop, c, {"status": {}})["status"]["assignment"]
    assert st["epoch"] == 7 and st["steps"] == {} and st["steps_omitted"] == N_INPUTS + 2, st
    assert "exceeds the frame limit" in st["omitted_because"]
    # a controller that says it takes large frames gets them (a board's keyed link wraps at most
    # 3 KB at once, so a board still leaves them out)
    c2 = connect(loop, dev)
    info = answer(loop, c2, {"hello": {"max-frame": 4 * 1024 * 1024}})["info"]
    assert info["max-frame"] == codec.MIN_MAX_FRAME
    st = answer(loop, c2, {"status": {}})["status"]["assignment"]
    if MICROPYTHON:
        assert st["steps_omitted"] == N_INPUTS + 2
    else:
        assert len(st["steps"]) == N_INPUTS + 2 and "steps_omitted" not in st
    stopped = answer(loop, c, {"stop": {}})["stopped"]
    assert stopped["state"] == "stopped" and stopped["steps_omitted"] == N_INPUTS + 2
    dev.close()


class _Later:
    """A loop that only records the timers set on it."""

    def __init__(self):
        self.due = []

    def call_later(self, ms, fn):
        self.due.append((ms, fn))


class _Device:
    """What replies.py asks of the device: where a waiting reply is kept, the loop's error log."""
    waiting = None

    def __init__(self):
        self.errors = []

    def _on_loop_error(self, exc, where):
        self.errors.append((where, exc))


class _Runtime:
    def __init__(self):
        self.logs = []
        self.loop = _Later()
        self.device = _Device()

    def log(self, text):
        self.logs.append(text)

    def run_timers(self):
        """Fire the timers set, in order, until none is left; their delays (ms)."""
        waited = []
        while self.loop.due:
            ms, fn = self.loop.due.pop(0)
            waited.append(ms)
            fn()
        return waited


class _ShortOfMemory:
    """A connection whose first sends find no block free for the reply (a board's sealed token)."""
    peer_max_frame = 16384
    closed = False

    def __init__(self, failures):
        self.failures = failures
        self.sent = []

    def send(self, msg):
        if self.failures:
            self.failures -= 1
            raise MemoryError("memory allocation failed, allocating 936 bytes")
        self.sent.append(msg)

    def send_payload(self, payload):
        # a reply's text, made before it is sealed: the seal is what finds no block free
        from sensormesh.device import codec
        self.send(codec.decode_payload(bytes(payload)))


def test_a_reply_without_memory_for_its_counts_comes_without_them_and_says_why():
    from sensormesh.device import replies as report   # a status or stopped reply: replies.send_stats
    rt = _Runtime()
    tries = 1 + len(report.AGAIN_MS)
    for n, key in enumerate(("status", "stopped", "status", "status")):
        conn = _ShortOfMemory(tries)     # no heap at any try: the counts give way
        st = {"assignment": {"pipeline": "p", "epoch": 3, "state": "running",
                             "steps": {"t": {"out": 5}, "out:e": {"in": 5, "out": 5}}}}
        report.send_stats(rt, conn, key, st)
        assert conn.sent == [] and rt.device.waiting is not None
        assert rt.run_timers() == list(report.AGAIN_MS)
        assert len(conn.sent) == 1 and rt.device.waiting is None, conn.sent
        a = conn.sent[0][key]["assignment"]
        assert a["steps"] == {} and a["steps_omitted"] == 2 and a["epoch"] == 3, a
        assert "no memory" in a["omitted_because"], a
    # logged sparsely: the 1st, 2nd and 4th
    assert len(rt.logs) == 3 and "status reply sent without its per-step counts" in rt.logs[0], rt.logs
    assert "(4 so far)" in rt.logs[-1], rt.logs
    # with memory for it, the whole reply goes at once
    conn = _ShortOfMemory(0)
    report.send_stats(rt, conn, "status", {"assignment": {"steps": {"t": {"out": 1}}}})
    assert conn.sent == [{"status": {"assignment": {"steps": {"t": {"out": 1}}}}}] and rt.loop.due == []
    # short of memory for the cut reply too: the MemoryError is the caller's (the loop logs it)
    report.send_stats(rt, _ShortOfMemory(tries + 1), "status", {"assignment": {"steps": {}}})
    try:
        rt.run_timers()
        raise AssertionError("no MemoryError")
    except MemoryError:
        pass


class _Node:
    def __init__(self, failures):
        self.failures = failures
        self.closed = 0

    def flush(self):
        pass

    def close(self):
        if self.failures:
            self.failures -= 1
            raise MemoryError("memory allocation failed, allocating 368 bytes")
        self.closed += 1


class _Stopping(_Runtime):
    def __init__(self, nodes):
        _Runtime.__init__(self)
        self.nodes = dict(nodes)
        self.order = [i for i, n in nodes]
        self.sources = []
        self.probe = None
        self.deliveries = {}
        self.pipe_outs = {}
        self.pipe_ins = {}
        self.state = "running"

    def status(self):
        return {"steps": {}}


def test_a_close_without_memory_is_tried_again_once_the_other_nodes_are_let_go():
    from sensormesh.device.runtime import stop
    a, b, c = _Node(0), _Node(1), _Node(2)
    rt = _Stopping([("a", a), ("b", b), ("c", c)])
    final = stop.teardown(rt)
    assert final["state"] == "stopped" and rt.nodes == {} and rt.state == "empty"
    assert (a.closed, b.closed, c.closed) == (1, 1, 0)    # b closed on its second try
    assert len(rt.logs) == 1 and "close of c failed" in rt.logs[0], rt.logs


class _Sampling(_Node):
    running = True


def test_a_source_whose_close_finds_no_memory_stops_sampling_and_the_stop_goes_on():
    """The stop closes the sources first, with code loaded for it on a board; one that found no
    heap free raised out of the stop: no final counts, every node left open."""
    from sensormesh.device.runtime import stop
    src, w = _Sampling(1), _Node(0)
    rt = _Stopping([("t", src), ("w", w)])
    rt.sources = [src]
    final = stop.teardown(rt)
    assert final["state"] == "stopped" and rt.nodes == {} and rt.sources == []
    assert src.running is False and src.closed == 1 and w.closed == 1
    assert rt.logs == []


def test_a_reply_that_finds_no_heap_goes_whole_a_moment_later():
    """A board's heap is fullest for moments (a stop, the first values of a deployment): a
    status or stopped reply that finds no heap free, to be made or to be sealed, is tried again
    AGAIN_MS later with its per-step counts."""
    from sensormesh.device import replies as report
    for key in ("stopped", "status"):
        for fails in range(1, len(report.AGAIN_MS) + 1):
            rt = _Runtime()
            conn = _ShortOfMemory(fails)
            st = {"state": "stopped", "epoch": 4, "steps": {"t": {"out": 9}, "w": {"in": 9, "out": 3}}}
            report.send_stats(rt, conn, key, st)
            assert conn.sent == []
            assert rt.run_timers() == list(report.AGAIN_MS[:fails])
            assert conn.sent == [{key: {"state": "stopped", "epoch": 4,
                                        "steps": {"t": {"out": 9}, "w": {"in": 9, "out": 3}}}}], conn.sent
            assert rt.logs == [] and getattr(rt, "replies_cut", 0) == 0 and rt.device.waiting is None


class _Session:
    def __init__(self, conn):
        self.conn = conn


def test_a_message_that_comes_while_a_reply_waits_is_answered_after_it():
    """Replies keep the order of the requests: a control message that comes while a reply
    waits for heap sends that reply first (whole if there is room by then, cut if not)."""
    from sensormesh.device import replies as report
    for fails in (1, 2):       # 2: no room at the second try either
        dev = Device("b", sensor_specs=[])
        rt = _Runtime()
        rt.device = dev
        conn = _ShortOfMemory(fails)
        report.send_stats(rt, conn, "status", {"steps": {"t": {"out": 9}}})
        assert conn.sent == [] and dev.waiting is not None
        dev.dispatch(_Session(conn), "ping", {"n": 1})
        assert dev.waiting is None and len(conn.sent) == 2, conn.sent
        assert conn.sent[1] == {"pong": {"n": 1}}
        if fails == 1:
            assert conn.sent[0] == {"status": {"steps": {"t": {"out": 9}}}}
        else:
            assert conn.sent[0]["status"]["steps_omitted"] == 1 and rt.logs, conn.sent
        # the timer set for the next try finds the reply sent: it does nothing
        rt.run_timers()
        assert len(conn.sent) == 2
    # no heap even for the cut reply: the loop's error log has it, and the message is answered
    dev = Device("b", sensor_specs=[])
    rt = _Runtime()
    rt.device = dev
    errors = []
    dev._on_loop_error = lambda e, where: errors.append(where)
    conn = _ShortOfMemory(3)
    report.send_stats(rt, conn, "status", {"steps": {"t": {"out": 9}}})
    dev.dispatch(_Session(conn), "ping", {"n": 2})
    assert errors == ["status reply"] and conn.sent == [{"pong": {"n": 2}}], (errors, conn.sent)


def test_missing_extra_and_wrong_parts_are_errors_and_the_old_assignment_keeps_running():
    loop = transport.Loop()
    dev = board_device(loop)
    c = connect(loop, dev)
    assert "deployed" in answer(loop, c, {"deploy": {"assignment": counting()}})
    assert "started" in answer(loop, c, {"start": {}})
    msgs = parts_sender.split(codec.dumps(fan_in(60, epoch=9)).decode(), 2000, "big-9")
    assert len(msgs) >= 4

    def refused(msg, code, words):
        r = answer(loop, c, msg)
        assert "error" in r and r["error"]["code"] == code and words in r["error"]["message"], (words, r)
        assert getattr(dev.runtime, "incoming", None) is None and dev.runtime.epoch == 1

    # part 1 of another assignment after part 0: the refusal names the one being received
    assert "received" in answer(loop, c, msgs[0])
    refused(changed(msgs[1]["deploy-part"], "id", "other-9"), "bad-part",
            "assignment big-9 was being received here (its part 1 of %d was due; dropped too)" % len(msgs))
    # part 2 after part 0: a part is missing
    assert "received" in answer(loop, c, msgs[0])
    refused(msgs[2], "bad-part", "where part 1 of %d" % len(msgs))
    # the rest of that assignment is refused too: its earlier parts are gone
    refused(msgs[1], "bad-part", "earlier parts were dropped")
    # a part whose number does not exist (one too many)
    extra = changed(msgs[-1]["deploy-part"], "part", len(msgs))
    refused(extra, "bad-part", "does not exist")
    # a whole sequence, then its last part again: nothing is being received
    for m in msgs[:-1]:
        assert "received" in answer(loop, c, m)
    last = msgs[-1]["deploy-part"]
    refused(changed(last, "text", last["text"] + "x"), "bad-part", "its size is")
    # sizes that do not add up, and fields of the wrong type
    refused(changed(msgs[0]["deploy-part"], "size", 5), "bad-part", "its size is")
    refused(changed(msgs[0]["deploy-part"], "part", "0"), "bad-part", "part must be")
    # too large for this device
    r = answer(loop, c, changed(msgs[0]["deploy-part"], "size", parts.MAX_TEXT + 1))
    assert r["error"]["code"] == "too-large" and "exceeds this device's limit" in r["error"]["message"], r
    # text that is no assignment: refused like any bad assignment
    bad = parts_sender.split('{"steps": [{"id": "x", "type": "teleport"}]}', 400, "bad")
    r = send_parts(loop, c, bad)
    assert r["error"]["code"] == "bad-assignment" and "unknown step type" in r["error"]["message"], r
    # through all this the first assignment kept running
    before = len(c.replies("deliver"))
    assert loop.run_until(lambda: len(c.replies("deliver")) > before + 2, 5000)
    assert dev.runtime.epoch == 1 and dev.runtime.state == "running"
    # and the complete sequence replaces it
    r = send_parts(loop, c, msgs)
    assert r == {"deployed": {"pipeline": "fleet", "epoch": 9, "steps": 62}}, r
    assert c.closed is None
    dev.close()


def test_a_part_that_does_not_come_in_time_drops_the_others():
    loop = transport.Loop()
    dev = board_device(loop)
    c = connect(loop, dev)
    assert "deployed" in answer(loop, c, {"deploy": {"assignment": counting()}})
    msgs = parts_sender.split(codec.dumps(fan_in(20)).decode(), 1000, "slow")
    # the module as the device loads it now (a board unloads it once no assignment is arriving)
    from sensormesh.device.runtime import parts as live
    old = live.PART_MS
    live.PART_MS = 150
    try:
        assert "received" in answer(loop, c, msgs[0])
        assert loop.run_until(lambda: c.replies("error"), 5000), c.messages
    finally:
        live.PART_MS = old
    err = c.replies("error")[0]
    assert err["code"] == "timeout" and "part 1 of %d did not arrive" % len(msgs) in err["message"], err
    assert getattr(dev.runtime, "incoming", None) is None and dev.runtime.epoch == 1
    r = answer(loop, c, msgs[1])
    assert r["error"]["code"] == "bad-part" and "after a timeout" in r["error"]["message"], r
    assert c.closed is None
    dev.close()


def test_split_keeps_every_character_and_each_message_within_room():
    text = '{"a": "quote \\" backslash \\\\ tab \\t", "b": "\u00e9t\u00e9 \u2603"}' * 40
    for room in (300, 777, 5000):
        msgs = parts_sender.split(text, room, "x")
        assert "".join(m["deploy-part"]["text"] for m in msgs) == text
        for i in range(len(msgs)):
            b = msgs[i]["deploy-part"]
            assert b["part"] == i and b["of"] == len(msgs) and b["size"] == len(text)
            assert len(codec.dumps(msgs[i])) <= room, (room, len(codec.dumps(msgs[i])))


class _NoHeapForLogs(_Runtime):
    def log(self, text):
        raise MemoryError("memory allocation failed, allocating 176 bytes")


class _Pipe:
    """A pipe_out's state as pipe_links.on_close sees it."""
    edge = "avg->pc"
    to = "unix:/nowhere"
    running = True
    redials = 0          # this close logs (its first redial)

    def __init__(self, rt, conn):
        self.rt = rt
        self.conn = None
        self.dialing = conn

    def _dial(self):
        pass


def test_a_pipe_whose_close_finds_no_heap_for_its_log_line_still_dials_again():
    """The close of a pipe's dial whose session came up short of heap: the log line found no
    heap free, and the pipe was left with neither a connection nor a dial to come, its values
    waiting in the replay buffer for the rest of the run."""
    from sensormesh.device.runtime import pipe_links
    rt = _NoHeapForLogs()
    conn = object()
    po = _Pipe(rt, conn)
    pipe_links.on_close(po, conn, "no memory free to take the connection")
    assert po.dialing is None and po.conn is None
    assert len(rt.loop.due) == 1 and rt.loop.due[0][1] == po._dial, rt.loop.due
    assert po.last_error == "no memory free to take the connection"


class _Up:
    """A connection whose secure dial just came up (connect.release)."""
    closed = False
    held = None

    def __init__(self, protocol):
        self.protocol = protocol
        self.why = None

    def close(self, why):
        self.closed = True
        self.why = why


class _ShortOnConnect:
    def on_connect(self, conn):
        raise MemoryError("memory allocation failed, allocating 272 bytes")


def test_a_dial_whose_on_connect_finds_no_heap_is_closed_to_be_dialed_again():
    """A pipe's on_connect loads its code (pipe_links.py on a board): without heap free for it
    the connection stayed up but never taken, and the pipe never sent again. It is closed now,
    so that the dialer dials again; the MemoryError is the loop's to log."""
    from sensormesh.device import connect
    conn = _Up(_ShortOnConnect())
    try:
        connect.release(conn)
        raise AssertionError("no MemoryError")
    except MemoryError:
        pass
    assert conn.closed and "no memory" in conn.why
