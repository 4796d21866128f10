# Acknowledged pipes with replay, without sockets: the sans-IO Sender/Receiver state machines
# (runtime/replay.py), and real runtimes, pipes and steps on a simulated network (pipekit.py)
# whose links are cut and whose devices are restarted at exact moments. Every test checks the
# sequence-numbered values at the sink. Runs under pytest and micropython tests/mprun.py.
from sensormesh.device.runtime.receiver import Receiver
from sensormesh.device.runtime.replay import Sender

from pipekit import Net, chain, restart


# -- the state machines ------------------------------------------------------------------
def test_sender_numbers_keeps_unacked_and_replays_from_the_oldest():
    tx = Sender(100, 7)
    for v in range(10):
        tx.add(v)
    assert tx.take(4) == [0, 1, 2, 3] and tx.take(100) == [4, 5, 6, 7, 8, 9]
    assert tx.take(100) is None
    assert tx.ack(3, {"x": [30, 1]}) == 3 and tx.base == 3 and tx.held() == 7
    assert tx.mark == {"x": [30, 1]}
    assert tx.restart() == 3 and tx.announce() == [3, 7, {"x": [30, 1]}, 100]
    assert tx.take(100) == [3, 4, 5, 6, 7, 8, 9]
    assert tx.ack(2) == 0 and tx.ack(3) == 0          # old or repeated acknowledgements change nothing
    assert tx.ack(99) == 7 and tx.held() == 0 and tx.base == 10   # beyond what exists: everything


def test_sender_bound_evicts_oldest_and_counts():
    tx = Sender(5, 1)
    for v in range(8):
        tx.add(v)
    assert tx.held() == 5 and tx.base == 3 and tx.dropped == 3 and tx.sent == 3
    assert tx.take(10) == [3, 4, 5, 6, 7]


def test_sender_without_acks_forgets_what_it_sent():
    tx = Sender(5, 1, acks=False)
    for v in range(3):
        tx.add(v)
    assert tx.take(10) == [0, 1, 2] and tx.held() == 0 and tx.base == 3


def test_a_take_undone_leaves_its_values_unsent_or_counts_them_dropped_without_acks():
    # (pipes.py undoes a take whose array found no heap to be sealed)
    tx = Sender(100, 1)
    for v in range(10):
        tx.add(float(v))
    assert tx.take(4) == [0.0, 1.0, 2.0, 3.0]
    first, high = tx.sent, tx.high
    vals = tx.take(3)
    tx.untake(first, high, len(vals))
    assert tx.sent == 4 and tx.high == 4 and tx.once == 4 and tx.unsent() == 6
    assert tx.take(100) == [4.0, 5.0, 6.0, 7.0, 8.0, 9.0] and tx.once == 10
    tx.restart()                       # a replay on a new connection: an undone take of resent values
    first, high = tx.sent, tx.high
    vals = tx.take(5)
    tx.untake(first, high, len(vals))
    assert tx.sent == 0 and tx.high == 10 and tx.once == 10 and tx.dropped == 0
    nx = Sender(5, 1, acks=False)
    for v in range(3):
        nx.add(v)
    vals = nx.take(10)
    nx.untake(0, 0, len(vals))
    assert nx.dropped == 3 and nx.held() == 0      # gone with no replay: counted, never silent


def test_a_buffer_of_floats_gives_back_exactly_what_it_took():
    # replay.py keeps a buffer holding only floats compactly (an array of the port's floats) and
    # makes it a list again when another value joins: either way the values come out as they
    # went in (same types, same order), through eviction, acknowledgement, replay and runs
    tx = Sender(6, 1)
    floats = [0.1, -0.0, 1e300, 2.5, float("inf"), -7.25]
    for v in floats:
        tx.add(v)
    out = tx.take(2)
    assert out == floats[:2] and type(out) is list and str(out[1]) == "-0.0"
    tx.add(1.5)                        # beyond the bound: the oldest float leaves, counted
    assert tx.evicted == 1 and tx.held() == 6
    assert tx.take(100) == floats[2:] + [1.5]
    assert tx.ack(4) == 3 and tx.held() == 3
    tx.restart()
    assert tx.take(100) == [float("inf"), -7.25, 1.5]
    tx.add(3)                          # an int joins: it stays an int
    tx.add(True)
    tx.add("x")
    got = tx.take(100)
    assert got == [3, True, "x"] and [type(v) for v in got] == [int, bool, str]
    assert tx.ack(100) == 6 and tx.held() == 0
    # runs: all floats join compactly; a run with another value in it turns the buffer into a list
    from sensormesh.device.runtime.pipe_runs import add_many
    assert add_many(tx, [0.5, 0.25]) and add_many(tx, [1, 0.75])
    got = tx.take(100)
    assert got == [0.5, 0.25, 1, 0.75] and type(got[2]) is int
    # without acknowledgements the values leave the buffer as they are sent
    once = Sender(10, 1, acks=False)
    once.add(0.5)
    once.add(1.5)
    assert once.take(1) == [0.5] and once.take(10) == [1.5] and once.held() == 0


def test_a_buffer_of_floats_takes_a_third_of_the_heap_on_micropython():
    # a float is a heap object on MicroPython (16 bytes on the unix port, plus 8 for the list's
    # pointer): the replay buffer holds floats as an array instead, 8 bytes a value (4 on an ESP32)
    import gc
    if not hasattr(gc, "mem_alloc"):
        return       # CPython: no heap of this kind
    gc.collect()
    before = gc.mem_alloc()
    tx = Sender(1000, 1)
    for i in range(1000):
        tx.add(i + 0.5)
    gc.collect()
    used = gc.mem_alloc() - before
    assert tx.held() == 1000 and tx.take(1000)[999] == 999.5
    assert used < 12 * 1024, used      # a list of 1000 floats takes 24 KB on the unix port


def test_sender_skips_what_the_receiver_already_has_same_run_only():
    tx = Sender(100, 5)
    for v in range(10):
        tx.add(v)
    tx.restart()
    tx.skip_to(6, 4)
    assert tx.sent == 0
    tx.skip_to(6, 5)
    assert tx.sent == 6 and tx.take(10) == [6, 7, 8, 9]
    tx.skip_to(50, 5)        # more than it has: ignored
    assert tx.sent == 10


def test_values_skipped_because_the_receiver_has_them_count_as_sent():
    # a restarted middle device took its numbering back (adopt) and recomputes values its
    # receiver had from the process before: those it skips count as sent (out), so that
    # in = out + pending + dropped still holds (they counted as neither, and the pipe's counts
    # showed values gone that had all arrived)
    tx = Sender(100, 5)
    tx.adopt(10, 5)
    for v in range(20):
        tx.add(v)            # values 10..29 of run 5
    tx.restart()
    tx.skip_to(16, 5)        # the receiver had 10..15
    assert tx.take(100) == list(range(6, 20))
    pending = tx.next_seq() - (tx.high if tx.high > tx.base else tx.base)
    assert tx.once == 20 and pending == 0 and tx.dropped == 0


def test_counts_of_a_restarted_middle_device_add_up():
    net = Net()
    asg = chain(net, tf=10)
    c = net.devices["c"]
    assert net.run(5000, lambda: len(c.control.values()) >= 400)
    restart(net, "m", asg["m"])
    assert net.run(20000, lambda: len(c.control.values()) >= 1500)
    _exactly_once(c.control.values(), 1500)
    net.run(300)
    st = net.devices["m"].status()
    outs = [st[k] for k in st if type(st[k]) is dict and "pending" in st[k]]
    assert outs, st
    for o in outs:
        assert o["in"] == o["out"] + o["pending"] + o["dropped"], o


def test_receiver_drops_duplicates_and_counts_gaps_exactly():
    rx = Receiver()
    rx.announce(0, 9)
    assert rx.arrive(5) == (0, 0) and rx.expect == 5
    rx.announce(3, 9)                  # replay from 3: 3 and 4 are duplicates
    assert rx.arrive(4) == (2, 0) and rx.expect == 7 and rx.dups == 2
    rx.announce(4, 9)
    assert rx.arrive(2) == (2, 0) and rx.expect == 7 and rx.dups == 4
    rx.announce(12, 9)                 # 7..11 never came
    assert rx.arrive(3) == (0, 5) and rx.lost == 5 and rx.expect == 15


