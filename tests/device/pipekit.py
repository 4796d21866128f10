# A network without sockets or clocks for the device runtime: devices with real Runtimes,
# pipes and steps, connected by queues on a simulated clock. Tests cut links, stop and restart
# devices at exact moments and check the values at the sink (CPython and MicroPython alike).
import json

from sensormesh.device.runtime import Runtime


SPOOL_ROOT = "/tmp/sensormesh-test-spool"


class Timer:
    def __init__(self, loop, when, fn):
        self.when = when
        self.fn = fn
        self.cancelled = False
        self.dev = None

    def cancel(self):
        self.cancelled = True


class FakeLoop:
    def __init__(self):
        self.t = 0
        self.timers = []

    def now(self):
        return self.t

    def call_later(self, ms, fn):
        tm = Timer(self, self.t + (ms if ms > 0 else 0), fn)
        self.timers.append(tm)
        return tm

    def call_soon(self, fn):
        return self.call_later(0, fn)

    def next_due(self, frozen=None):
        best = None
        self.timers = [tm for tm in self.timers if not tm.cancelled]
        for tm in self.timers:
            if frozen and tm.dev is not None and tm.dev.name in frozen:
                continue
            if not tm.cancelled and (best is None or tm.when < best.when):
                best = tm
        return best


class DeviceLoop:
    """One device's view of the shared clock: its timers die with it."""

    def __init__(self, loop, dev):
        self.loop = loop
        self.dev = dev

    def now(self):
        return self.loop.t

    def call_later(self, ms, fn):
        tm = self.loop.call_later(ms, fn)
        tm.dev = self.dev
        return tm

    def call_soon(self, fn):
        return self.call_later(0, fn)


class Counter:
    """A sensor that reads 0, 1, 2, ..."""

    def __init__(self, start=0):
        self.n = start

    def get(self):
        n = self.n
        self.n = n + 1
        return n


class RunCounter(Counter):
    """The same, with get_many: a free-running source reads runs of values from it."""

    def get_many(self, k):
        n = self.n
        self.n = n + k
        return list(range(n, n + k))


class Conn:
    def __init__(self, net, protocol, name):
        self.net = net
        self.protocol = protocol
        self.peer = None      # the other end
        self.closed = False
        self.connecting = False
        self.name = name
        self.writable_ = True

    def send(self, msg):
        if not self.closed:
            self.net.queue.append((self.peer, json.loads(json.dumps(msg))))

    def writable(self):
        return not self.closed and self.writable_

    def close(self, reason="closed"):
        self.net.cut_conn(self, reason)

    def close_after_flush(self, reason="closed"):
        self.close(reason)


class Session:
    """The accepting end of a connection: what device.Inbound does for pipes."""

    def __init__(self, dev):
        self.dev = dev
        self.conn = None
        self.kind = None
        self.handler = None
        self.errors = []

    def fail(self, conn, code, message, extra=None):
        self.errors.append((code, message))
        conn.send({"error": {"code": code, "message": message}})
        conn.close()

    def on_message(self, conn, msg):
        if self.handler is not None:
            self.handler.on_message(conn, msg)
            return
        for key in msg:
            self.dev.runtime.handler(key)(self, msg[key])

    def on_close(self, conn, reason):
        if self.handler is not None:
            self.handler.on_close(conn, reason)


