# Sockets and the event loop: the only modules that touch a socket are this one and connect.py.
#
# One single-threaded loop per process over select.poll, which both CPython and MicroPython
# have. It sleeps in poll() until a socket is ready or the next timer is due, so an idle device
# uses no CPU. Output is appended to a per-connection buffer and flushed once per loop turn:
# many small frames leave in one send() call, which is what makes unbatched streams fast.
import select
import socket
import struct

from sensormesh.device import codec
from sensormesh.device.compat import MICROPYTHON, WOULD_BLOCK, errno_of, forget, ticks_diff, ticks_ms, ticks_us

# poll() event bits: the same numbers in MicroPython's select (every port) and in CPython's on
# Linux and the BSDs (tests/device/test_transport.py checks both interpreters). MicroPython's
# compiler puts the numbers in place of these names (const() of a name starting with _ costs
# nothing at run time); CPython runs them.
if not MICROPYTHON:
    const = int
_POLLIN = const(1)
_POLLOUT = const(4)
_POLLERR = const(8)
_POLLHUP = const(16)

# Bytes taken from a socket per recv(). Bounds what one peer can make us buffer per turn. A
# board reads into one buffer of this size for the whole process (Loop.rbuf): 1 KB, less than a
# TCP segment, is plenty for a loop that turns every few milliseconds. (Not less: the decoder
# grows its buffer by each read, and a deployment's frame read in 512-byte pieces fragmented a
# board's heap so that a deployed board needed 100K instead of 96K: benchmarks/bench_heap.py.)
RECV_CHUNK = 1024 if MICROPYTHON else 262144
# Producers pause while a connection holds more than this much unsent output, and resume when
# it drains: a slow reader slows its producer down instead of growing our memory.
HIGH_WATER = 4096 if MICROPYTHON else 1048576


class Timer:
    def __init__(self, when, fn, timers):
        self.when = when
        self.fn = fn
        self.cancelled = False
        self.timers = timers    # the loop's list, while the timer is in it

    def cancel(self):
        # Out of the loop's list at once, and fn dropped (a handshake deadline holds its whole
        # connection). Left in the list until its time came, a cancelled deadline behind a
        # stream's tick would stay there for its whole delay: a burst of connections that each
        # cancel one would hold a board's heap for seconds.
        self.cancelled = True
        self.fn = None
        timers = self.timers
        if timers is not None:
            self.timers = None
            i = len(timers)
            while i:
                i -= 1
                if timers[i] is self:
                    timers.pop(i)
                    break