def test_receiver_of_a_new_run_starts_afresh_without_loss_or_duplicates():
    rx = Receiver()
    rx.announce(0, 1)
    rx.arrive(10)
    rx.checkpoint(10, None)
    assert rx.ack_due(0) and rx.ack() == {"ack": 10}
    rx.announce(0, 2)                  # the sender restarted: a new numbering
    assert rx.expect == 10             # nothing forgotten before data of the new run arrives
    assert rx.arrive(3) == (0, 0) and rx.expect == 3 and rx.lost == 0 and rx.dups == 0
    assert rx.runs == 2 and rx.done is None and not rx.ack_due(0)


def test_checkpoints_wait_for_downstream_acknowledgements():
    acked = {"o": 0}
    rx = Receiver()
    rx.announce(0, 1)
    rx.arrive(4)
    rx.checkpoint(4, {"o": [2, 8]})
    rx.arrive(4)
    rx.checkpoint(8, {"o": [5, 8]})
    assert not rx.settle(acked.get) and rx.done is None
    acked["o"] = 3
    assert rx.settle(acked.get) and rx.done == 4 and rx.done_mark == {"o": [2, 8]}
    assert rx.ack() == {"ack": 4, "mark": {"o": [2, 8]}}
    acked["o"] = 5
    assert rx.settle(acked.get) and rx.done == 8 and not rx.cps
    assert not rx.ack_due(64) and rx.ack_due(4)


def test_checkpoints_are_bounded_and_merge_into_later_ones():
    rx = Receiver()
    rx.announce(0, 1)
    for i in range(1, 200):
        rx.arrive(1)
        rx.checkpoint(i, {"o": [i, 3]})
    assert len(rx.cps) <= 32
    assert rx.settle({"o": 500}.get) and rx.done == 199


# -- real runtimes on a simulated network -------------------------------------------------
def _exactly_once(values, n):
    assert len(values) >= n, (len(values), values[-5:])
    # value i is i, for every i: compared one by one, without a second list as long as the first
    # (on MicroPython one block of that size, which a heap fragmented by earlier tests may lack)
    for i, v in enumerate(values):
        if v != i:
            raise AssertionError(_first_wrong(values))


def _first_wrong(values):
    for i in range(len(values)):
        if values[i] != i:
            return "value %d is %r (around: %r)" % (i, values[i], values[max(0, i - 3):i + 4])
    return "ok"


def test_chain_delivers_in_order_and_acknowledges():
    net = Net()
    chain(net)
    c = net.devices["c"]
    assert net.run(5000, lambda: len(c.control.values()) >= 2000)
    _exactly_once(c.control.values(), 2000)
    net.run(200)
    st = net.devices["a"].status()["o1"]
    assert st["unacked"] < 200 and st["acked"] > 1500, st     # the buffer is trimmed by acks


def test_link_cut_replays_exactly_once():
    net = Net()
    chain(net, tf=20)
    c = net.devices["c"]
    assert net.run(5000, lambda: len(c.control.values()) >= 300)
    net.cut("m")
    net.run(700)
    net.heal("m")
    assert net.run(10000, lambda: len(c.control.values()) >= 2500)
    _exactly_once(c.control.values(), 2500)
    a = net.devices["a"].status()["o1"]
    assert a["dropped"] == 0 and a["connects"] >= 2, a


def test_a_dial_that_finds_no_heap_even_to_set_its_next_try_is_made_again_by_the_next_value():
    """A pipe's dial finds no heap free (a MemoryError), and neither does the timer of its next
    try: the pipe then had no connection, no dial and no timer, and its values waited for ever
    (the buffer full, then dropped). Now the next value (or time frame) that comes to it dials
    again; every value arrives exactly once."""
    for tf in (0, 20):
        net = Net()
        chain(net, tf=tf)
        a = net.devices["a"]
        real_dial, real_later = a.dial, a.loop.call_later
        short = []

        def dial(*args):
            if not short:
                short.append("dial")
                raise MemoryError("memory allocation failed")
            return real_dial(*args)

        def call_later(ms, fn):
            if short == ["dial"]:      # the next try's timer, set by the dial that failed
                short.append("timer")
                raise MemoryError("memory allocation failed")
            return real_later(ms, fn)
        a.dial, a.loop.call_later = dial, call_later
        c = net.devices["c"]
        _run_through_memory_errors(net, lambda: len(c.control.values()) >= 2000)
        assert len(c.control.values()) >= 2000, (tf, short, a.status()["o1"], a.logs)
        assert short == ["dial", "timer"]
        _exactly_once(c.control.values(), 2000)
        assert a.status()["o1"]["dropped"] == 0


def test_a_source_whose_timer_finds_no_heap_is_set_going_again_by_its_pipe():
    """A source's next reading is due, but its timer finds no heap free (a MemoryError): the
    source had no timer left and read nothing more for the rest of the run. Now its pipe sets it
    going again (at its next acknowledgement or time frame); every value arrives once, in order."""
    for tf in (0, 20):
        net = Net()
        chain(net, tf=tf)
        a = net.devices["a"]
        src = a.runtime.sources[0]
        real_tick, real_later = src._tick, a.loop.call_later
        short = []

        def tick():
            real_tick()
        src._tick = tick      # the timer its finished tick sets calls this one

        def call_later(ms, fn):
            if fn is tick and not short and len(net.devices["c"].control.values()) >= 200:
                short.append(ms)
                raise MemoryError("memory allocation failed")
            return real_later(ms, fn)
        a.loop.call_later = call_later
        c = net.devices["c"]
        _run_through_memory_errors(net, lambda: len(c.control.values()) >= 2000)
        assert short and len(c.control.values()) >= 2000, (tf, short, a.status())
        _exactly_once(c.control.values(), 2000)


def test_middle_device_restart_loses_and_repeats_nothing():
    for steps in ([], [{"id": "w", "type": "window", "params": {"values": 4, "agg": "list"}}]):
        net = Net()
        asg = chain(net, middle_steps=steps, tf=10)
        c = net.devices["c"]

        def got():
            vals = c.control.values()
            if steps:
                vals = [v for w in vals for v in w]
            return vals
        assert net.run(5000, lambda: len(got()) >= 400)
        # values in flight on both sides of m, some of them inside its window
        restart(net, "m", asg["m"])
        assert net.run(20000, lambda: len(got()) >= 3000)
        _exactly_once(got(), 3000)
        if steps:
            assert all(len(w) == 4 for w in c.control.values())   # count windows regroup the same
        st = net.devices["c"].status()["i2"]
        assert st["lost"] == 0, st


def test_a_time_window_loses_no_input_across_a_restart_of_its_device():
    # A time window regroups its replayed inputs (they arrive faster than they were read), so
    # the restarted device's windows are not the dead one's: its pipe (or callback) must not take
    # the old numbering back, or the receiver drops new windows as ones it had (before: 200-300
    # inputs gone, counted nowhere). It starts a new run: the inputs of the windows sent since the
    # last acknowledgement arrive again (at-least-once), none is lost.
    steps = [{"id": "w", "type": "window", "params": {"time-frame": 100, "agg": "list"}}]
    for where in ("m", "c"):
        net = Net()
        asg = chain(net, middle_steps=steps if where == "m" else None, sink_steps=steps if where == "c" else None,
                    tf=10, confirm=True)
        ctl = net.devices["c"].control

        def got():
            return [v for w in ctl.values() for v in w]
        assert net.run(5000, lambda: len(got()) >= 400)
        net.run(37)                       # inside a window
        restart(net, where, asg[where])
        assert net.run(20000, lambda: len(got()) >= 3000)
        vals = got()
        assert set(vals) == set(range(max(vals) + 1)), sorted(set(range(max(vals) + 1)) - set(vals))[:10]
        again = len(vals) - len(set(vals))
        assert again <= 300, again    # the windows since the last acknowledgement, once more (none on a board: it acknowledges every 64)
        assert all(w == sorted(w) for w in ctl.values())
        assert net.devices["c"].status()["i2"]["lost"] == 0