class Control:
    """A controller's session on a device: keeps every reply and the delivered values. With
    confirm=True it confirms callback values as the controller does (controller/deliveries.py,
    CPython only; the same rule here): values it had already are dropped, the rest confirmed
    after 1 ms. It outlives the device process (a restarted sink keeps its controller)."""

    def __init__(self, confirm=False):
        self.messages = []
        self.conn = self
        self.closed = False
        self.confirm = confirm
        self.dev = None
        self.next = {}        # step -> [run, next seq]
        self.taken = []       # (step, value) handed on once
        self.duplicates = 0

    peer_max_frame = 1 << 20

    def send_payload(self, payload):
        # a reply sent as its text (status.send_stats makes the text, then seals and queues it)
        self.send(json.loads(bytes(payload)))

    def send(self, msg):
        msg = json.loads(json.dumps(msg))
        self.messages.append(msg)
        if self.confirm and type(msg) is dict and "deliver" in msg:
            self._take(msg["deliver"])

    def _take(self, d):
        step = d["step"]
        vals = d["values"]
        had = self.next.get(step)
        if had is None or had[0] != d["run"]:
            had = self.next[step] = [d["run"], d["seq"]]
        skip = had[1] - d["seq"]
        if skip < 0:
            skip = 0
        self.duplicates += min(skip, len(vals))
        for v in vals[skip:]:
            self.taken.append((step, v))
        if d["seq"] + len(vals) > had[1]:
            had[1] = d["seq"] + len(vals)
        dev = self.dev
        body = {"step": step, "seq": had[1], "run": had[0]}
        dev.loop.call_later(1, lambda: dev.runtime.handler("delivered")(self, body) if dev.alive else None)

    def close_after_flush(self, reason=""):
        pass

    def values(self, step=None):
        if self.confirm:
            return [v for s, v in self.taken if step is None or s == step]
        out = []
        for m in self.messages:
            if type(m) is dict and "deliver" in m and (step is None or m["deliver"]["step"] == step):
                out += m["deliver"]["values"]
        return out


class Device:
    def __init__(self, net, name, counter=False, rate=1000, runs=False, control=None, start=0):
        self.net = net
        self.name = name
        self.loop = DeviceLoop(net.loop, self)
        self.security = None
        self.logs = []
        self.sensors = {}
        self.sensor_kinds = {}
        if counter:
            self.sensors["counter"] = (RunCounter(start) if runs else Counter(start), rate)
            self.sensor_kinds["counter"] = "counter"
        self.runtime = Runtime(self)
        self.spool_root = SPOOL_ROOT   # spooled pipes write here, not into the checkout
        self.control = control or Control()
        self.control.dev = self
        self.alive = True

    def log(self, text):
        self.logs.append(text)

    def dial(self, address, protocol, peer, first):
        return self.net.dial(self, address, protocol, first)

    def deploy(self, assignment):
        body = {"assignment": assignment}
        if self.control.confirm:
            body["acks"] = True
        self.runtime.handler("deploy")(self.control, body)
        errs = [m for m in self.control.messages if "error" in m]
        assert not errs, errs

    def start(self):
        self.runtime.handler("start")(self.control, {})

    def status(self):
        return self.runtime.status()["steps"]


class Net:
    def __init__(self):
        self.loop = FakeLoop()
        self.devices = {}     # address (= name) -> Device
        self.queue = []       # (destination conn, message)
        self.conns = []
        self.down = {}        # device names whose links are cut: dials fail, nothing passes
        self.frozen = {}      # device names stopped (SIGSTOP): messages to them wait, their timers too
        self.dead = []        # killed devices

    def device(self, name, **kw):
        d = Device(self, name, **kw)
        self.devices[name] = d
        return d

    def dial(self, dev, address, protocol, first):
        c = Conn(self, protocol, dev.name)
        if not dev.alive:
            c.closed = True
            return c
        target = self.devices.get(address)
        if target is None or not target.alive or address in self.down or dev.name in self.down:
            c.closed = True
            dev.loop.call_later(1, lambda: protocol.on_close(c, "connection refused"))
            return c
        sess = Session(target)
        s = Conn(self, sess, address)
        sess.conn = s
        c.peer = s
        s.peer = c
        self.conns.append(c)
        self.conns.append(s)
        c.send(first)
        if hasattr(protocol, "on_connect"):
            dev.loop.call_later(0, lambda: None if c.closed else protocol.on_connect(c))
        return c

    def cut_conn(self, conn, reason="link cut"):
        for c in (conn, conn.peer):
            if c is None or c.closed:
                continue
            c.closed = True
            self.queue = [q for q in self.queue if q[0] is not c]
            if c in self.conns:
                self.conns.remove(c)
            c.protocol.on_close(c, reason)

    def cut(self, name):
        """Cut every link of a device until heal(name): connections close, dials fail."""
        self.down[name] = True
        for c in list(self.conns):
            if c.name == name or (c.peer is not None and c.peer.name == name):
                self.cut_conn(c)

    def heal(self, name):
        self.down.pop(name, None)

    def kill(self, name):
        """The device's process dies: its state is gone, its connections close."""
        dev = self.devices[name]
        dev.alive = False
        for c in list(self.conns):
            if c.name == name or (c.peer is not None and c.peer.name == name):
                self.cut_conn(c, "connection reset")
        for tm in self.loop.timers:
            if getattr(tm, "dev", None) is dev:
                tm.cancelled = True
        return dev

    def freeze(self, name):
        self.frozen[name] = True

    def thaw(self, name):
        self.frozen.pop(name, None)

    def pump(self):
        n = 0
        held = []
        while self.queue:
            dst, msg = self.queue.pop(0)
            if self.frozen and dst.name in self.frozen:
                held.append((dst, msg))
                continue
            if not dst.closed:
                dst.protocol.on_message(dst, msg)
            n += 1
        self.queue = held + self.queue
        return n

    def run(self, ms, until=None):
        """Deliver messages and fire timers in time order for `ms` simulated ms (or until
        until() is true). Returns True if until() became true."""
        end = self.loop.t + ms
        loop = self.loop
        while True:
            self.pump()
            if until is not None and until():
                return True
            tm = loop.next_due(self.frozen)
            if tm is None or tm.when > end:
                loop.t = end
                return until is None
            loop.timers.remove(tm)
            if tm.when > loop.t:
                loop.t = tm.when
            tm.fn()


