# Store-and-forward: the oldest part of a pipe_out's replay buffer on disk (flash on a board)
# while the receiver cannot take it, so a long outage costs disk, not heap, and loses nothing
# within the spool's bound. Loaded only by pipes with a `spool` (bytes) in their parameters.
#
# A spool is a folder of segment files, one per chunk of consecutive values, named by the
# number of its first value; each holds the JSON [first, values, meta] (meta: whatever the pipe
# keeps per value beside it, e.g. when its source read it, or null). Segments leave oldest first:
# acknowledged, or dropped when a new one would not fit the bound (the pipe counts those values as
# evicted). A new spool clears what an earlier process left: the numbering it belonged to is gone
# (counted as `cleared` and logged, with the files it could not read).
#
# Disk faults never reach the steps: a segment that cannot be written (a folder that is not
# writable, a full disk) drops the oldest segments to make room and tries again, then leaves the
# values in memory, where the full buffer drops its oldest as without a spool (counted evicted);
# a segment that cannot be read back (truncated, corrupt, removed) is dropped and its values
# counted evicted (the receiver counts them lost). Each fault is counted (`errors`) and logged at
# the 1st, 2nd, 4th, 8th...; after a write fault the spool rests for half a buffer of values.
import json
import os

from sensormesh.device.compat import MICROPYTHON

ROOT = ".sensormesh/spool"   # under the device's working directory


def _makedirs(path):
    here = ""
    for part in path.split("/"):
        if not part:
            here = "/"
            continue
        here = here + part if here in ("", "/") else here + "/" + part
        try:
            os.mkdir(here)
        except OSError:
            pass     # exists (MicroPython raises a bare OSError with EEXIST)


def _safe(name):
    out = []
    for ch in name:
        out.append(ch if ch.isalpha() or ch.isdigit() or ch in "-_." else "_")
    return "".join(out)


def folder(device, edge, root=None):
    return (root or ROOT) + "/" + _safe(device) + "/" + _safe(edge)


class Spool:
    tx = None          # the Sender whose values these are (start())
    log = None         # fn(text): the pipe's log (start())
    errors = 0         # disk faults so far
    rest = 0           # spills to skip after a write fault

    def __init__(self, path, limit):
        self.path = path
        self.limit = limit
        self.segs = []     # [first seq, count, bytes], oldest first
        self.bytes = 0
        self.cleared = 0   # values an earlier process left here
        self.unreadable = 0
        _makedirs(path)
        for name in os.listdir(path):
            f = path + "/" + name
            try:
                with open(f) as h:
                    self.cleared += len(json.loads(h.read())[1])
            except Exception:      # truncated, corrupt, not a file, or no heap to read it
                self.unreadable += 1
            try:
                os.remove(f)
            except OSError:
                pass

    def fault(self, what, e):
        self.errors += 1
        n = self.errors
        if self.log is not None and n & (n - 1) == 0:
            self.log("spool %s: %s: %r (%d disk faults so far)" % (self.path, what, e, n))

    def first(self):
        return self.segs[0][0] if self.segs else None

    def end(self):
        s = self.segs[-1] if self.segs else None
        return s[0] + s[1] if s else None

    def values(self):
        n = 0
        for s in self.segs:
            n += s[1]
        return n

    def write(self, first, values, meta):
        """Store values first.. on disk. Returns how many older values were dropped to make room,
        or -1 if the chunk does not fit at all (nothing written)."""
        data = json.dumps([first, values, meta])
        n = len(data)
        if n > self.limit:
            return -1
        dropped = 0
        while self.segs and self.bytes + n > self.limit:
            dropped += self._remove(0)
        name = self.path + "/%d" % first
        while True:
            try:
                with open(name, "w") as f:
                    f.write(data)
                break
            except OSError as e:     # not writable, disk full: room from the oldest, or give up
                self.fault("cannot write values %d-%d" % (first, first + len(values) - 1), e)
                try:
                    os.remove(name)
                except OSError:
                    pass
                if not self.segs:
                    return -1
                dropped += self._remove(0)
        self.segs.append([first, len(values), n])
        self.bytes += n
        return dropped

    def read(self, seq):
        """(first, values, meta) of the segment holding seq, or None."""
        for i, s in enumerate(self.segs):
            if s[0] <= seq < s[0] + s[1]:
                try:
                    with open(self.path + "/%d" % s[0]) as f:
                        seg = json.loads(f.read())
                    if len(seg[1]) == s[1]:
                        return seg
                    e = "%d values instead of %d" % (len(seg[1]), s[1])
                except Exception as x:   # (MemoryError too: a board then drops it, counted)
                    e = x
                self.fault("cannot read values %d-%d back" % (s[0], s[0] + s[1] - 1), e)
                while i >= 0:            # it and the ones before: the oldest leave first
                    self._remove(0)
                    i -= 1
                if self.tx is not None:
                    self.tx._forget(self.first() if self.segs else self.tx.mbase)
                return None
        return None

    def _remove(self, i):
        s = self.segs.pop(i)
        self.bytes -= s[2]
        try:
            os.remove(self.path + "/%d" % s[0])
        except OSError:
            pass
        return s[1]

    def trim(self, upto):
        """Drop the segments every value of which is before upto (acknowledged)."""
        while self.segs and self.segs[0][0] + self.segs[0][1] <= upto:
            self._remove(0)

    def clear(self):
        while self.segs:
            self._remove(0)

    def spill(self, tx):
        """Move the older half of Sender tx's memory buffer here; False if it does not fit."""
        if self.rest:
            self.rest -= 1
            return False
        buf = tx.buf
        k = len(buf) - tx.cap // 2
        first = tx.mbase
        meta = tx.meta_out(first, k) if getattr(tx, "meta_out", None) is not None else None
        dropped = self.write(first, list(buf[:k]), meta)   # buf may be an array (replay.py)
        if dropped < 0:
            self.rest = tx.cap // 2
            return False
        tx.drop(k)
        tx.mbase += k
        tx.spooled += k
        if dropped:
            tx._forget(self.first() if self.segs else tx.mbase)
        return True

    def stats(self):
        s = {"values": self.values(), "bytes": self.bytes, "limit": self.limit, "segments": len(self.segs),
             "where": self.path if not MICROPYTHON else "flash:" + self.path}
        if self.errors:
            s["errors"] = self.errors
        if self.cleared or self.unreadable:
            s["cleared"] = self.cleared
            s["unreadable"] = self.unreadable
        return s