def test_steps_that_emit_from_a_timer_lose_no_input_across_a_restart_of_their_device():
    # heartbeat and timeout emit from their timers (beats, markers): the replay after a restart
    # comes faster than the values were read, so it gets fewer of them, and the old numbering
    # would name other values: the receiver would drop new inputs as ones it had (before: inputs
    # gone with lost 0). Like a time window, such a step's pipe starts a new run (at-least-once).
    for step in ({"id": "h", "type": "heartbeat", "params": {"interval": 2}},
                 {"id": "t", "type": "timeout", "params": {"time": 3, "marker": -1}}):
        net = Net()
        asg = chain(net, middle_steps=[step], tf=10, rate=200, confirm=True)
        ctl = net.devices["c"].control

        def got():
            return [v for v in ctl.values() if v != -1]
        assert net.run(5000, lambda: len(set(got())) >= 100)
        net.run(7)
        restart(net, "m", asg["m"])
        assert net.run(20000, lambda: len(set(got())) >= 400), step
        vals = got()
        assert set(vals) == set(range(max(vals) + 1)), (step["type"], sorted(set(range(max(vals) + 1)) - set(vals))[:10])
        assert net.devices["c"].status()["i2"]["lost"] == 0


def test_restart_of_middle_device_twice_in_a_row_and_with_cuts():
    net = Net()
    asg = chain(net, tf=5)
    c = net.devices["c"]
    for k in range(3):
        assert net.run(5000, lambda: len(c.control.values()) >= 300 * (k + 1))
        restart(net, "m", asg["m"])
        net.run(37)
        net.cut("c")
        net.run(120)
        net.heal("c")
    assert net.run(20000, lambda: len(c.control.values()) >= 2000)
    _exactly_once(c.control.values(), 2000)


def test_redeploy_with_a_new_epoch_keeps_the_numbering():
    net = Net()
    asg = chain(net, tf=10)
    c = net.devices["c"]
    assert net.run(5000, lambda: len(c.control.values()) >= 500)
    for name in ("c", "m", "a"):
        a = dict(asg[name])
        a["epoch"] = 2
        net.devices[name].deploy(a)
    for name in ("c", "m", "a"):
        net.devices[name].start()
    assert net.run(10000, lambda: len(c.control.values()) >= 2000)
    # the source itself restarts with the new deployment (a counter from 0 again): what the
    # pipes must show is that every value of each deployment arrives once, in order
    vals = c.control.values()
    first = vals[:vals.index(0, 1)] if 0 in vals[1:] else vals
    assert first == list(range(len(first))) and len(first) >= 500
    st = net.devices["m"].status()["i1"]
    assert st["lost"] == 0


def test_overflow_beyond_the_buffer_is_counted_exactly_where_it_happens():
    net = Net()
    chain(net, tf=10, buffer=200, rate=1000)
    c = net.devices["c"]
    assert net.run(5000, lambda: len(c.control.values()) >= 300)
    net.cut("m")
    net.run(1000)             # about 1000 values while the buffer holds 200
    net.heal("m")
    assert net.run(10000, lambda: len(c.control.values()) >= 2500)
    vals = c.control.values()
    missing = vals[-1] + 1 - len(vals)
    assert vals == sorted(vals) and len(set(vals)) == len(vals)       # in order, no duplicates
    m_in = net.devices["m"].status()["i1"]
    a_out = net.devices["a"].status()["o1"]
    assert missing > 600 and m_in["lost"] == missing, (missing, m_in)
    assert a_out["evicted"] >= missing and a_out["in"] == a_out["out"] + a_out["pending"] + a_out["dropped"]
    assert any("values lost" in t for t in net.devices["m"].logs)
    assert any("dropped" in t for t in net.devices["a"].logs)


def test_an_ack_beyond_what_this_connection_sent_is_announced_as_a_jump():
    # a restarted sender that took its numbering back hears from the receiver that it already has
    # values this connection never carried: the next value sent is numbered after them
    tx = Sender(100, 4)
    tx.adopt(118, 4)
    for v in range(3):
        tx.add(v)
    tx.restart()
    assert tx.ack(120) == 2 and tx.jumped and tx.sent == 120
    assert tx.announce()[0] == 120 and tx.take(10) == [2]


class _Lcg:
    """Seeded and the same on both interpreters (no random module needed)."""

    def __init__(self, seed):
        self.x = seed * 7919 + 17

    def below(self, n):
        self.x = (self.x * 1103515245 + 12345) & 0x7FFFFFFF
        return (self.x >> 8) % n


def test_seeded_random_faults_lose_and_repeat_nothing():
    # link cuts, a frozen sink, restarts of the middle device, mixed at random moments; the
    # buffers hold everything (nothing is evicted), so every value arrives exactly once
    for seed in (1, 2, 3):
        rnd = _Lcg(seed)
        net = Net()
        steps = [{"id": "w", "type": "window", "params": {"values": 3, "agg": "list"}}] if seed % 2 else []
        asg = chain(net, middle_steps=steps, tf=rnd.below(3) * 10, count=3000)
        c = net.devices["c"]

        def got():
            vals = c.control.values()
            return [v for w in vals for v in w] if steps else vals
        faults = []
        for _ in range(8):
            net.run(rnd.below(400) + 1)
            kind = rnd.below(3)
            if kind == 0:
                who = "amc"[rnd.below(3)]
                net.cut(who)
                net.run(rnd.below(600) + 1)
                net.heal(who)
            elif kind == 1:
                net.freeze("c")
                net.run(rnd.below(600) + 1)
                net.thaw("c")
            else:
                restart(net, "m", asg["m"])
            faults.append(kind)
        assert net.run(60000, lambda: len(got()) >= 3000), (seed, faults, len(got()))
        _exactly_once(got(), 3000)
        assert len(got()) == 3000


def test_free_running_source_fills_a_time_frame_without_waiting_for_acks():
    # A batched pipe_out holds its time frame's values until the frame timer: that is no
    # back-pressure, so a free-running source keeps reading (bounded by the replay buffer)
    # instead of stopping after one burst until the next acknowledgement arrives.
    from sensormesh.device.runtime.free_running import BURST
    net = Net()
    # count bounds the source: the simulated network is infinitely fast, and a source that never
    # stopped would keep the simulated clock from moving on
    chain(net, tf=40, rate=0, buffer=10 * BURST, count=20 * BURST)
    a = net.devices["a"]
    net.run(30)   # before the first frame leaves: nothing was sent, nothing acknowledged
    st = a.status()["o1"]
    assert st["in"] >= 10 * BURST, st
    c = net.devices["c"]
    assert net.run(5000, lambda: c.status()["k"]["in"] >= 20 * BURST), c.status()
    assert c.status()["i2"]["lost"] == 0 and a.status()["o1"]["dropped"] == 0


def test_a_free_running_source_stops_at_a_full_buffer_and_its_frame_leaves_at_once():
    # A buffer that is no multiple of the source's burst: the source reads only what the buffer
    # still takes, so no unacknowledged value is pushed out (evicted) while the receiver is
    # frozen; and once the buffer is full nothing more can join the time frame, so it leaves at
    # once instead of waiting for its timer (with a receiver that holds acknowledgements until a
    # window of the whole buffer closes, that wait was paid for every window).
    from sensormesh.device.runtime.free_running import BURST
    for runs in (False, True):
        net = Net()
        cap = 4 * BURST + 10
        chain(net, tf=1000, rate=0, buffer=cap, count=40 * BURST, runs=runs)
        net.freeze("m")
        net.run(50)               # far less than the time frame
        st = net.devices["a"].status()["o1"]
        assert st["unacked"] == cap and st["out"] == cap and st["evicted"] == 0, st
        net.thaw("m")
        c = net.devices["c"]
        assert net.run(60000, lambda: c.status()["k"]["in"] >= 40 * BURST), c.status()
        net.run(300)              # the callback's last values leave on the delivery timer
        _exactly_once(c.control.values(), 40 * BURST)
        st = net.devices["a"].status()["o1"]
        assert st["evicted"] == 0 and st["dropped"] == 0, st