class Loop:
    """poll() over sockets plus millisecond timers; now() never wraps."""

    # A stop asked by a signal on CPython (options.stop_on_signals): its handler raises
    # KeyboardInterrupt at once only while a loop waits in poll(), where nothing is half done;
    # otherwise it sets `halt` and the loop raises before its next wait. (Raised anywhere, it
    # could fall between a socket taking bytes and the buffer dropping them: the closing flush
    # sent them again, and the receiver counted those values twice.)
    waiting = False
    halt = False
    # Defaults a loop's own dict holds only once they are set (a dict of 12 entries or fewer).
    running = False
    short = 0           # MemoryErrors that reached run() itself
    on_error = None     # fn(exc, where) for errors raised by handlers
    timing = True       # measure the time waited in poll() (boot.set_metrics turns it off)

    def __init__(self):
        self._poll = select.poll()
        self._handlers = {}
        self._timers = []  # sorted by when; a handful per process, so a list is enough
        self._dirty = []   # connections with output to flush at the end of this turn
        self._soon = []
        self._t0 = ticks_ms()
        self._now = 0
        # MicroPython: one receive buffer for every connection of this loop, allocated once.
        # Allocating a fresh chunk per recv() fragments a board's heap until a read fails; the
        # decoder copies what it needs before the next read, so one buffer is enough.
        self.rbuf = bytearray(RECV_CHUNK) if MICROPYTHON else None
        # Time spent waiting in poll() (metrics: the loop's busy fraction is the rest). Kept as
        # whole seconds plus microseconds so a board never grows a long integer per turn.
        self.idle_s = 0
        self.idle_us = 0

    def now(self):
        """Milliseconds since the loop was made. Monotonic, never wraps."""
        t = ticks_ms()
        self._now += ticks_diff(t, self._t0)
        self._t0 = t
        return self._now

    # -- sockets ------------------------------------------------------------------------
    def register(self, sock, handler, mask=_POLLIN):
        self._poll.register(sock, mask)
        # CPython's poll reports file descriptors, MicroPython's reports the socket object.
        self._handlers[sock if MICROPYTHON else sock.fileno()] = handler

    def unregister(self, sock):
        try:
            self._poll.unregister(sock)
        except (OSError, KeyError, ValueError):
            pass
        self._handlers.pop(sock if MICROPYTHON else sock.fileno(), None)

    # -- timers -------------------------------------------------------------------------
    def call_later(self, ms, fn):
        timers = self._timers
        t = Timer(self.now() + ms, fn, timers)
        i = len(timers)
        while i and timers[i - 1].when > t.when:
            i -= 1
        timers.insert(i, t)
        return t

    def call_soon(self, fn):
        self._soon.append(fn)

    # -- running ------------------------------------------------------------------------
    def run_once(self, max_wait=-1):
        """Wait for sockets and timers (at most max_wait ms when it is >= 0) and handle them."""
        timers = self._timers
        if self._soon or self._dirty:
            timeout = 0
        else:
            while timers and timers[0].cancelled:
                timers.pop(0)
            if timers:
                timeout = timers[0].when - self.now()
                if timeout < 0:
                    timeout = 0
                elif timeout > 86400000:
                    timeout = 86400000     # poll() takes a C int: a 30-day timer waits a day at a time
            else:
                timeout = -1
        if max_wait >= 0:
            if timeout < 0 or timeout > max_wait:
                timeout = max_wait
        elif timeout < 0 and not self.running:
            timeout = 0    # nothing to wait for and no bound given: a stopped loop does not block
        Loop.waiting = True
        if Loop.halt:
            Loop.waiting = False
            raise KeyboardInterrupt
        if self.timing and timeout:
            t0 = ticks_us()
            events = self._poll.poll(timeout)
            Loop.waiting = False
            us = self.idle_us + ticks_diff(ticks_us(), t0)
            if us >= 1000000:
                self.idle_s += us // 1000000
                us %= 1000000
            self.idle_us = us
        else:
            events = self._poll.poll(timeout)
            Loop.waiting = False
        handlers = self._handlers
        for ev in events:
            h = handlers.get(ev[0])
            if h is not None:
                self._guard(h.on_poll, ev[1])
        if timers:
            now = self.now()
            while timers and timers[0].when <= now:
                t = timers.pop(0)
                t.timers = None
                if not t.cancelled:
                    self._guard(t.fn, None)
        if self._soon:
            soon = self._soon
            self._soon = []
            for fn in soon:
                self._guard(fn, None)
        if self._dirty:
            dirty = self._dirty
            self._dirty = []
            for c in dirty:
                self._guard(c.flush, None)    # one connection's shortfall strands no other

    def _guard(self, fn, arg):
        try:
            if arg is None:
                fn()
            else:
                fn(arg)
        except KeyboardInterrupt:
            raise
        except Exception as e:  # one broken handler must not stop the device
            if self.on_error:
                self.on_error(e, fn)
            else:
                raise

    def run(self):
        self.running = True
        while self.running:
            try:
                self.run_once()
            except MemoryError:
                # a shortfall outside every handler's guard (a flush): what this turn left undone
                # waits for the next (sockets still ready, output still queued); the device goes on
                self.short += 1

    def stop(self):
        self.running = False

    def run_until(self, predicate, timeout_ms):
        """Turn the loop until predicate() is true or timeout_ms pass; returns predicate()."""
        return _connect().run_until(self, predicate, timeout_ms)


