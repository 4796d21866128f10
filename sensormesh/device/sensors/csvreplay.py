# A sensor that replays a CSV file: one value per row, looping at the end if asked.
#
# A row with one column gives a number; several columns give a dict keyed by the header
# (or a list when there is no header). Cells that parse as numbers become numbers.


def _cell(text):
    text = text.strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


class CsvReplay:
    RATE_HZ = 10
    UNIT = "the file's values"

    def __init__(self, path, column=None, loop=True, header=None, seed=None):
        self.path = path
        self.loop = loop
        self.column = column
        self.rows = []
        try:
            f = open(path)
        except OSError as e:
            raise OSError("cannot open CSV file %r: %s" % (path, e))
        with f:
            lines = [ln for ln in f.read().split("\n") if ln.strip()]
        if not lines:
            raise ValueError("CSV file %r has no rows" % path)
        first = [c.strip() for c in lines[0].split(",")]
        if header is None:
            header = any(type(_cell(c)) is str for c in first)
        self.names = first if header else None
        body = lines[1:] if header else lines
        if not body:
            raise ValueError("CSV file %r has a header but no data rows" % path)
        idx = None
        if column is not None:
            if self.names and column in self.names:
                idx = self.names.index(column)
            else:
                try:
                    idx = int(column)
                except ValueError:
                    raise ValueError("CSV file %r has no column %r (columns: %s)" % (path, column, self.names))
        for ln in body:
            cells = [_cell(c) for c in ln.split(",")]
            if idx is not None:
                self.rows.append(cells[idx] if idx < len(cells) else None)
            elif len(cells) == 1:
                self.rows.append(cells[0])
            elif self.names:
                self.rows.append(dict(zip(self.names, cells)))
            else:
                self.rows.append(cells)
        self.i = 0

    def get(self):
        if self.i >= len(self.rows):
            if not self.loop:
                return None
            self.i = 0
        v = self.rows[self.i]
        self.i += 1
        return v
