# Store-and-forward: the oldest part of a pipe_out's replay buffer on disk (flash on a board)
# while the receiver cannot take it, so a long outage costs disk, not heap, and loses nothing
# within the spool's bound. Loaded only by pipes with a `spool` (bytes) in their parameters.
#
# A spool is a folder of segment files, one per chunk of consecutive values, named by the
# number of its first value; each holds the JSON [first, values, meta] (meta: whatever the pipe
# keeps per value beside it, e.g. when its source read it, or null). Segments leave oldest first:
# acknowledged, or dropped when a new one would not fit the bound (the pipe counts those values as
# evicted). A new spool clears what an earlier process left: the numbering it belonged to is gone.
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
    def __init__(self, path, limit):
        self.path = path
        self.limit = limit
        self.segs = []     # [first seq, count, bytes], oldest first
        self.bytes = 0
        _makedirs(path)
        for name in os.listdir(path):
            try:
                os.remove(path + "/" + name)
            except OSError:
                pass

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
        with open(self.path + "/%d" % first, "w") as f:
            f.write(data)
        self.segs.append([first, len(values), n])
        self.bytes += n
        return dropped

    def read(self, seq):
        """(first, values, meta) of the segment holding seq, or None."""
        for s in self.segs:
            if s[0] <= seq < s[0] + s[1]:
                with open(self.path + "/%d" % s[0]) as f:
                    return json.loads(f.read())
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

    def stats(self):
        return {"values": self.values(), "bytes": self.bytes, "limit": self.limit, "segments": len(self.segs),
                "where": self.path if not MICROPYTHON else "flash:" + self.path}
