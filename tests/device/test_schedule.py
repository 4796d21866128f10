# The shared timing helpers (sensormesh/device/schedule.py) and the parts built on them: redial
# backoff of pipes, and the fixed sampling grid of sources that counts what a stall missed.
# Plain assert functions: pytest on CPython, `micropython tests/mprun.py test_schedule` on the
# unix port. Time is a manual clock: timers fire only when a test runs them.
from pipekit import FakeLoop
from sensormesh.device.runtime.build import source
from sensormesh.device.runtime.build_pipe_in import pipe_in
from sensormesh.device.runtime.build_pipes import pipe_out
from sensormesh.device.forward import Redial
from sensormesh.device.schedule import MAX_CATCH_UP, RETRY_MS, grid_due, sparse, wait_ms


def run_next(loop):
    """Jump to the earliest live timer and run it; returns how long it waited (ms)."""
    tm = loop.next_due()
    loop.timers.remove(tm)
    waited = tm.when - loop.t
    if tm.when > loop.t:
        loop.t = tm.when
    tm.fn()
    return waited


class Conn:
    def __init__(self):
        self.closed = False
        self.connecting = True

    def writable(self):
        return True

    def send(self, msg):
        pass

    def close(self, reason=None):
        self.closed = True

    def close_after_flush(self, reason=None):
        self.closed = True


class FakeDevice:
    def __init__(self, sensors=None):
        self.name = "d"
        self.security = None
        self.sensors = sensors or {}
        self.sensor_kinds = {}
        self.dialed = []

    def dial(self, address, protocol, peer, first):
        c = Conn()
        self.dialed.append(c)
        return c


class FakeRuntime:
    def __init__(self, sensors=None):
        self.loop = FakeLoop()
        self.device = FakeDevice(sensors)
        self.epoch = 1
        self.logs = []
        self.joint = False       # no joined inputs (a pipe_in's announcement asks)

    def log(self, text):
        self.logs.append(text)

    def backlogged(self):
        return False

    def resume_sources(self):
        pass


def test_redial_walks_its_table_then_repeats_the_last_and_starts_over_when_connected():
    r = Redial((10, 20, 50))
    assert [r.delay() for _ in range(5)] == [10, 20, 50, 50, 50]
    assert r.tries == 5
    r.connected()
    assert r.delay() == 10


def drops(pipe, rt, n):
    """Drop pipe's connection n times; the redial delays it chose."""
    out = []
    for _ in range(n):
        pipe.on_close(rt.device.dialed[-1], "closed by peer")
        out.append(run_next(rt.loop))        # the redial timer: dials again
    return out


def test_pipe_in_redials_quickly_again_after_a_connection_that_worked():
    rt = FakeRuntime()
    p = pipe_in(rt, "in:e", {"edge": "e", "from": "127.0.0.1:1", "peer": "x"})
    p.start()
    assert drops(p, rt, len(RETRY_MS) + 1) == list(RETRY_MS) + [RETRY_MS[-1]]
    conn = rt.device.dialed[-1]               # the pull is up again: the sender says where it stands
    p.on_message(conn, {"seq": [0, 7]})
    assert drops(p, rt, 2) == [RETRY_MS[0], RETRY_MS[1]]


def test_pipe_in_whose_pull_is_refused_each_time_keeps_backing_off_and_logs_now_and_then():
    # A sender not deployed yet (or restarted, waiting for its assignment) answers each pull
    # with "unknown-edge" once the connection is up: that is no link that worked, so the
    # pauses keep growing instead of a dial every 100 ms for as long as the refusal lasts.
    rt = FakeRuntime()
    p = pipe_in(rt, "in:e", {"edge": "e", "from": "127.0.0.1:1", "peer": "x"})
    p.start()
    waits = []
    for _ in range(24):
        conn = rt.device.dialed[-1]
        p.on_message(conn, {"error": {"code": "unknown-edge", "message": "no pipe_out for edge 'e'"}})
        p.on_close(conn, "unknown-edge")
        waits.append(run_next(rt.loop))
    assert waits == list(RETRY_MS) + [RETRY_MS[-1]] * (24 - len(RETRY_MS)), waits
    said = [t for t in rt.logs if "peer says" in t]
    assert 1 < len(said) <= 3, rt.logs       # the first, then every LOG_EVERY_REDIALS
    assert p.last_error == "no pipe_out for edge 'e'"
    p.on_message(rt.device.dialed[-1], {"seq": [0, 7]})     # taken at last
    assert drops(p, rt, 1) == [RETRY_MS[0]]


def test_pipe_out_redials_quickly_again_after_a_connection_that_worked():
    rt = FakeRuntime()
    p = pipe_out(rt, "out:e", {"edge": "e", "to": "127.0.0.1:1", "peer": "x"})
    p.start()
    assert run_next(rt.loop) == 0 and len(rt.device.dialed) == 1   # it dials on the next loop turn
    assert drops(p, rt, len(RETRY_MS) + 1) == list(RETRY_MS) + [RETRY_MS[-1]]
    conn = rt.device.dialed[-1]
    p.on_connect(conn)
    assert run_next(rt.loop) == 0      # what waits in its buffer leaves on the next loop turn
    p.on_message(conn, {"ack": 0})     # the receiver took the link
    assert drops(p, rt, 1) == [RETRY_MS[0]]


