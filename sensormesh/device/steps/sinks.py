# Steps: print and csv: the ends of a chain that stay on the device (callback.py: the one that
# hands values to the controller).
# Loaded when an assignment first names one of them (kinds.FAMILIES); the step
# protocol and the MicroPython notes on hot methods are in steps/__init__.py.
import sys
from json import dumps as _dumps

from sensormesh.device.steps import Step


class Print(Step):
    """One JSON line per value on stdout; with `label`: {"label": label, "value": value}."""
    TYPE = "print"
    ARGS = ["label"]
    SINK = True
    THROUGH = True    # its out count: every value in (report.out_count)

    def setup(self, params, n_inputs):
        from sensormesh.device.steps.make import str_param
        self.label = params.get("label")
        if self.label is not None:
            str_param(self, "label", None)
        self.write = sys.stdout.write  # tests replace it

    def put(self, value):
        self.n_in += 1
        if self.label is not None:
            value = {"label": self.label, "value": value}
        try:   # CPython refuses a set, bytes or an object; MicroPython writes them as text
            text = _dumps(value)
        except Exception:
            self.failed(value, "the value cannot be written as JSON")
            return
        self.write(text + "\n")

    def flush(self):
        f = getattr(sys.stdout, "flush", None)
        if f is not None:
            f()


def _cell(x):
    if type(x) is str:
        s = x
    elif x is None:
        return ""
    else:
        s = _dumps(x)  # numbers, true/false, nested lists/objects as JSON
    if '"' in s or "," in s or "\n" in s or "\r" in s:
        return '"' + s.replace('"', '""') + '"'
    return s