# -- a pipe_out's side of it (runtime/pipes.py calls start() when a pipe that spools starts) --
def start(pipe):
    """Give pipe (a PipeOut) its spool, if it has none yet, and what its Sender stores beside
    spooled values: the origin stamps of sampled values (probe.py), keyed by seq."""
    tx = pipe.tx
    limit = getattr(pipe, "spool_limit", 0)
    if limit and tx.spool is None:
        try:
            where = folder(pipe.rt.device.name, pipe.edge, getattr(pipe.rt.device, "spool_root", None))
            sp = tx.spool = Spool(where, limit)
            sp.tx = tx
            sp.log = lambda text: pipe.rt.log("pipe %s: %s" % (pipe.edge, text))
            if sp.cleared or sp.unreadable:
                sp.log("spool %s: cleared %d values an earlier process left (their numbering is gone)%s"
                       % (where, sp.cleared, ", and %d files it could not read" % sp.unreadable
                          if sp.unreadable else ""))
        except OSError as e:
            pipe.last_error = "no spool: %s" % e
            pipe.rt.log("pipe %s: cannot spool to disk (%s); values beyond the buffer will be dropped"
                        % (pipe.edge, e))
    if tx.spool is not None:
        tx.meta_out = lambda first, n: _meta_out(pipe, first, n)
        tx.meta_in = lambda meta: _meta_in(pipe, meta)
        pipe.spool_sent = lambda: _sent(pipe)
        pipe.spool_timer = None      # pipes._send reads it once the pipe has a spool


def _sent(pipe):
    # an array read back from the spool left SPOOL_GAP_MS ago: the next one may go
    pipe.spool_timer = None
    if pipe.running:
        pipe._send()


def _meta_out(pipe, first, n):
    # per-value records keyed by seq (e.g. when a source read the value) go to disk with it
    st = getattr(pipe, "stamps", None)
    if not st:
        return None
    out = []
    keep = []
    for x in st:
        if first <= x[0] < first + n:
            out.append(x)
        else:
            keep.append(x)
    pipe.stamps = keep
    return out or None


def _meta_in(pipe, meta):
    st = getattr(pipe, "stamps", None)
    if st is not None and type(meta) is list:
        pipe.stamps = meta + st