def test_a_source_reading_runs_delivers_every_value_once_in_order():
    # a sensor with get_many: the source reads runs and the pipe_out takes them as lists
    from sensormesh.device.runtime.free_running import BURST
    net = Net()
    chain(net, tf=10, rate=0, count=7 * BURST + 5, runs=True)
    c = net.devices["c"]
    n = 7 * BURST + 5
    assert net.run(5000, lambda: c.status()["k"]["in"] >= n), c.status()
    net.run(200)
    _exactly_once(c.control.values(), n)
    a = net.devices["a"].status()
    assert a["s"]["out"] == n and a["o1"]["in"] == n and a["o1"]["dropped"] == 0, a


def _watch(node, seen):
    """Record the control messages a pipe end receives (and still handle them)."""
    handle = node.on_message

    def on_message(conn, msg):
        if type(msg) is dict:
            seen.append(msg)
        handle(conn, msg)
    node.on_message = on_message


def test_a_half_full_buffer_gets_acknowledgements_at_once_through_the_chain():
    # a -> m (window of 10) -> c, a free-running source on a: when a's buffer is half full, a
    # asks for acknowledgements ({"ack-soon"}); m passes the request on to c, c acknowledges at
    # once and so does m once c's acknowledgement completes its checkpoints. Without the request
    # every half bufferful waited for c's 50 ms acknowledgement timer (20 of them here: 1 s).
    # An acknowledgement still never runs ahead of what reached the sink.
    from sensormesh.device.runtime.free_running import BURST
    net = Net()
    n = 40 * BURST
    chain(net, middle_steps=[{"id": "w", "type": "window", "params": {"values": 10, "agg": "max"}}],
          tf=10, rate=0, buffer=4 * BURST, count=n, runs=True)
    a, m, c = net.devices["a"], net.devices["m"], net.devices["c"]
    to_a = []
    to_m = []
    _watch(a.runtime.pipe_outs["e1"], to_a)
    _watch(m.runtime.pipe_ins["e1"], to_m)

    def sink_has_results():
        k = c.status()["k"]["in"]
        for msg in to_a:
            if "ack" in msg:
                assert msg["ack"] <= 10 * k, (msg, k)   # acknowledged only once it took effect
        return k >= n // 10
    assert net.run(5000, sink_has_results), c.status()
    assert net.loop.t < 100, net.loop.t      # 0 here: the simulated links take no time
    net.run(300)
    assert c.control.values() == [10 * i + 9 for i in range(n // 10)]
    asks = [msg for msg in to_m if "ack-soon" in msg]
    acks = [msg for msg in to_a if "ack" in msg]
    assert asks and len(asks) <= len(acks) + 1, (len(asks), len(acks))
    st = a.status()["o1"]
    assert st["dropped"] == 0 and st["evicted"] == 0 and st["acked"] == n, st


def test_store_and_forward_outlasts_the_memory_bound_and_loses_nothing():
    # the same outage as the overflow test, with 64 KB of spool on the sender: nothing is lost,
    # values come back oldest first, and the spool is empty once everything is acknowledged
    net = Net()
    chain(net, tf=10, buffer=200, rate=1000, spool=65536)
    c = net.devices["c"]
    assert net.run(5000, lambda: len(c.control.values()) >= 300)
    net.cut("m")
    net.run(1500)             # about 1500 values while memory holds 200
    a_out = net.devices["a"].status()["o1"]
    assert a_out["spooled"] > 1000 and a_out["spool"]["values"] > 1000 and a_out["evicted"] == 0, a_out
    net.heal("m")
    assert net.run(20000, lambda: len(c.control.values()) >= 4000)
    _exactly_once(c.control.values(), 4000)
    net.run(300)
    a_out = net.devices["a"].status()["o1"]
    assert a_out["evicted"] == 0 and a_out["spool"]["values"] == 0 and a_out["spool"]["bytes"] == 0, a_out
    assert net.devices["m"].status()["i1"]["lost"] == 0


def test_a_full_spool_drops_its_oldest_and_the_loss_is_counted_exactly():
    net = Net()
    chain(net, tf=10, buffer=100, rate=1000, spool=4000)   # a few hundred values of disk
    c = net.devices["c"]
    assert net.run(5000, lambda: len(c.control.values()) >= 300)
    net.cut("m")
    net.run(1500)
    net.heal("m")
    assert net.run(20000, lambda: len(c.control.values()) >= 2000)
    vals = c.control.values()
    missing = vals[-1] + 1 - len(vals)
    assert vals == sorted(vals) and len(set(vals)) == len(vals)
    m_in = net.devices["m"].status()["i1"]
    assert missing > 500 and m_in["lost"] == missing, (missing, m_in)


def _spool_outage(spool, fault):
    # a 1500-value outage on a sender with a 200-value buffer and a spool; fault(spool module,
    # a's pipe_out) runs 700 ms into it. Returns the sink's values and the statuses.
    from sensormesh.device.runtime import spool as spool_mod
    net = Net()
    chain(net, tf=10, buffer=200, rate=1000, spool=spool)
    a = net.devices["a"]
    c = net.devices["c"]
    assert net.run(5000, lambda: len(c.control.values()) >= 300)
    net.cut("m")
    net.run(700)
    undo = fault(spool_mod, a.runtime.pipe_outs["e1"])
    net.run(800)
    if undo:
        undo()
    net.heal("m")
    assert net.run(20000, lambda: len(c.control.values()) >= 3000), a.status()["o1"]
    vals = c.control.values()
    assert vals == sorted(vals) and len(set(vals)) == len(vals)
    return vals, a, net.devices["m"].status()["i1"]


def test_a_spool_that_cannot_be_written_keeps_the_device_running_and_counts_what_it_drops():
    # a full disk (ENOSPC) or a folder that is no longer writable: the values stay in memory, the
    # full buffer drops its oldest (counted as evicted, lost at the receiver), the device runs on
    for errno in (28, 13):
        def fault(mod, po):
            def refuse(name, mode="r"):
                if "w" in mode:
                    raise OSError(errno)
                return open(name, mode)
            mod.open = refuse

            def undo():
                del mod.open
            return undo
        vals, a, m_in = _spool_outage(65536, fault)
        missing = vals[-1] + 1 - len(vals)
        st = a.status()["o1"]
        assert missing > 300 and m_in["lost"] == missing and st["evicted"] >= missing, (missing, m_in, st)
        assert st["spool"]["errors"] > 0, st
        logs = [t for t in a.logs if "cannot write values" in t]
        assert logs and len(logs) <= 12 and "disk faults so far" in logs[-1], logs


def test_a_spool_segment_that_cannot_be_read_back_is_counted_lost_and_delivery_goes_on():
    import os

    def fault(mod, po):
        sp = po.tx.spool
        assert len(sp.segs) >= 2, sp.segs
        with open(sp.path + "/%d" % sp.segs[1][0], "w") as f:
            f.write('[12, [1, 2')          # cut short (a disk that filled, a crash)
        os.remove(sp.path + "/%d" % sp.segs[0][0])
        return None
    vals, a, m_in = _spool_outage(65536, fault)
    missing = vals[-1] + 1 - len(vals)
    st = a.status()["o1"]
    assert missing > 100 and m_in["lost"] == missing, (missing, m_in)
    assert st["spool"]["errors"] == 2 and st["spool"]["values"] == 0, st    # one per segment
    logs = [t for t in a.logs if "back" in t and "cannot read values" in t]
    assert len(logs) == 2, a.logs


def test_a_new_spool_counts_what_an_earlier_process_left_also_a_truncated_file():
    import os
    from pipekit import SPOOL_ROOT
    from sensormesh.device.runtime import spool as spool_mod
    where = spool_mod.folder("a", "e1", SPOOL_ROOT)
    spool_mod._makedirs(where)
    with open(where + "/0", "w") as f:
        f.write("[0, [1, 2, 3], null]")
    with open(where + "/3", "w") as f:
        f.write("[3, [4, 5")
    net = Net()
    chain(net, tf=10, buffer=200, rate=1000, spool=65536)
    a = net.devices["a"]
    assert net.run(5000, lambda: len(net.devices["c"].control.values()) >= 100)
    st = a.status()["o1"]["spool"]
    assert st["cleared"] == 3 and st["unreadable"] == 1, st
    logs = [t for t in a.logs if "earlier process left" in t]
    assert len(logs) == 1 and "cleared 3 values" in logs[0] and "1 files it could not read" in logs[0], a.logs
    assert os.listdir(where) == []


# -- the sink device restarted: each value once at the controller and in a csv file -------
def test_sink_device_restart_hands_each_value_to_the_controller_once():
    for steps in ([], [{"id": "w", "type": "window", "params": {"values": 4, "agg": "list"}}]):
        net = Net()
        asg = chain(net, tf=10, confirm=True, sink_steps=steps)
        ctl = net.devices["c"].control

        def got():
            vals = ctl.values()
            return [v for w in vals for v in w] if steps else vals
        assert net.run(5000, lambda: len(got()) >= 400)
        restart(net, "c", asg["c"])      # values confirmed by the controller, not yet acknowledged upstream
        assert net.run(20000, lambda: len(got()) >= 3000)
        _exactly_once(got(), 3000)
        # the restarted sink got its input again and numbered its callback as before: the
        # controller dropped the values it already had
        assert ctl.duplicates > 0, ctl.duplicates
        assert net.devices["c"].status()["i2"]["lost"] == 0
        assert net.devices["m"].status()["o2"]["resent"] > 0


def test_a_sink_with_no_heap_free_for_a_value_takes_it_again_and_loses_nothing():
    # A board's callback buffer may find no heap free for a value (a burst replayed while the
    # controller is slow): the value and the rest of its frame count as not received, are not
    # acknowledged, and the pipe's connection closes, so the sender sends them again. Before,
    # the frame's other values were counted as received and acknowledged: lost without a trace
    # but a traceback. With a step before the callback (clamp: every counter value), and without.
    for steps in ([], [{"id": "f", "type": "clamp", "params": {"min": 0}}]):
        net = Net()
        asg = chain(net, tf=10, confirm=True, sink_steps=steps)
        c = net.devices["c"]
        ctl = c.control

        def got():
            return ctl.values()
        assert net.run(5000, lambda: len(got()) >= 200)
        tx = c.runtime.deliveries["k"].tx
        real = tx.add
        fails = [3]          # the next three values offered find no heap free, one at a time

        def add(value):
            if fails[0] and net.loop.t % 3 == 0:
                fails[0] -= 1
                raise MemoryError("memory allocation failed, allocating 8192 bytes")
            real(value)
        tx.add = add
        assert net.run(20000, lambda: len(got()) >= 2000)
        assert fails[0] == 0
        _exactly_once(got(), 2000)
        assert ctl.duplicates == 0
        logs = [t for t in c.logs if "no heap free for value" in t]
        assert len(logs) == 3 and "taken again from there" in logs[0] and "MemoryError" not in logs[0], logs
        st = c.status()
        assert st["i2"]["lost"] == 0 and st["i2"]["in"] == st["k"]["in"], st
        assert net.devices["m"].status()["o2"]["resent"] > 0
        del asg


def test_a_window_whose_result_finds_no_heap_free_lets_its_device_acknowledge_again():
    # A window that closes while the heap has no block free for its result downstream raises
    # (the device's loop logs it). It must not stay held: a held step stops its device's
    # checkpoints, and with them every acknowledgement to its sender, for good.
    for step in ({"id": "w", "type": "window", "params": {"values": 4, "agg": "sum"}},
                 {"id": "d", "type": "debounce", "params": {"time": 1}}):
        net = Net()
        chain(net, tf=10, confirm=True, sink_steps=[step])
        c = net.devices["c"]
        m = net.devices["m"]
        assert net.run(5000, lambda: len(c.control.values()) >= 50)
        tx = c.runtime.deliveries["k"].tx
        real = tx.add
        fails = [1]

        def add(value):
            if fails[0]:
                fails[0] -= 1
                raise MemoryError("memory allocation failed, allocating 8192 bytes")
            real(value)
        tx.add = add
        raised = 0
        for _ in range(3):
            try:
                net.run(200)
            except MemoryError:    # (transport._guard logs it on a device)
                raised += 1
        assert raised == 1 and fails[0] == 0
        acked = m.status()["o2"]["acked"]
        assert net.run(5000, lambda: m.status()["o2"]["acked"] >= acked + 1000), (step, m.status()["o2"])
        assert c.runtime.holding <= 1


def test_an_ack_or_array_that_finds_no_heap_free_to_leave_loses_no_value_of_the_frame():
    # On a board with a window, the acknowledgement a checkpoint sends, or the array a window's
    # result goes out in, may find no heap free to be sealed. Neither is a value the device
    # failed to take: the acknowledgement goes later, the array's values wait in the replay
    # buffer. The rest of the frame being taken must still reach the steps (the MemoryError
    # unwound through the pipe_in and every later value of the frame was gone, uncounted:
    # pipe_in in 4809, window in 4258 on a board after a frozen receiver).
    net = Net()
    steps = [{"id": "w", "type": "window", "params": {"values": 4, "agg": "list"}}]
    chain(net, middle_steps=steps, tf=10)
    c = net.devices["c"]
    m = net.devices["m"]

    def got():
        return [v for w in c.control.values() for v in w]
    assert net.run(5000, lambda: len(got()) >= 200)
    fails = {"e1": [0, 6], "e2": [0, 6]}       # calls so far, failures still to come

    def failing(edge, conn, what=None):
        real = conn.send

        def send(msg):
            f = fails[edge]
            if what is not None and not what(msg):
                return real(msg)
            f[0] += 1
            if f[1] and f[0] % 3 == 0:
                f[1] -= 1
                raise MemoryError("memory allocation failed, allocating 320 bytes")
            real(msg)
        conn.send = send
    failing("e1", m.runtime.pipe_ins["e1"].conn)
    failing("e2", m.runtime.pipe_outs["e2"].conn)
    _run_through_memory_errors(net, lambda: len(got()) >= 3000)
    assert fails["e1"][1] == 0 and fails["e2"][1] == 0, fails
    _exactly_once(got(), 3000)
    st = m.status()
    assert st["i1"]["lost"] == 0 and st["i1"]["in"] - st["w"]["in"] < 4 * 2, st

    # the same, each where it happens while a frame is being taken: an acknowledgement due
    # at once (the sender asked for it soon), an array sent as the window's result comes (no
    # time frame)
    net = Net()
    chain(net, middle_steps=steps, tf=10, buffer=64)
    c = net.devices["c"]
    m = net.devices["m"]
    po = m.runtime.pipe_outs["e2"]
    po.timer.cancel()
    po.timer = None
    po.tf = 0                # m sends each result as it comes; a's arrays hold 10 ms of values
    assert net.run(5000, lambda: len(got()) >= 200)
    fails = {"e1": [0, 6], "e2": [0, 6]}
    failing("e1", m.runtime.pipe_ins["e1"].conn, lambda msg: type(msg) is dict and "ack" in msg)
    failing("e2", m.runtime.pipe_outs["e2"].conn, lambda msg: type(msg) is list)
    _run_through_memory_errors(net, lambda: len(got()) >= 3000)
    assert fails["e1"][1] == 0 and fails["e2"][1] == 0, fails
    _exactly_once(got(), 3000)
    st = m.status()
    assert st["i1"]["lost"] == 0 and st["i1"]["in"] - st["w"]["in"] < 4 * 2, st

    # an acknowledgement due in the middle of a frame, on a sink device with a window
    net = Net()
    chain(net, tf=10, buffer=64, sink_steps=steps)
    c = net.devices["c"]
    assert net.run(5000, lambda: len(got()) >= 200)
    fails = {"e2": [0, 6]}
    failing("e2", c.runtime.pipe_ins["e2"].conn, lambda msg: type(msg) is dict and "ack" in msg)
    _run_through_memory_errors(net, lambda: len(got()) >= 3000)
    assert fails["e2"][1] == 0, fails
    _exactly_once(got(), 3000)
    st = c.status()
    assert st["i2"]["lost"] == 0 and st["i2"]["in"] - st["w"]["in"] < 4 * 2, st


def _run_through_memory_errors(net, until):
    for _ in range(40):
        try:
            if net.run(20000, until):
                return
        except MemoryError:     # (a device's loop logs it)
            pass


def test_a_backlog_replayed_on_a_new_connection_comes_in_arrays_a_board_decodes():
    # After a cut, the sender replays its backlog. Until the receiver says how many values an
    # array may hold ({"frame-values": N}: a board says so at once) or acknowledges, arrays hold
    # at most FIRST_FRAME_VALUES (a board's own limit); a receiver that said N gets at most N
    # for good; one that acknowledged without saying gets the sender's own limit.
    from sensormesh.device.runtime import pipe_in_links
    from sensormesh.device.codec import FIRST_FRAME_VALUES, MAX_FRAME_VALUES
    for says in (None, 100):
        old = pipe_in_links.MICROPYTHON, pipe_in_links.MAX_FRAME_VALUES
        if says:                     # the receiver is a board that decodes 100 values an array
            pipe_in_links.MICROPYTHON, pipe_in_links.MAX_FRAME_VALUES = True, says
        try:
            net = Net()
            chain(net, tf=10)
            c = net.devices["c"]
            assert net.run(5000, lambda: len(c.control.values()) >= 200)
            pi = c.runtime.pipe_ins["e2"]
            sizes = []
            real = pi.on_message

            def on_message(conn, msg):
                if type(msg) is list:
                    sizes.append(len(msg))
                real(conn, msg)
            pi.on_message = on_message
            net.cut("c")
            net.run(2500)                # the backlog grows on m
            if not says:
                net.freeze("c")          # m dials again and replays before c can say anything
            net.heal("c")
            net.run(300)
            net.thaw("c")
            got = len(c.control.values())
            assert net.run(10000, lambda: len(c.control.values()) >= got + 1500)
            big = [n for n in sizes if n > 10]      # (a time frame of 10 ms holds 10)
            assert len(big) >= 3, sizes[:20]
            if says:
                assert max(sizes) <= says, sizes
            else:
                assert big[0] == big[1] == FIRST_FRAME_VALUES, sizes[:20]
            vals = c.control.values()
            assert vals == sorted(set(vals)), "a value twice or out of order"
            if MAX_FRAME_VALUES > 1000:          # (a board's own buffer of 1000 evicts in 2.5 s)
                _exactly_once(vals, got + 1500)
        finally:
            pipe_in_links.MICROPYTHON, pipe_in_links.MAX_FRAME_VALUES = old


def test_a_controller_that_confirms_holds_acknowledgements_until_it_has_the_values():
    net = Net()
    chain(net, tf=10, confirm=True)
    c = net.devices["c"]
    assert net.run(5000, lambda: len(c.control.values()) >= 300)
    c.control.dev = None                      # the controller stops answering (its confirmations stop)
    c.control.confirm = False
    net.run(500)
    st = net.devices["m"].status()["o2"]
    assert st["unacked"] >= 400, st           # m keeps what the controller has not confirmed


def _csv_rows(path):
    with open(path) as f:
        return [int(x) for x in f.read().split("\n") if x and x != "value"]


def _remove(path):
    import os
    try:
        os.remove(path)
    except OSError:
        pass


def test_sink_device_restart_writes_each_value_once_into_a_csv_file():
    import random
    # a name of this run's own: two runs of the suite at once must not share the file
    path = "/tmp/sensormesh-test-replay-sink-%d.csv" % random.getrandbits(30)
    _remove(path)
    try:
        net = Net()
        asg = chain(net, tf=10)
        asg["c"]["steps"].append({"id": "f", "type": "csv", "params": {"path": path}, "inputs": ["i2"]})
        c = net.devices["c"]
        c.deploy(asg["c"])
        c.start()
        assert net.run(5000, lambda: c.status()["f"]["in"] >= 500)
        # rows reach the file before their acknowledgement reaches m (a full file buffer does that)
        c.runtime.nodes["f"].f.flush()
        restart(net, "c", asg["c"])
        assert net.run(20000, lambda: net.devices["c"].status()["f"]["in"] >= 2500)
        c = net.devices["c"]
        skipped = c.status()["f"].get("skipped", 0)
        c.runtime.shutdown()
        rows = _csv_rows(path)
        assert rows[:2500] == list(range(2500)), _first_wrong(rows)
        assert rows == list(range(len(rows)))
        assert skipped > 0         # the replay brought rows the file had: they were not written again
    finally:
        _remove(path)


def test_csv_skips_rows_the_file_has_and_completes_a_row_cut_short():
    from sensormesh.device.steps.make import build
    path = "/tmp/sensormesh-test-replay-cut.csv"
    _remove(path)

    class Ctx:
        def log(self, text):
            pass
    try:
        spec = {"id": "f", "type": "csv", "params": {"path": path, "columns": ["n", "x"]}}
        f = build(spec, Ctx())
        for i in range(5):
            f.put({"n": i, "x": "a,b"})
        f.commit()
        mark = f.position()[0]                # what an acknowledgement would carry upstream
        for i in range(5, 9):
            f.put({"n": i, "x": "a,b"})
        f.commit()
        f.f.write(b"9,\"a")                   # the process died in the middle of row 9
        f.f.flush()
        f.f = None
        g = build(spec, Ctx())                # the restarted device
        assert g.fresh()
        g.adopt(mark, 0)
        for i in range(5, 12):                # the upstream replays from its acknowledgement
            g.put({"n": i, "x": "a,b"})
        g.close()
        with open(path) as fh:
            lines = fh.read().split("\n")
        assert lines[0] == "n,x" and lines[-1] == ""
        assert lines[1:-1] == ['%d,"a,b"' % i for i in range(12)], lines
        assert g.stats()["skipped"] == 4
    finally:
        _remove(path)


def _redeploy(net, asg, epoch):
    """What the supervisor does when a device is back: stop keeping the pipes, deploy a new epoch."""
    for name in ("c", "m", "a"):
        net.devices[name].runtime.handler("stop")(net.devices[name].control, {"keep": True})
    for name in ("c", "m", "a"):
        a = dict(asg[name])
        a["epoch"] = epoch
        net.devices[name].deploy(a)
    for name in ("c", "m", "a"):
        net.devices[name].start()


def test_counts_of_a_pipe_carried_over_a_redeployment_add_up():
    # values waiting unsent when a redeployment keeps the edge leave under the new deployment:
    # they count in its `in` as well as its `out` (out was larger than in, in = out + pending +
    # dropped did not hold, as after `sensormesh up` redeployed around a device that failed)
    net = Net()
    asg = chain(net, tf=10)
    c = net.devices["c"]
    assert net.run(5000, lambda: len(c.control.values()) >= 300)
    net.cut("m")
    net.run(300)
    assert net.devices["a"].status()["o1"]["pending"] > 50
    _redeploy(net, asg, 2)
    net.heal("m")
    net.run(1000)
    for name, sid in (("a", "o1"), ("m", "o2")):
        st = net.devices[name].status()[sid]
        assert st["in"] == st["out"] + st["pending"] + st["dropped"], (name, st)


def test_a_restarted_device_redeployed_before_its_first_value_still_takes_its_numbering_back():
    # the supervisor may deploy a new epoch to a restarted device (twice, even) before its input
    # says where it stands: the pipes and callbacks carried over numbered nothing yet, so the
    # mark that arrives then still hands their numbering back
    for who in ("m", "c"):
        net = Net()
        asg = chain(net, tf=10, confirm=True, count=3000)
        ctl = net.devices["c"].control
        assert net.run(5000, lambda: len(ctl.values()) >= 400)
        restart(net, who, asg[who])
        net.run(40)
        _redeploy(net, asg, 2)
        net.run(5)
        _redeploy(net, asg, 3)
        assert net.run(30000, lambda: len(ctl.values()) >= 3000)
        vals = ctl.values()
        assert vals == list(range(len(vals))), (who, _first_wrong(vals))


def _open_conns(net, a, b):
    return [c for c in net.conns if c.name == a and c.peer is not None and c.peer.name == b and not c.closed]


def _flowing():
    """a -> m -> c with values at c; returns net, a's pipe to m, c."""
    net = Net()
    chain(net, tf=10)
    c = net.devices["c"]
    assert net.run(5000, lambda: len(c.control.values()) >= 300)
    return net, net.devices["a"].runtime.pipe_outs["e1"], c


def test_a_late_close_of_an_old_connection_does_not_make_a_second_one():
    # a transport may report the end of an old connection while the pipe already dials anew:
    # the pipe must keep one connection per edge, or the receiver counts two streams as one
    net, o1, c = _flowing()
    old = o1.conn
    net.cut("m")
    net.heal("m")
    assert net.run(5000, lambda: o1.dialing is not None)     # the redial is on its way
    o1.on_close(old, "reported late")
    assert net.run(20000, lambda: len(c.control.values()) >= 2000)
    _exactly_once(c.control.values(), 2000)
    assert len(_open_conns(net, "a", "m")) == 1, _open_conns(net, "a", "m")


def test_a_new_connection_of_an_edge_replaces_the_old_one_at_the_receiver():
    # values still coming on a replaced connection are not counted in the new one's numbering
    net, o1, c = _flowing()
    a, m = net.devices["a"], net.devices["m"]
    old = o1.conn
    seq, run = o1.tx.announce()[:2]
    late = net.dial(a, "m", o1, {"pipe": {"edge": "e1", "epoch": 1, "from": "a", "seq": seq, "run": run}})
    net.pump()
    assert old.closed and m.runtime.pipe_ins["e1"].conn is late.peer
    old.peer.protocol.on_message(old.peer, [-1, -2, -3])     # arrives after the replacement
    assert net.run(20000, lambda: len(c.control.values()) >= 2000)
    _exactly_once(c.control.values(), 2000)


def test_a_pipe_stopped_while_it_dials_never_uses_that_connection():
    net, o1, c = _flowing()
    net.cut("m")
    net.heal("m")
    assert net.run(5000, lambda: o1.dialing is not None)
    dialing = o1.dialing
    o1.close(keep=True)             # a redeployment replaces this pipe while it dials
    assert dialing.closed
    net.run(100)
    assert o1.conn is None and not _open_conns(net, "a", "m")


def test_a_heap_running_low_brings_the_buffer_bound_down_and_nothing_goes_silently():
    # A board's replay buffer is bounded by its heap too (pipes.heap_check): when the free heap
    # falls below the reserve while the receiver does not acknowledge, the bound comes down to
    # what the buffer holds (logged, shown in the stats) instead of the device running out of
    # memory. Then a full buffer does what it always does: a rated source's oldest values leave
    # it, counted; a free-running source waits and loses nothing. The free heap is simulated.
    from sensormesh.device.runtime import pipes
    from sensormesh.device.runtime.free_running import BURST
    free = [1 << 30]
    old = pipes._mem_free, pipes._collect
    pipes._mem_free = lambda: free[0]
    pipes._collect = lambda: None
    try:
        # a rated source while the receiver is stopped
        net = Net()
        chain(net, tf=10, rate=1000)
        c = net.devices["c"]
        a = net.devices["a"]
        assert net.run(5000, lambda: len(c.control.values()) >= 200)
        net.freeze("m")
        net.run(100)              # the buffer grows while the heap is roomy
        st = a.status()["o1"]
        assert st["buffer"] == pipes.DEFAULT_BUFFER and st["evicted"] == 0, st
        held = st["unacked"]
        free[0] = pipes.HEAP_RESERVE - 1          # the heap runs low
        net.run(400)
        st = a.status()["o1"]
        assert held <= st["buffer"] <= held + pipes.HEAP_CHECK and st["unacked"] == st["buffer"], (held, st)
        assert any("of heap free: its replay buffer holds at most" in t for t in a.logs), a.logs
        assert st["evicted"] > 0 and st["in"] == st["out"] + st["pending"] + st["dropped"], st
        free[0] = 1 << 30
        net.thaw("m")
        got = len(c.control.values())
        assert net.run(10000, lambda: len(c.control.values()) >= got + 500)
        vals = c.control.values()
        assert vals == sorted(vals) and len(set(vals)) == len(vals)
        assert net.devices["m"].status()["i1"]["lost"] == vals[-1] + 1 - len(vals)
        # the heap has room again: the next acknowledgement brings the configured bound back
        assert net.run(5000, lambda: a.status()["o1"]["buffer"] == pipes.DEFAULT_BUFFER), a.status()["o1"]
        assert any("of heap free again: its replay buffer holds up to %d values" % pipes.DEFAULT_BUFFER in t
                   for t in a.logs), a.logs

        # a free-running source on a device whose heap is low from the start: it waits for
        # acknowledgements at the lowered bound, and every value arrives once, in order
        free[0] = pipes.HEAP_RESERVE - 1
        net = Net()
        n = 40 * BURST
        chain(net, tf=10, rate=0, count=n)
        c = net.devices["c"]
        assert net.run(60000, lambda: c.status()["k"]["in"] >= n), c.status()
        net.run(300)
        _exactly_once(c.control.values(), n)
        st = net.devices["a"].status()["o1"]
        assert st["buffer"] <= pipes.HEAP_CHECK + BURST and st["evicted"] == 0 and st["dropped"] == 0, st
    finally:
        pipes._mem_free, pipes._collect = old


def test_a_confirming_subscriber_gets_again_only_what_was_sent_unconfirmed():
    """delivery.subscribed with acks: a callback's values sent but not yet confirmed go again
    (the sender restarts from its base); a delivery that sent nothing (a new deployment's) is
    left as it is, without running the sender's restart (replay_links.py, not loaded for it)."""
    from sensormesh.device.runtime import delivery, replay_links

    class Rt:
        confirmed = False
        deliver_timer = 1        # (no timer: the test sends nothing)

        def outputs_acked(self):
            pass

    class Session:
        confirms = False

    restarts = []

    def restart(tx):             # Sender.restart is replay_links.py's, found per call (Rarely)
        restarts.append(tx)
        return replay_links.restart(tx)
    rt = Rt()
    rt.subscribers = []
    fresh, used = delivery.Delivery(rt, "a"), delivery.Delivery(rt, "b")
    for v in range(5):
        used.tx.add(v)
    used.tx.sent = 3                              # 3 sent, none confirmed yet
    rt.deliveries = {"a": fresh, "b": used}
    Sender.restart = restart
    try:
        delivery.subscribed(rt, Session(), {"acks": True})
    finally:
        del Sender.restart
    assert restarts == [used.tx], restarts
    assert used.tx.sent == used.tx.base == 0 and fresh.tx.sent == 0
    assert rt.confirmed and fresh.confirmed and used.confirmed


class _FakeTimer:
    def cancel(self):
        pass


class _FakeLoop:
    def __init__(self):
        self.timers = []

    def call_later(self, ms, fn):
        self.timers.append((ms, fn))
        return _FakeTimer()


class _FakeConn:
    """A subscriber's connection: what it was sent (as the controller reads it), and the calls
    of send that find no heap free (their numbers in `fail`)."""
    closed = False

    def __init__(self, fail=()):
        self.got = []
        self.calls = 0
        self.fail = fail

    def send(self, msg):
        from sensormesh.device import codec
        self.calls += 1
        if self.calls in self.fail:
            raise MemoryError("memory allocation failed, allocating 4096 bytes")
        self.got.append(codec.loads(codec.dumps(msg)))


def _delivering(conn):
    """A runtime with one callback step "k" and one subscribed controller that does not confirm."""
    from sensormesh.device.runtime import delivery

    class Session:
        confirms = False

    class Rt:
        confirmed = False
        epoch = 1
        deliver_timer = None
        lost_deliveries = 0

        def outputs_acked(self):
            pass

        def log(self, text):
            self.logs.append(text)

    rt = Rt()
    rt.logs = []
    rt.loop = _FakeLoop()
    session = Session()
    session.conn = conn
    rt.subscribers = [session]
    d = delivery.Delivery(rt, "k")
    rt.deliveries = {"k": d}
    return rt, d


def _delivered(conn):
    """The values the controller got, checking that each message's numbers follow the last."""
    got, seqs = [], []
    for m in conn.got:
        body = m["deliver"]
        seqs.append((body["seq"], len(body["values"])))
        got.extend(body["values"])
    return got, seqs


def test_a_delivery_that_finds_no_heap_free_to_send_keeps_its_values_and_sends_them_later():
    """A board may find no heap free for a deliver message (its JSON, its sealing on a keyed
    link) while the controller does not confirm. The values of that message and of every later
    one stay buffered and leave with the next timer, in order, each once; nothing raises into
    the caller (a pipe's input, which would close its connection). Before, the values of the
    message that failed counted as sent and were never delivered."""
    from sensormesh.device.runtime import delivery
    conn = _FakeConn(fail=(2, 3))   # the second message finds no heap free, and so does its first retry
    rt, d = _delivering(conn)
    n = 900             # (within a board's buffer: MAX_UNDELIVERED)
    for v in range(n):
        d.tx.add(v + 0.5)
    delivery.send(rt)
    assert len(conn.got) == 1 and len(rt.loop.timers) == 1 and rt.loop.timers[0][0] == delivery.DELIVER_MS
    first = conn.got[0]["deliver"]
    assert first["seq"] == 0 and d.tx.sent == len(first["values"]) < n
    for _ in range(3):           # the timers: one that fails again, then one that sends the rest
        ms, fn = rt.loop.timers.pop()
        fn()
        if not rt.loop.timers:
            break
    assert not rt.loop.timers and conn.calls > 3
    got, seqs = _delivered(conn)
    assert [s for s, _ in seqs] == [sum(k for _, k in seqs[:i]) for i in range(len(seqs))], seqs
    assert got == [v + 0.5 for v in range(n)]
    assert d.tx.unsent() == 0 and d.tx.base == n      # nobody confirms: sent is taken
    assert rt.lost_deliveries == 0


def test_a_callback_value_json_cannot_carry_is_left_out_counted_and_the_rest_delivered():
    """A callback value that is NaN or infinity (a user step's division by zero) cannot be
    sent as JSON: that value alone is left out, counted in lost_deliveries and logged (the 1st,
    2nd, 4th... time), and every other value reaches the controller with its own number.
    Before, every value waiting with it was skipped, and none of them was counted."""
    from sensormesh.device.runtime import delivery
    conn = _FakeConn()
    rt, d = _delivering(conn)
    n = 300
    bad = set(range(7, n, 10))        # 30 values that JSON cannot carry
    for v in range(n):
        d.tx.add(float("nan") if v in bad else v + 0.5)
    delivery.send(rt)
    got, seqs = _delivered(conn)
    assert got == [v + 0.5 for v in range(n) if v not in bad]
    numbered = []
    for seq, k in seqs:
        numbered.extend(range(seq, seq + k))
    assert numbered == [v for v in range(n) if v not in bad]      # each value with its own number
    assert rt.lost_deliveries == len(bad) and d.tx.unsent() == 0
    assert len(rt.logs) == 5, rt.logs                  # at 1, 2, 4, 8 and 16 lost: no flood
    assert "1 callback value(s) of k not delivered (1 so far)" in rt.logs[0], rt.logs[0]
    assert "JSON" in rt.logs[0] or "NaN" in rt.logs[0], rt.logs[0]


def test_a_board_builds_the_json_of_a_few_values_at_a_time_however_many_wait():
    """Sending a backlog of callback values builds the JSON of at most DELIVER_CHUNK values at
    once (a board needs a block that large free in one piece), learns how many fit in one
    message, and sends every value once, in order."""
    from sensormesh.device import codec
    from sensormesh.device.runtime import delivery
    conn = _FakeConn()
    rt, d = _delivering(conn)
    n = 900
    for v in range(n):
        d.tx.add(48.14999999999999 + v / 7)
    sizes = []
    real = codec.dumps

    def dumps(msg):
        if type(msg) is dict and "deliver" in msg:
            sizes.append(len(msg["deliver"]["values"]))
        return real(msg)
    codec.dumps = dumps
    try:
        delivery.send(rt)
    finally:
        codec.dumps = real
    got, seqs = _delivered(conn)
    assert got == [48.14999999999999 + v / 7 for v in range(n)]
    assert max(sizes) <= delivery.DELIVER_CHUNK, max(sizes)
    # once learnt, a message's values are measured once and sent: few JSON texts per message
    assert len(sizes) <= 3 * len(seqs), (len(sizes), len(seqs))


def test_an_array_that_finds_no_heap_free_to_be_sealed_leaves_with_the_next_one():
    # A board's pipe_out may find no heap free to seal an array (a keyed link's token, made while
    # the heap is full): the send raises (the device's loop logs it) and its values must not
    # count as sent. Before, they did: the receiver numbered the next array's values as theirs,
    # acknowledged them, and they were lost with no count anywhere.
    net = Net()
    chain(net, tf=10)
    c = net.devices["c"]
    assert net.run(5000, lambda: len(c.control.values()) >= 200)
    po = list(net.devices["a"].runtime.pipe_outs.values())[0]
    conn = po.conn
    real = conn.send
    fails = [2]

    def send(msg):
        if fails[0] and type(msg) is list:
            fails[0] -= 1
            raise MemoryError("memory allocation failed, allocating 256 bytes")
        real(msg)
    conn.send = send
    raised = 0
    for _ in range(10):
        try:
            net.run(100)
        except MemoryError:    # (transport._guard logs it on a device)
            raised += 1
    assert raised == 2 and fails[0] == 0
    assert net.run(20000, lambda: len(c.control.values()) >= 2000)
    _exactly_once(c.control.values(), 2000)
    st = net.devices["a"].status()["o1"]
    assert st["dropped"] == 0 and st["connects"] == 1, st
    assert st["out"] == st["seq"] - st["pending"], st


def test_a_pipe_with_no_heap_to_say_why_its_array_waits_still_takes_the_value():
    # The array a window's result goes out in finds no heap to be sealed, and neither does the
    # pipe's dict to take its last_error (set the first time then): the value is in the replay
    # buffer all the same, and nothing raises into the step that emitted it (before, that
    # MemoryError unwound through the window's timer).
    from sensormesh.device.runtime import pipes
    from sensormesh.device.compat import MICROPYTHON
    if MICROPYTHON:
        return      # (a class whose attribute store fails: CPython's __setattr__ shows it)

    class Full(pipes.PipeOut):
        def __setattr__(self, name, value):
            if name == "last_error":
                raise MemoryError("memory allocation failed, allocating 464 bytes")
            object.__setattr__(self, name, value)

        def _send(self):
            raise MemoryError("memory allocation failed, allocating 320 bytes")

    net = Net()
    chain(net, tf=0)
    po = net.devices["a"].runtime.pipe_outs["e1"]
    assert net.run(5000, lambda: po.conn is not None and not po.conn.connecting)
    po.__class__ = Full
    held = len(po.tx.buf)
    po.push(42.5)
    assert len(po.tx.buf) == held + 1 and po.tx.buf[-1] == 42.5
    assert getattr(po, "last_error", None) is None