class Csv(Step):
    """Appends one row per value to `path`.

    dict values: one column per key, `columns` or else the sorted keys of the first value;
    list values: one column per item; anything else: one column. A header row (the columns)
    is written once, and only into an empty file, so a restarted device appends.

    The step knows its position in the file (bytes). Acknowledged pipes put it into their
    checkpoints as "@<step id>" and acknowledge upstream only rows that were flushed (commit());
    a restarted device that takes the position back from the upstream's mark (adopt()) skips
    the replayed rows the file already holds, completing a row cut short by the restart: each
    value is in the file once (docs/reliability.md)."""
    TYPE = "csv"
    ARGS = ["path", "columns", "units"]
    SINK = True

    def setup(self, params, n_inputs):
        from sensormesh.device.steps.make import str_param
        self.path = str_param(self, "path", None)
        self.what = "csv write to '%s' failed" % self.path
        cols = params.get("columns")
        if cols is not None:
            if type(cols) is not list or not cols:
                raise self.bad("columns must be a non-empty list of names, got %r" % (cols,))
            for c in cols:
                if type(c) is not str or not c:
                    raise self.bad("columns must be a non-empty list of names, got %r" % (cols,))
        self.columns = cols
        u = params.get("units")
        if u is not None and type(u) is not dict:
            raise self.bad("units must map column names to unit symbols, got %r" % (u,))
        self.units = u      # header cells "name [unit]"; plain values are the column "value"
        import os
        try:
            size = os.stat(self.path)[6]
        except OSError:
            size = 0
        self.header_due = size == 0
        self.late_head = False      # rows without columns began the file: no header yet
        self.head_at = -1           # where the header naming self.columns starts (bytes), if known
        try:
            self.f = open(self.path, "ab")
        except OSError as e:
            raise self.bad("csv cannot open path '%s': %s" % (self.path, e))
        self.edge = "@" + self.id   # its name in checkpoint marks
        self.sid = self.id
        self.fed_by = None
        self.relay = False          # after evictions upstream it appends (no position to take back)
        self.pos = size             # bytes in the file once everything written is flushed
        self.flushed = size
        self.size = size            # the file's size when this process opened it
        self.skip_to = -1           # after adopt(): replayed rows that end by here are in the file
        self.adopted = False
        self.skipped = 0

    def put(self, value):
        self.n_in += 1
        try:
            self._row(value)
        except Exception:
            self.failed(value)

    def _row(self, value):
        if self.f is None:
            raise OSError("file closed")
        cols = self.columns
        head = self.header_due
        if type(value) is dict:
            if cols is None:
                cols = self.columns = sorted(value)
                head = head or self.late_head   # rows without names came first: name them now
            cells = [_cell(value.get(c)) for c in cols]
        elif type(value) is list or type(value) is tuple:
            cells = [_cell(x) for x in value]
        else:
            cells = [_cell(value)]
        text = ",".join(cells) + "\n"
        if head:
            self.header_due = self.late_head = False
            if cols is None:
                self.late_head = True       # the first dict's columns get their header row
                if self.units is not None and "value" in self.units and len(cells) == 1:
                    text = self._head("value") + "\n" + text
            else:
                self.head_at = self.pos     # a restart reads its columns back from there
                text = ",".join([self._head(c) for c in cols]) + "\n" + text
        data = text.encode()
        if self.skip_to >= 0:
            end = self.pos + len(data)
            if end <= self.skip_to:
                self.pos = end          # written before the restart
                self.flushed = end
                self.skipped += 1
                return
            if self.pos < self.skip_to:
                self._cut(self.pos)     # the restart cut this row short: write it whole
            self.skip_to = -1
        self.f.write(data)
        self.pos += len(data)

    def _cut(self, size):
        """Shorten the file to `size` bytes (the part of a row written before a restart)."""
        self.f.close()
        self.f = None
        import os
        trunc = getattr(os, "truncate", None)
        if trunc is not None:
            trunc(self.path, size)
        else:                           # MicroPython: copy what stays (files on boards are small)
            with open(self.path, "rb") as f:
                keep = f.read(size)
            with open(self.path, "wb") as f:
                f.write(keep)
        self.f = open(self.path, "ab")

    def _head(self, col):
        u = self.units
        if u is not None and u.get(col):
            return _cell("%s [%s]" % (col, u[col]))
        return _cell(col)

    # -- position (acknowledged pipes: runtime/pipes.py checkpoints) -----------------------------
    def position(self):
        # 1: the file began with rows without columns and the first dict's header is still due;
        # 2 + N: the header naming the columns of the dict rows starts at byte N (adopt() takes
        # either back, so a restarted device writes the same bytes)
        return [self.pos, 1 if self.late_head else self.head_at + 2 if self.head_at >= 0 else 0]

    def acked(self):
        return self.flushed

    def commit(self):
        """Flush what was written; True if the acknowledged position moved."""
        if self.pos == self.flushed or self.f is None:
            return False
        self.f.flush()
        self.flushed = self.pos
        return True

    def fresh(self):
        return not self.adopted and self.pos == self.size

    def adopt(self, pos, run):
        """The upstream's mark says the file held `pos` bytes when the input replayed next had
        last been acknowledged: the rows of the replay up to the file's end are already there."""
        self.adopted = True
        if pos > self.size:
            return                      # the file is shorter than it was: write everything again
        self.pos = self.flushed = pos
        self.skip_to = self.size
        self.header_due = pos == 0
        self.late_head = pos > 0 and run == 1
        if type(run) is int and 2 <= run < pos + 2 and self.columns is None:
            # rarely needed (once, at a restart): its code is loaded for the call only
            from sensormesh.device.steps import rare_call
            rare_call("sensormesh.device.steps.csv_head", "read_columns", self, run - 2)

    def flush(self):
        if self.f is not None:
            self.f.flush()
            self.flushed = self.pos

    def close(self):
        f = self.f
        self.f = None
        if f is not None:
            f.flush()
            f.close()

    def out_count(self):
        return self.n_in - self.dropped - self.skipped

    def stats(self):
        s = self.base_stats()
        if self.skipped:
            s["skipped"] = self.skipped
        return s


# type name -> class, read by kinds.step_class()
CLASSES = {"print": Print, "csv": Csv}
