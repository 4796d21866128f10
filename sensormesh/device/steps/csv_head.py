# The header of a csv sink's file read back (steps/sinks.py, Csv.adopt): a restarted sink that
# takes its position back from the upstream's mark also takes back the columns its dict rows
# follow, from the header at the byte the mark names, so replayed dicts with other keys give the
# rows the file holds. Loaded for that one call and forgotten after it (steps.rare_call).
_HEAD_MAX = 1024     # bytes of a header line read back: a longer one is not


def _parse(line):
    """The cells of one csv line as _cell() wrote them (quoted cells with doubled quotes)."""
    cells = []
    i = 0
    n = len(line)
    while True:
        if i < n and line[i] == '"':
            j = i + 1
            buf = []
            while True:
                k = line.find('"', j)
                if k < 0:
                    raise ValueError("unterminated quote")
                buf.append(line[j:k])
                if k + 1 < n and line[k + 1] == '"':
                    buf.append('"')
                    j = k + 2
                else:
                    break
            cells.append("".join(buf))
            i = k + 1
        else:
            k = line.find(",", i)
            if k < 0:
                k = n
            cells.append(line[i:k])
            i = k
        if i >= n:
            return cells
        if line[i] != ",":
            raise ValueError("text after a quoted cell")
        i += 1
        if i == n:
            cells.append("")
            return cells


def read_columns(step, at):
    """Take the columns of the dict rows back from their header at byte `at` of the file, so
    that replayed dicts with other keys give the rows the file holds (not the first
    replayed dict's keys). A header longer than _HEAD_MAX bytes is not read: logged, and
    the first replayed dict gives the columns."""
    try:
        with open(step.path, "rb") as f:
            f.seek(at)
            line = f.read(_HEAD_MAX)
        end = line.find(b"\n")
        if end < 0:
            raise ValueError("no header line within %d bytes at byte %d" % (_HEAD_MAX, at))
        names = _parse(line[:end].decode())
    except Exception as e:
        step.ctx.log("step '%s': csv cannot read its columns back from '%s' (%s); the first "
                     "replayed value's keys name them" % (step.id, step.path, e))
        return
    u = step.units
    for i in range(len(names)):
        n = names[i]
        if u is not None and n.endswith("]") and " [" in n:
            c = n[:n.rfind(" [")]
            if u.get(c) and n == "%s [%s]" % (c, u[c]):
                names[i] = c
    step.columns = names
    step.head_at = at
