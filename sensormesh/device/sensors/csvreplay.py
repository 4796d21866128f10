# A sensor that replays a CSV file: one value per row, looping at the end if asked.
#
# The file is read a row at a time as values are asked for, so a board replays a recording larger
# than its heap. A row with one column gives that cell; several columns give a dict keyed by the
# header (or a list when there is no header). An unquoted cell that reads as a number is a number,
# `true`/`false` are booleans, an empty cell is None (null); a quoted cell stays text, with `""`
# read as `"`. A header cell `name [unit]`, as the csv sink writes it, names the column `name`.
# A row is one line: a quoted cell cannot span lines. Each line is decoded on its own (the file
# is opened in binary): a line that is not UTF-8 fails its read alone, and the next one reads.


def _cell(text):
    text = text.strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        pass
    if text == "true":
        return True
    if text == "false":
        return False
    return text


def _cells(line):
    """The cells of one line, quoted ones as text."""
    out = []
    i = 0
    n = len(line)
    while True:
        while i < n and line[i] in " \t":
            i += 1
        if i < n and line[i] == '"':
            i += 1
            text = ""
            while True:
                j = line.find('"', i)
                if j < 0:                       # no closing quote: the rest of the line
                    text += line[i:]
                    i = n
                    break
                text += line[i:j]
                if line[j + 1:j + 2] == '"':    # "" inside quotes
                    text += '"'
                    i = j + 2
                    continue
                i = j + 1
                break
            out.append(text)
            j = line.find(",", i)
        else:
            j = line.find(",", i)
            out.append(_cell(line[i:] if j < 0 else line[i:j]))
        if j < 0:
            return out
        i = j + 1


def _name(cell):
    """A header cell's column name: `temp [°C]` names the column `temp`."""
    if type(cell) is not str:
        return str(cell)
    k = cell.find(" [")
    if k > 0 and cell.endswith("]"):
        return cell[:k]
    return cell


class CsvReplay:
    RATE_HZ = 10
    UNIT = "the file's values"

    def __init__(self, path, column=None, loop=True, header=None, seed=None):
        self.path = path
        self.loop = loop
        try:
            self.f = open(path, "rb")   # each line decoded on its own: a bad one is skipped
        except OSError as e:
            raise OSError("cannot open CSV file %r: %s" % (path, e))
        first = self._next_or_close()
        if first is None:
            self.close()
            raise ValueError("CSV file %r has no rows" % path)
        start = 0
        if first[:1] == "\ufeff":    # a byte order mark (a spreadsheet's "CSV UTF-8"): not a cell's
            first = first[1:]
            start = 3
        cells = _cells(first)
        if header is None:   # a header when a cell of the first row is text
            header = False
            for c in cells:
                if type(c) is str:
                    header = True
        self.names = [_name(c) for c in cells] if header else None
        self.body = self.f.tell() if header else start   # where the data rows start
        if not header:
            self.f.seek(start)
        elif self._next_or_close() is None:
            self.close()
            raise ValueError("CSV file %r has a header but no data rows" % path)
        else:
            self.f.seek(self.body)
        self.idx = None
        if column is not None:
            if self.names and column in self.names:
                self.idx = self.names.index(column)
            else:
                try:
                    self.idx = int(column) if type(column) in (int, str) else -1
                except ValueError:
                    self.idx = -1
                if not 0 <= self.idx < len(cells):   # (before: null for every row)
                    self.close()
                    raise ValueError("CSV file %r has no column %r (%s)" % (
                        path, column, "columns: " + ", ".join(self.names) if self.names
                        else "%d columns, numbered from 0" % len(cells)))

    def _next_or_close(self):
        try:
            return self._line()
        except ValueError:
            self.close()
            raise

    def _line(self):
        """The next line that is not blank, without its end, or None at the end of the file."""
        while True:
            ln = self.f.readline()
            if not ln:
                return None
            try:
                ln = ln.decode()
            except UnicodeError:    # (MicroPython's says nothing: the file and what to do)
                raise ValueError("CSV file %r: a line is not UTF-8 text (save the file as UTF-8)" % self.path)
            ln = ln.rstrip("\r\n")
            if ln.strip():
                return ln

    def get(self):
        if self.f is None:
            return None
        ln = self._line()
        if ln is None:
            if not self.loop:
                return None
            self.f.seek(self.body)
            ln = self._line()
            if ln is None:
                return None
        cells = _cells(ln)
        if self.idx is not None:
            return cells[self.idx] if self.idx < len(cells) else None
        if len(cells) == 1:
            return cells[0]
        if self.names:
            d = {}
            for i in range(len(self.names)):
                d[self.names[i]] = cells[i] if i < len(cells) else None
            return d
        return cells

    def close(self):
        if self.f is not None:
            self.f.close()
            self.f = None