def test_pipe_out_whose_receiver_refuses_the_edge_keeps_backing_off_and_logs_now_and_then():
    # The receiver, restarted and waiting for its deployment, takes each connection (and a
    # keyed one's handshake) and then refuses the edge: each such dial costs both ends a
    # handshake, so the pauses keep growing as they do for a dial that fails outright.
    rt = FakeRuntime()
    p = pipe_out(rt, "out:e", {"edge": "e", "to": "127.0.0.1:1", "peer": "x"})
    p.start()
    assert run_next(rt.loop) == 0
    waits = []
    for _ in range(24):
        conn = rt.device.dialed[-1]
        p.on_connect(conn)
        assert run_next(rt.loop) == 0
        p.on_message(conn, {"error": {"code": "unknown-edge", "message": "no pipe_in for edge 'e'"}})
        p.on_close(conn, "unknown-edge")
        waits.append(run_next(rt.loop))
    assert waits == list(RETRY_MS) + [RETRY_MS[-1]] * (24 - len(RETRY_MS)), waits
    refused = [t for t in rt.logs if "refused" in t]
    assert 1 < len(refused) <= 3, rt.logs
    assert len(rt.logs) <= 8, rt.logs       # not a line per dial
    # its status says why, not only that the connection closed
    assert p.last_error == "no pipe_in for edge 'e'", p.last_error
    assert "pipe e to 127.0.0.1:1: no pipe_in for edge 'e'; retrying in 100 ms" in rt.logs, rt.logs
    assert getattr(p, "refused_by", None) is None     # no closed connection held
    conn = rt.device.dialed[-1]            # deployed at last: it says where it stands
    p.on_connect(conn)
    run_next(rt.loop)
    p.on_message(conn, {"frame-values": 256})
    assert drops(p, rt, 1) == [RETRY_MS[0]]


def test_pipe_out_lets_go_of_a_connection_whose_close_found_no_memory():
    # The transport marks a connection closed, then calls the pipe's on_close, whose code a
    # board loads for it: short of memory, that call fails and the pipe still holds the closed
    # connection. Its next value or frame lets it go and dials again; nothing is sent meanwhile.
    rt = FakeRuntime()
    p = pipe_out(rt, "out:e", {"edge": "e", "to": "127.0.0.1:1", "peer": "x"})
    p.start()
    assert run_next(rt.loop) == 0 and len(rt.device.dialed) == 1
    p.on_connect(rt.device.dialed[-1])
    assert run_next(rt.loop) == 0                 # what waits leaves on the next loop turn
    rt.device.dialed[-1].closed = True            # closed; on_close never ran
    p.push(1.5)
    assert p.conn is None and len(rt.device.dialed) == 1
    assert run_next(rt.loop) == RETRY_MS[0] and len(rt.device.dialed) == 2   # dials again
    sent = []
    rt.device.dialed[-1].send = sent.append
    p.on_connect(rt.device.dialed[-1])
    assert sent == [] and run_next(rt.loop) == 0  # on the next loop turn, not inside on_connect
    assert [1.5] in sent, sent                    # the value waited in the buffer


def test_pipe_out_dials_again_when_a_failed_dial_found_no_memory_to_say_so():
    rt = FakeRuntime()
    p = pipe_out(rt, "out:e", {"edge": "e", "to": "127.0.0.1:1", "peer": "x"})
    p.start()
    run_next(rt.loop)
    rt.device.dialed[-1].closed = True            # the dial failed; on_close never ran
    p.push(2.5)
    assert p.dialing is None
    assert run_next(rt.loop) == RETRY_MS[0] and len(rt.device.dialed) == 2


class ShortDevice(FakeDevice):
    """A device whose first dials find no memory free (for the connection or the handshake)."""

    def __init__(self, failures):
        FakeDevice.__init__(self)
        self.failures = failures

    def dial(self, address, protocol, peer, first):
        if self.failures:
            self.failures -= 1
            raise MemoryError("memory allocation failed, allocating 464 bytes")
        return FakeDevice.dial(self, address, protocol, peer, first)


def test_a_pipe_whose_dial_finds_no_memory_dials_again_later():
    rt = FakeRuntime()
    rt.device = ShortDevice(2)
    p = pipe_out(rt, "out:e", {"edge": "e", "to": "127.0.0.1:1", "peer": "x"})
    p.start()
    assert run_next(rt.loop) == 0 and rt.device.dialed == []          # no memory: no connection
    assert run_next(rt.loop) == RETRY_MS[0] and rt.device.dialed == []
    assert run_next(rt.loop) == RETRY_MS[1] and len(rt.device.dialed) == 1
    assert p.dialing is rt.device.dialed[0]
    rt = FakeRuntime()
    rt.device = ShortDevice(1)
    p = pipe_in(rt, "in:e", {"edge": "e", "from": "127.0.0.1:1", "peer": "x"})
    p.start()
    assert rt.device.dialed == []
    assert run_next(rt.loop) == RETRY_MS[0] and len(rt.device.dialed) == 1


