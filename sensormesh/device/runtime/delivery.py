# Callback-sink values on their way to the controller, numbered and confirmed like a pipe.
#
# Each callback step has one Delivery: a replay.Sender whose values leave in
#   {"deliver": {"step", "epoch", "values", "seq": S, "run": R}}   (values S, S+1, ... of run R)
# A controller that confirms (it said {"acks": true} in deploy or subscribe) answers
#   {"delivered": {"step", "seq": N, "run": R}}      every value before N has been taken
# and drops what it already had by (device, step, run, seq) (controller/deliveries.py).
# The pipe_in feeding the callback acknowledges upstream only values the controller confirmed
# (checkpoint marks name the callback as "@<step id>"), so a sink device that restarts gets its
# unconfirmed input replayed, takes the callback's numbering back from the mark, and the
# controller drops what it had already: exactly once at the controller (docs/reliability.md).
# While no confirming controller is subscribed, values count as taken once queued (as for the
# original design's deliveries): they wait here, at most `cap`, the oldest dropped and counted.
#
# The runtime's side of it is here too (functions of the Runtime `rt`): batching values for the
# subscribed controllers, their confirmations, and the csv outlets' commits. A device loads this
# module only while it runs a callback or csv sink (or when a controller subscribes). What they do
# only now and then (the last confirming controller going, taking a numbering over, log lines,
# values that cannot be delivered) is delivery_links.py's, loaded per call: a board keeps what
# runs per value and per batch, and the subscription (a deployment's last stage).
from sensormesh.device import codec
from sensormesh.device.compat import MICROPYTHON
from sensormesh.device.runtime.replay import Sender, new_run
from sensormesh.device.schedule import sparse
from sensormesh.device.steps import Rarely, rare_call

# Callback-sink values wait at most this long before they leave for the controller.
DELIVER_MS = 50
MAX_UNDELIVERED = 1000 if MICROPYTHON else 200000
# Undelivered values of one callback that leave at once instead of waiting for the timer.
DELIVER_BURST = 256 if MICROPYTHON else 8192
# Largest JSON of one deliver message; more values leave in several. Control messages are not
# split, and each must fit every link on its way: a keyed link wraps at most 3 KB at once on
# MicroPython (12 KB on CPython), and each gateway relaying it adds about a third.
DELIVER_MAX = 1536 if MICROPYTHON else 4096
# Values one deliver message takes at most before its JSON is built (and split when larger than
# DELIVER_MAX): a board builds the JSON of at most 128 values at a time (64 at first, then as
# many as fitted in one message), not of every value waiting.
DELIVER_CHUNK = 128 if MICROPYTHON else 2048
# what deliveries do only now and then (a name every board has: a caller needs no new one)
RARE_IN = "sensormesh.device.runtime.delivery_links"


class Delivery(Rarely):
    RARE_IN = RARE_IN
    RARE = ["fresh", "adopt", "take_over"]
    fed_by = None       # the pipe_in that alone feeds the callback (it may adopt marks)
    relay = False       # never takes a numbering back after evictions upstream
    confirmed = False   # a confirming subscriber is live (set by the runtime)
    logged = 0          # the drops logged so far
    per = DELIVER_CHUNK // 2   # values one deliver message takes at most (messages learns it)

    def __init__(self, rt, sid, cap=MAX_UNDELIVERED, run=None):
        self.rt = rt
        self.sid = sid
        self.edge = "@" + sid     # its name in checkpoint marks (never an edge id: those have no @)
        self.tx = Sender(cap, new_run() if run is None else run)

    def position(self):
        return [self.tx.next_seq(), self.tx.run]

    def deliver(self, sid, value):
        """A value of the callback step (it calls this as ctx.deliver: deploy binds it)."""
        rt = self.rt
        tx = self.tx
        tx.add(value)
        if tx.dropped != self.logged:
            self.logged = tx.dropped
            if sparse(tx.dropped):
                rare_call(RARE_IN, "dropped", self, tx.dropped)
        if tx.unsent() >= DELIVER_BURST and live(rt):
            # a burst (a replay, a backlog) outran the delivery timer: deliver now
            send(rt)
        elif getattr(rt, "deliver_timer", None) is None:    # (set only here: Runtime's notes)
            later(rt, DELIVER_MS)

    def acked(self):
        tx = self.tx
        return tx.base if self.confirmed else tx.next_seq()

    def messages(self, epoch, dumps, limit):
        """What leaves for the next values not sent yet (as many as fitted in one message last
        time, at most DELIVER_CHUNK), in their order: deliver messages, each within `limit`
        bytes of JSON (unless one value is larger), and (seq, error) for each value JSON cannot
        carry (NaN, infinity), which is left out. The values count as sent."""
        tx = self.tx
        first = tx.sent
        per = self.per
        vals = tx.take(per)
        out = []
        if vals:
            n = _split(out, self.sid, epoch, tx.run, first, vals, dumps, limit)
            # values per message learnt from these: the next take is seldom split (its JSON
            # built once to measure it and once to send it)
            if len(out) > 1:
                self.per = len(vals) // len(out) or 1
            elif len(vals) == per and n * 2 <= limit and per < DELIVER_CHUNK:
                self.per = min(DELIVER_CHUNK, per * 2)
        return out