class Connection:
    """One framed stream socket: a Decoder for input, a bytearray for output.

    The owner (a protocol object) gets on_message(conn, msg), on_close(conn, reason) and,
    when output drains below HIGH_WATER after having been above it, on_drain(conn).
    channel, when set (by a secure session: its secure/channel.Channel), wraps each payload on its
    way out and unwraps each one on its way in.
    relay, when true (a gateway carrying someone else's secure session), hands each frame's
    payload to on_message as bytes, undecoded; send_payload(bytes) sends one such frame.
    """

    # Defaults that most connections keep for their whole life: an instance holds only the
    # attributes set on it, so a board's connection carries a smaller dict. (A dict of up to 12
    # attributes takes ~228 B on a 64-bit board, one of 13 to 17 ~320 B: a connection keeps at most
    # 12 at once, a secure one too. The state a connection holds for a while, connecting and held
    # while a dial comes up, a mask with POLLOUT while output waits, goes back to the class's
    # default once done, which frees its slot.)
    peer_max_frame = codec.MIN_MAX_FRAME   # largest payload per frame: the peer's frame limit or,
                                           # once a secure session wraps payloads, the largest
                                           # payload whose token fits it (secure/welcome.wrap_limit)
    closed = False
    connecting = False
    _blocked = False
    _mask = _POLLIN
    channel = None      # a secure session's Channel once it is up (one attribute: wrap and unwrap)
    held = None         # a list while a secure dial waits for its handshake: send() keeps messages
    relay = False       # True: frames reach on_message as raw payload bytes (forward.py)
    listener = None     # the Listener that accepted it (its conns list holds it while it is open)

    def __init__(self, loop, sock, protocol, max_frame=codec.DEFAULT_MAX_FRAME, peer=None):
        self.loop = loop
        self.sock = sock
        self.protocol = protocol
        self.peer = peer
        self.decoder = codec.Decoder(max_frame)
        if MICROPYTHON:
            self.chunks = []
        else:
            self.out = bytearray()
        self.bytes_in = 0
        self.bytes_out = 0
        sock.setblocking(False)
        loop.register(sock, self, _POLLIN)

    # -- output -------------------------------------------------------------------------
    # CPython appends frames to one bytearray and sends it in large pieces. MicroPython keeps a
    # list of frames instead: growing one buffer would reallocate and fragment a board's small
    # heap, while each frame is allocated once and freed once it is sent. Each interpreter
    # defines only its own version of the methods that differ, so a board holds no CPython code.
    def send(self, msg):
        """Queue one message (split if it is data larger than the peer's frame limit)."""
        if self.closed:
            return
        if self.held is not None:
            self.held.append(msg)
            return
        if not MICROPYTHON and self.channel is None:
            codec.encode_into(self.out, msg, self.peer_max_frame)
            self._flush_later()
            return
        for p in codec.payloads(msg, self.peer_max_frame):
            self.send_payload(p)

    def _flush_later(self):
        # flushed at the end of this loop turn (the loop's list holds each connection once)
        dirty = self.loop._dirty
        if self not in dirty:
            dirty.append(self)

    if MICROPYTHON:
        def send_payload(self, payload):
            if self.closed:
                return
            chunks = self.chunks
            ch = self.channel
            if ch is not None:
                # The token is made and queued in pieces of at most ~140 bytes, the first with
                # the frame's length in front (secure/channel.seal): no block the size of the
                # token is needed. A piece that finds no heap takes the frame's queued pieces
                # back out, so the peer never gets part of a frame.
                k = len(chunks)
                try:
                    ch.wrap(payload, chunks.append)
                except MemoryError:
                    del chunks[k:]
                    raise
                self._flush_later()
                return
            n = len(payload)
            if n <= 256:
                # small frames share a chunk: one allocation per ~512 bytes, not per frame (a
                # chunk partly sent is a memoryview of its rest: never added to)
                last = chunks[-1] if chunks else None
                if last is not None and type(last) is bytearray and len(last) < 512:
                    last += struct.pack("!I", n)
                    last += payload
                else:
                    frame = bytearray(struct.pack("!I", n))
                    frame += payload
                    chunks.append(frame)
            else:
                chunks.append(struct.pack("!I", n))
                chunks.append(payload)
            self._flush_later()

        def backlog(self):
            """Bytes queued but not yet sent (a handful of chunks: up to HIGH_WATER in ~512-byte
            ones)."""
            n = 0
            for c in self.chunks:
                n += len(c)
            return n
    else:
        def send_payload(self, payload):
            if self.closed:
                return
            if self.channel is not None:
                payload = self.channel.wrap(payload)
            self.out += struct.pack("!I", len(payload))
            self.out += payload
            self._flush_later()

        def backlog(self):
            """Bytes queued but not yet sent."""
            return len(self.out)

    def release(self):
        """A secure dial's session is up (secure/dialer.py): send what was held meanwhile, then
        the protocol's on_connect (connect.release). With no heap free for that code, closed
        (its dialer dials again) rather than up but never taken."""
        try:
            c = _connect()
        except MemoryError:
            self.close("no memory free for a frame")
            raise
        c.release(self)

    def writable(self):
        """True while the producer may add more output. After a False, on_drain(conn) follows
        once the backlog is down to half of HIGH_WATER."""
        if self.backlog() < HIGH_WATER:
            return not self.closed
        self._blocked = True
        return False

    def flush(self):
        if self.closed or self.connecting:
            return
        try:
            if MICROPYTHON:
                # a send() per chunk while the socket takes them whole; the rest of a chunk it took
                # in part stays first in the list, as a view of that rest (no copy)
                chunks = self.chunks
                while chunks:
                    c = chunks[0]
                    n = self.sock.send(c) or 0
                    self.bytes_out += n
                    if n < len(c):
                        if n:
                            chunks[0] = memoryview(c)[n:]
                        break
                    chunks.pop(0)
            elif self.out:
                n = self.sock.send(self.out)
                del self.out[:n]
                self.bytes_out += n
        except OSError as e:
            en = errno_of(e)
            if en not in WOULD_BLOCK:
                self.close("closed by peer" if en in (32, 104) else "%s failed: %s" % ("send", e))
                return
        left = self.backlog()
        self._set_mask(_POLLIN | _POLLOUT if left else _POLLIN)
        if self._blocked and left <= HIGH_WATER // 2:
            self._blocked = False
            h = getattr(self.protocol, "on_drain", None)
            if h:
                h(self)

    def _set_mask(self, mask):
        if mask != self._mask and not self.closed:
            if mask == _POLLIN:
                del self._mask      # the class's again: its slot is free (the defaults above)
            else:
                self._mask = mask
            self.loop._poll.modify(self.sock, mask)

    # -- input --------------------------------------------------------------------------
    def on_poll(self, ev):
        if self.closed:
            return
        if self.connecting:
            try:
                c = _connect()
            except MemoryError:
                # No room for connect.py's code now: closed at once (its dialer dials again
                # later) rather than left connecting, which would wake the loop again on every
                # turn with the same event; the loop logs the MemoryError.
                self.close("no memory free to finish connecting")
                raise
            up = c.connected(self, ev)
            c = None            # connect.py's code is garbage again before the frames are read
            if not up:
                return
        if ev & _POLLIN:
            self._read()
            if self.closed:
                return
        if ev & _POLLOUT:
            self.flush()
        if ev & (_POLLERR | _POLLHUP) and not ev & _POLLIN:
            self.close("connection lost")

    def _read(self):
        try:
            if MICROPYTHON:
                n = self.sock.readinto(self.loop.rbuf)
                if n is None:
                    return  # nothing there after all (non-blocking)
                data = memoryview(self.loop.rbuf)[:n]
            else:
                data = self.sock.recv(RECV_CHUNK)
        except OSError as e:
            en = errno_of(e)
            if en in WOULD_BLOCK:
                return
            self.close("closed by peer" if en in (32, 104) else "%s failed: %s" % ("receive", e))
            return
        if not data:
            try:
                self.decoder.close()
            except (codec.ProtocolError, MemoryError) as e:
                # the stream ended inside a frame: how far (refused.py's sentence), or no memory
                # free to load it (the MemoryError's): closed all the same
                self.close(str(e))
                return
            self.close("closed by peer")
            return
        self.bytes_in += len(data)
        dec = self.decoder
        proto = self.protocol
        handling = False
        try:
            dec.feed(data)
            # channel and relay are looked up per frame: a handshake switches them on between two
            # frames that may have arrived in one read. The decoder checks each length against
            # max_frame before buffering the payload, so the limit applies before any decryption
            # (and before a relay passes a payload on).
            while not self.closed:
                if self.relay:
                    payload = dec.next_payload()
                    if payload is None:
                        break
                    handling = True
                    proto.on_message(self, payload)
                    handling = False
                    continue
                ch = self.channel
                if ch is None:
                    msg = dec.next()
                    if msg is None:
                        break
                else:
                    # the token read where it lies in the decoder's buffer (no copy), and the
                    # payload decoded once the view is dropped: a frame is in memory as its
                    # token and its plaintext, never more (and on_message runs with neither)
                    payload = dec.next_payload(True)
                    if payload is None:
                        break
                    payload = ch.unwrap(payload)
                    msg = codec.decode_payload(payload)
                    payload = None
                handling = True
                proto.on_message(self, msg)
                handling = False
        except codec.ProtocolError as e:
            # tell the peer what it did wrong, then close (the stream is out of step)
            _connect().protocol_error(self, e.args[0])
        except MemoryError:
            if handling:        # the handler's own (the loop logs it); the stream is in step
                raise
            # No room to take the frame out or decode it: the frame is lost and the stream out of
            # step. connect.no_memory says so and closes (its code loaded for it); short of
            # memory for that too, this connection closes all the same.
            try:
                _connect().no_memory(self)
            except MemoryError:
                self.close("no memory free for a frame")

    # -- closing ------------------------------------------------------------------------
    def close_after_flush(self, reason="closed"):
        """Send what is queued (best effort, without blocking), then close (closing.py, loaded
        for it and forgotten at once)."""
        from sensormesh.device import closing
        forget(closing)
        closing.close_after_flush(self, reason)

    def close(self, reason="closed"):
        if self.closed:
            return
        self.closed = True
        self.loop.unregister(self.sock)
        try:
            self.sock.close()
        except OSError:
            pass
        lst = self.listener
        if lst is not None and self in lst.conns:
            lst.conns.remove(self)
        h = getattr(self.protocol, "on_close", None)
        if h:
            h(self, reason)


