# The CSV replay sensor on both interpreters: rows read as values are asked for, cells typed as
# the csv sink writes them, the header's units left out of the column names.
import os

from sensormesh.device.sensors import make, SensorError


def _file(text):
    path = "/tmp/sensormesh-test-csvreplay-%s.csv" % "".join("%02x" % c for c in os.urandom(6))
    with open(path, "w") as f:
        f.write(text)
    return path


def _gone(path):
    try:
        os.remove(path)
    except OSError:
        pass


def test_quoted_cells_stay_text_and_empty_cells_are_null():
    p = _file('name,value,ok\n"007",,true\n"say ""hi"", twice",1.5,false\nplain, 3 ,\n')
    try:
        s = make({"kind": "csv", "path": p, "loop": False})
        assert s.get() == {"name": "007", "value": None, "ok": True}, "quoted 007 stays text"
        assert s.get() == {"name": 'say "hi", twice', "value": 1.5, "ok": False}
        assert s.get() == {"name": "plain", "value": 3, "ok": None}
        assert s.get() is None
        s.close()
    finally:
        _gone(p)


def test_a_header_with_units_names_the_columns_without_them():
    p = _file("temp [°C],hum [%]\n21.5,40\n22,41\n")
    try:
        s = make({"kind": "csv", "path": p})
        assert s.get() == {"temp": 21.5, "hum": 40}
        one = make({"kind": "csv", "path": p, "column": "hum", "loop": False})
        assert [one.get() for _ in range(3)] == [40, 41, None]
        s.close()
        one.close()
    finally:
        _gone(p)


def test_rows_are_read_one_at_a_time_so_the_file_can_change_behind_the_replay():
    # Reading row by row is what lets a board replay a recording larger than its heap; a file
    # grown after the sensor was made is replayed to its new end.
    p = _file("1\n2\n")
    try:
        s = make({"kind": "csv", "path": p, "loop": False})
        assert s.get() == 1
        with open(p, "a") as f:
            f.write("3\n")
        assert [s.get(), s.get(), s.get()] == [2, 3, None]
        s.close()
    finally:
        _gone(p)


def test_looping_starts_again_after_the_header_and_skips_blank_lines():
    p = _file("x\n\n1\n\n2\n")
    try:
        s = make({"kind": "csv", "path": p})
        assert [s.get() for _ in range(5)] == [1, 2, 1, 2, 1]
        s.close()
        q = _file("5\n6\n")
        try:
            t = make({"kind": "csv", "path": q})
            assert [t.get() for _ in range(3)] == [5, 6, 5], "no header: the first row is data"
            t.close()
        finally:
            _gone(q)
    finally:
        _gone(p)


def test_empty_headerless_and_unknown_column_files_are_refused_by_name():
    for text, why in (("", "no rows"), ("\n\n", "no rows"), ("a,b\n", "no data rows")):
        p = _file(text)
        try:
            try:
                make({"name": "rec", "kind": "csv", "path": p})
            except SensorError as e:
                assert why in str(e) and "rec" in str(e), str(e)
            else:
                assert False, "accepted %r" % text
        finally:
            _gone(p)
    p = _file("a,b\n1,2\n")
    try:
        try:
            make({"name": "rec", "kind": "csv", "path": p, "column": "c"})
        except SensorError as e:
            assert "no column 'c'" in str(e) and "a, b" in str(e), str(e)
        else:
            assert False, "unknown column accepted"
    finally:
        _gone(p)


def _bytes_file(data):
    path = "/tmp/sensormesh-test-csvreplay-%s.csv" % "".join("%02x" % c for c in os.urandom(6))
    with open(path, "wb") as f:
        f.write(data)
    return path


def test_a_file_that_is_not_utf8_is_named_with_what_to_do():
    # Before: MicroPython said "configuration error: sensor 'c': " (UnicodeError has no text);
    # CPython named a codec and a byte position, not the file
    p = _bytes_file(b"t \xb0C,h\n1,2\n")
    try:
        try:
            make("c=csv:" + p)
        except SensorError as e:
            assert str(e) == "sensor 'c': CSV file %r: a line is not UTF-8 text (save the file as UTF-8)" % p, str(e)
        else:
            raise AssertionError("accepted")
    finally:
        _gone(p)


def test_a_line_that_is_not_utf8_is_skipped_counted_by_the_reader_and_the_replay_goes_on():
    # Before, on CPython: every read after such a line failed (the text decoder stays broken),
    # so the rest of the file, the loop back to the top included, was never read again
    rows = b"".join(b"%d\n" % i for i in range(3000))
    p = _bytes_file(b"v\n" + rows + b"5\xb0\n7\n")
    try:
        s = make({"kind": "csv", "path": p})
        got = [s.get() for _ in range(3000)]
        assert got == list(range(3000))
        try:
            s.get()
        except ValueError as e:
            assert "a line is not UTF-8 text" in str(e) and p in str(e), str(e)
        else:
            raise AssertionError("a bad line read as a value")
        assert s.get() == 7
        assert s.get() == 0      # from the top again
        s.close()
    finally:
        _gone(p)


def test_a_byte_order_mark_is_not_part_of_the_first_cell():
    # Before: a spreadsheet's "CSV UTF-8" named the first column "\ufefftemp" (or read the first
    # value of a headerless file as text)
    p = _bytes_file(b"\xef\xbb\xbftemp,hum\n21.5,40\n")
    q = _bytes_file(b"\xef\xbb\xbf21.5\n22\n")
    try:
        s = make({"kind": "csv", "path": p, "loop": False})
        assert s.names == ["temp", "hum"] and s.get() == {"temp": 21.5, "hum": 40}
        s.close()
        s = make({"kind": "csv", "path": q})
        assert [s.get(), s.get(), s.get()] == [21.5, 22, 21.5]
        s.close()
    finally:
        _gone(p)
        _gone(q)


def test_a_column_number_the_file_does_not_have_is_refused():
    # Before: column 7 of a file of two columns replayed null for every row, and a column that
    # is not a name or a number ended in a TypeError
    p = _file("1,2\n3,4\n")
    q = _file("a,b\n1,2\n")
    try:
        for path, column, words in ((p, 7, "no column 7 (2 columns, numbered from 0)"), (p, -1, "no column -1"),
                                    (p, [1], "no column [1]"), (q, 2, "no column 2 (columns: a, b)")):
            try:
                make({"name": "rec", "kind": "csv", "path": path, "column": column})
            except SensorError as e:
                assert words in str(e) and "sensor 'rec'" in str(e), str(e)
            else:
                raise AssertionError("column %r accepted" % (column,))
        s = make({"kind": "csv", "path": p, "column": 1})
        assert [s.get(), s.get(), s.get()] == [2, 4, 2]
        s.close()
        s = make({"kind": "csv", "path": q, "column": "1"})
        assert s.get() == 2
        s.close()
    finally:
        _gone(p)
        _gone(q)