def _linear(steps, more):
    """steps + more, each of more taking the previous step as its input."""
    for st in more or []:
        st = dict(st)
        st["inputs"] = [steps[-1]["id"]]
        steps.append(st)
    return steps


def chain(net, middle_steps=None, tf=0, count=0, buffer=None, rate=1000, sink_steps=None, spool=0, runs=False,
          confirm=False):
    """counter source on a -> pipe e1 -> m (middle steps) -> pipe e2 -> callback sink on c
    (buffer, spool: the replay buffer and the spool bytes of e1; runs: the counter has get_many;
    confirm: c's controller confirms callback values)."""
    a = net.device("a", counter=True, rate=rate, runs=runs)
    m = net.device("m")
    c = net.device("c", control=Control(confirm))
    po = {"edge": "e1", "to": "m", "time-frame": tf}
    if buffer:
        po["buffer"] = buffer
    if spool:
        po["spool"] = spool
    src = {"sensor": "counter"}
    if count:
        src["count"] = count
    asg = {"a": {"pipeline": "p", "epoch": 1, "steps": [
        {"id": "s", "type": "source", "params": src},
        {"id": "o1", "type": "pipe_out", "params": po, "inputs": ["s"]}]}}
    mid = _linear([{"id": "i1", "type": "pipe_in", "params": {"edge": "e1"}}], middle_steps)
    po2 = {"edge": "e2", "to": "c", "time-frame": tf}
    mid.append({"id": "o2", "type": "pipe_out", "params": po2, "inputs": [mid[-1]["id"]]})
    asg["m"] = {"pipeline": "p", "epoch": 1, "steps": mid}
    sink = _linear([{"id": "i2", "type": "pipe_in", "params": {"edge": "e2"}}], sink_steps)
    sink.append({"id": "k", "type": "callback", "params": {}, "inputs": [sink[-1]["id"]]})
    asg["c"] = {"pipeline": "p", "epoch": 1, "steps": sink}
    for name in ("c", "m", "a"):
        net.devices[name].deploy(asg[name])
    for name in ("c", "m", "a"):
        net.devices[name].start()
    return asg


def restart(net, name, assignment):
    """A new process for device `name` (nothing of the old one's memory), same assignment."""
    old = net.kill(name)
    control = old.control if old.control.confirm else None     # the controller lives on
    dev = Device(net, name, counter=bool(old.sensors), rate=old.sensors["counter"][1] if old.sensors else 0,
                 control=control)
    net.dead.append(old)      # like a killed process, it never flushes its files again
    net.devices[name] = dev
    dev.deploy(assignment)
    dev.start()
    return dev