class Listener:
    """Accepts connections; make_protocol() returns the protocol for each new one. Making one
    (listen.listener), accepting (accepting.on_poll) and closing one (closing.close_listener) are
    listen.py's, accepting.py's and closing.py's, loaded for each: a listener holds loop, sock,
    make_protocol, max_frame, max_conns and conns, the open connections it accepted."""

    def on_poll(self, ev):
        try:
            m = _accepting()
        except MemoryError:
            # No room for accepting.py's code now: the waiting connection is closed at once (its
            # peer dials again later) rather than left pending, which would wake the loop again
            # on every turn; the loop logs the MemoryError.
            try:
                self.sock.accept()[0].close()
            except OSError:
                pass
            raise
        m.on_poll(self, ev)

    def close(self):
        from sensormesh.device import closing
        forget(closing)
        closing.close_listener(self)


# Opening connections happens at start and when a pipe dials, accepting one when a peer dials,
# closing one after an error (protocol_error, no_memory) or a stop (close_after_flush) now and
# then, a listener at the end, and Loop.run_until serves tools and tests: that code is in
# listen.py (listen_tcp, listen_unix, bound_port, listener), accepting.py (on_poll, accepted),
# connect.py (dial, parse_address, unix_address; connected, release; protocol_error, no_memory,
# run_until) and closing.py (close_after_flush, close_listener), loaded when one of these names
# is looked up here (transport.dial(...)) and, on a board running .mpy files, forgotten at once,
# so it costs heap only while it runs.
def _connect():
    """connect.py, forgotten at once (its code is freed when the caller is done with it)."""
    from sensormesh.device import connect
    forget(connect)
    return connect


def _listen():
    """listen.py, forgotten at once, and connect.py with it (listen.py imports it)."""
    from sensormesh.device import listen
    forget(listen)
    _connect()
    return listen


def _accepting():
    """accepting.py, forgotten at once."""
    from sensormesh.device import accepting
    forget(accepting)
    return accepting


def __getattr__(name):
    if name[0] == "_":
        raise AttributeError(name)
    # listen.py's names: listen_tcp, listen_unix, bound_port
    if name[:6] == "listen" or name == "bound_port":
        return getattr(_listen(), name)
    return getattr(_connect(), name)