def _split(out, sid, epoch, run, first, vals, dumps, limit):
    # appends to out the messages (or (seq, error)) of vals; the size of their JSON at once
    msg = {"deliver": {"step": sid, "epoch": epoch, "values": vals, "seq": first, "run": run}}
    try:
        n = len(dumps(msg))
    except codec.ProtocolError as e:      # a value JSON cannot carry: halve until it stands alone
        if len(vals) < 2:
            out.append((first, e))
            return 0
        n = 2 * limit
    if n <= limit or len(vals) < 2:
        out.append(msg)
        return n
    msg = None
    k = n // limit + 1
    step = (len(vals) + k - 1) // k
    for i in range(0, len(vals), step):
        _split(out, sid, epoch, run, first + i, vals[i:i + step], dumps, limit)
    return n


def deliver(rt, sid, value):
    """ctx.deliver of the runtime: a value of callback step sid."""
    d = rt.deliveries.get(sid)
    if d is None:     # a callback outside the deployment (tests): its Delivery now
        d = rt.deliveries[sid] = Delivery(rt, sid)
    d.deliver(sid, value)


def live(rt):
    """The subscribers whose sessions are open; notes whether one of them confirms
    (delivery_links.confirming when that changed)."""
    subs = [s for s in rt.subscribers if not s.conn.closed]
    rt.subscribers = subs
    confirmed = False
    for s in subs:
        if getattr(s, "confirms", False):
            confirmed = True
    if confirmed != rt.confirmed:
        rare_call(RARE_IN, "confirming", rt, confirmed)
    return subs


def later(rt, ms):
    """send(rt) in ms (the delivery timer)."""
    rt.deliver_timer = rt.loop.call_later(ms, lambda: send(rt))


def deliver_soon(rt):
    """Acknowledgements wait for the controller to confirm callback values: what waits for
    the delivery timer leaves in this loop turn instead (one message per incoming array,
    not one per 50 ms)."""
    if getattr(rt, "deliver_timer", None) is not None and not getattr(rt, "deliver_fast", False):
        rt.deliver_timer.cancel()
        rt.deliver_fast = True
        later(rt, 0)


def send(rt):
    """Send every callback's values not sent yet to the subscribed controllers."""
    rt.deliver_timer = None
    rt.deliver_fast = False
    subs = live(rt)
    if not subs:
        for d in rt.deliveries.values():
            if d.tx.unsent():
                later(rt, DELIVER_MS * 4)
                break
        return
    for d in rt.deliveries.values():
        tx = d.tx
        at = tx.sent      # every value before this one went to every subscriber (or was left out)
        try:
            while tx.unsent():
                items = d.messages(rt.epoch, codec.dumps, DELIVER_MAX)
                if tx.sent == at:
                    break                   # nothing could be taken (a spool that cannot be read)
                for msg in items:
                    if type(msg) is tuple:      # (seq, error): a value JSON cannot carry
                        rare_call(RARE_IN, "undeliverable", rt, d, 1, msg[1])
                        at = msg[0] + 1
                        continue
                    n = len(msg["deliver"]["values"])
                    for s in subs:
                        try:
                            s.conn.send(msg)
                        except codec.ProtocolError as e:   # one value too large for the link
                            rare_call(RARE_IN, "undeliverable", rt, d, n, e)
                    at = msg["deliver"]["seq"] + n
                items = msg = None
        except MemoryError:
            # a board short of heap for a message (its JSON, its sealing): what was not sent
            # stays buffered and leaves with the next timer, when the heap may have room
            items = msg = None
            tx.sent = at
            try:
                later(rt, DELIVER_MS)
            except MemoryError:
                rt.deliver_timer = None     # the next value sets the timer again
            return
        if not d.confirmed:
            tx.ack(tx.sent)       # nobody confirms: sent is taken (the original design)


def on_delivered(rt, session, body):
    """A controller confirms it took a callback's values: {"step", "seq", "run"}."""
    if type(body) is not dict:
        return
    d = rt.deliveries.get(body.get("step"))
    if d is not None and body.get("run") == d.tx.run and d.tx.ack(body.get("seq")):
        rt.outputs_acked()


def subscribed(rt, session, body):
    """session collects callback values; with {"acks": true} it confirms them (and gets
    everything not yet confirmed again: it drops what it already had). Here, not in
    delivery_links.py: a deployment subscribes the session that deployed it at its last stage,
    a board's fullest moment."""
    if session not in rt.subscribers:
        rt.subscribers.append(session)
    if type(body) is dict and body.get("acks") is True:
        session.confirms = True
        rt.confirmed = True         # (delivery_links.confirming, for a confirming one coming)
        for d in rt.deliveries.values():
            d.confirmed = True
            tx = d.tx
            if tx.sent != tx.base or tx.jumped:    # (a new deployment's has nothing to send again)
                tx.restart()
        if getattr(rt, "deliver_timer", None) is None:
            later(rt, 0)


def commit_files(rt):
    """Flush what csv sinks wrote, so their checkpoints may be acknowledged upstream."""
    moved = False
    for f in rt.files:
        if f.commit():
            moved = True
    if moved:
        rt.outputs_acked()