class Counter:
    RATE_HZ = 100

    def __init__(self):
        self.n = 0

    def get(self):
        self.n += 1
        return self.n


class Grid:
    def __init__(self, period):
        self.t0 = 0
        self.period = period
        self.taken = 0
        self.missed = 0


def test_grid_counts_the_slots_a_stall_missed():
    g = Grid(10.0)
    assert grid_due(g, 0) == 1
    g.taken += 1
    assert grid_due(g, 35) == 3                      # slots at 10, 20, 30
    g.taken += 3
    assert g.missed == 0
    due = grid_due(g, 40 + 10 * (MAX_CATCH_UP + 50))   # a long stall
    assert due == 1 and g.missed == MAX_CATCH_UP + 50
    assert g.taken == 4 + MAX_CATCH_UP + 50


def test_wait_ms_rounds_up_and_never_goes_negative():
    assert wait_ms(10.2, 0) == 11 and wait_ms(10, 0) == 10 and wait_ms(5, 9) == 0


def test_sparse_is_true_at_powers_of_two():
    assert [n for n in range(1, 20) if sparse(n)] == [1, 2, 4, 8, 16] and not sparse(0)


def test_source_counts_missed_slots_after_a_stall():
    rt = FakeRuntime({"c": (Counter(), 100)})
    s = source(rt, "src", {"sensor": "c"})
    got = []
    s.emit = got.append
    s.start()                                  # slot 0 at t=0
    assert got == [1]
    run_next(rt.loop)                          # slot 1 at t=10
    assert got == [1, 2] and s.stats()["missed"] == 0
    rt.loop.t = 10 + 10 * 500                  # the loop stalls for 5 s: 500 slots
    run_next(rt.loop)
    # one value now (not a rush of 100), the rest counted
    assert got == [1, 2, 3]
    assert s.stats()["missed"] == 499
    assert s.stats()["out"] == 3



def test_a_source_reads_on_after_a_step_could_not_take_a_value():
    # A step short of heap raises MemoryError for one value (one run, free-running): the loop
    # counts and logs it (its guard, here the test); the source keeps its schedule and reads on.
    # (It stopped for good: its next read was never scheduled.)
    for rate in (100, 0):
        rt = FakeRuntime({"c": (Counter(), 100)})
        rt.pipe_outs = {}
        s = source(rt, "src", {"sensor": "c", "rate": rate, "count": 300})
        got = []
        failed = [0]

        def take(v):
            if failed[0] == 0 and (v == 2 if type(v) is int else 2 in v):
                failed[0] = 1
                raise MemoryError("memory allocation failed")
            if type(v) is int:
                got.append(v)
            else:
                got.extend(v)
        s.emit = s.wired = take
        s.emit_many = take
        try:
            s.start()
        except MemoryError:
            pass
        for _ in range(400):
            if not rt.loop.timers:
                break
            try:
                run_next(rt.loop)
            except MemoryError:
                pass
        # lost: the one value, or the one run, the step could not take (the loop counted it)
        from sensormesh.device.runtime.free_running import BURST
        assert failed[0] == 1 and got[-1] == 300, (rate, got[-3:])
        assert len(got) == 299 if rate else 300 - BURST <= len(got) < 300, (rate, len(got))
        assert not s.running and not rt.loop.timers


def test_a_registration_its_upstream_refuses_keeps_backing_off_until_it_is_registered():
    # The upstream takes each connection and refuses the register (here: a name longer than
    # the gateway takes). That is no link that worked: the pauses keep growing and the refusal
    # is logged now and then, not at every dial; a "registered" starts them over.
    from loopkit import listen
    from sensormesh.device import forward, transport
    from sensormesh.device.core import Device
    loop = transport.Loop()
    gw = Device("gw", [], loop=loop)
    addr = listen(gw)
    fw = forward.forwarder(gw)
    calls = []
    take = fw.register

    def counting(session, body):
        calls.append(loop.now())
        take(session, body)
    fw.register = counting
    keep = forward.NAME_MAX, forward.RETRY_MS
    forward.NAME_MAX = 3
    forward.RETRY_MS = (50, 100, 200, 400, 800)
    dev = Device("dev-r", [], loop=loop)
    logs = []
    dev.log = logs.append
    try:
        reg = forward.register(dev, addr)
        assert loop.run_until(lambda: len(calls) >= 4, 10000), calls
        waited = calls[3] - calls[0]
        assert waited >= 0.75 * (50 + 100 + 200), (calls, logs)    # (3 x 50 ms before)
        refused = [t for t in logs if "refused" in t]
        assert len(refused) == 1 and "bad-request" in refused[0], logs
        assert not [t for t in logs if t.startswith("registered with")], logs
        forward.NAME_MAX = keep[0]              # the upstream takes it now
        assert loop.run_until(lambda: [t for t in logs if t.startswith("registered with")], 10000), logs
        assert reg.redial.tries == 0 and "dev-r" in fw.registered
    finally:
        forward.NAME_MAX, forward.RETRY_MS = keep
        dev.close()
        gw.close()
