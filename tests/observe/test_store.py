"""The metrics store: rates from monotonic counters (resets included), rings, latency percentiles,
the SQLite and CSV files, and `sensormesh top` drawn once into text."""
import csv
import sqlite3

import pytest

from sensormesh.controller.observe import files
from sensormesh.controller.observe.store import Store, percentile
from sensormesh.controller.observe.top import rates_line, render_text

from fakepoll import FakePoller, pipe, step


def fed(writer=None, ring=600):
    store = Store(writer, ring=ring)
    poll = FakePoller()
    poll.subscribe(store.feed)
    return store, poll


def test_rates_from_counters_and_a_reset():
    store, poll = fed()
    poll.snapshot("board", 10.0, 0, 0, {"avg": step(0, 0, 0)}, {"avg->pc": pipe(0, 0)})
    poll.snapshot("board", 12.0, 500_000, 2_000_000, {"avg": step(200, 20, 100_000)}, {"avg->pc": pipe(20, 4000)})
    v = store.view()
    assert v["devices"]["board"]["busy"] == pytest.approx(0.25)
    assert v["steps"]["avg"]["in_per_s"] == pytest.approx(100.0)
    assert v["steps"]["avg"]["out_per_s"] == pytest.approx(10.0)
    assert v["steps"]["avg"]["time_per_value_s"] == pytest.approx(0.0005)
    (p,) = v["pipes"]
    assert (p["values_per_s"], p["bytes_per_s"], p["delay_s"]) == pytest.approx((10.0, 2000.0, 0.0004))
    # the device restarted: counters begin again at zero; the increase is the new value itself
    poll.snapshot("board", 13.0, 100_000, 1_000_000, {"avg": step(30, 3, 0)}, {"avg->pc": pipe(3, 600)})
    v = store.view()
    assert v["steps"]["avg"]["in_per_s"] == pytest.approx(30.0)
    assert v["pipes"][0]["values_per_s"] == pytest.approx(3.0)
    assert v["devices"]["board"]["busy"] == pytest.approx(0.1)
    assert v["devices"]["board"]["resets"] >= 1
    assert store.totals[("pipe", "board", "avg->pc", "values")] == 23      # monotonic across the reset
    assert store.totals[("step", "board", "avg", "in")] == 230
    assert any("reset" in text for _, text in store.events)


def test_first_snapshot_has_no_rate_and_rings_are_bounded():
    store, poll = fed(ring=5)
    for i in range(20):
        poll.snapshot("a", 100.0 + i, i * 1000, i * 10_000, {"s": step(i * 7, i * 7)}, {})
        if i == 0:
            assert store.view()["steps"]["s"]["in_per_s"] is None
    hist = store.history("step", "a", "s", "in_per_s")
    assert len(hist) == 5 and hist[-1] == (119.0, pytest.approx(7.0))


def test_latency_percentiles_per_sink():
    store, poll = fed()
    for i in range(100):
        poll.latency(50.0 + i * 0.1, "alarms", (i + 1) / 1000.0)
    poll.latency(60.0, "log", 0.25, 0.002)
    lat = store.latency_stats()
    assert lat["alarms"]["p50"] == pytest.approx(0.050)
    assert lat["alarms"]["p99"] == pytest.approx(0.099)
    assert lat["alarms"]["n"] == 100
    assert lat["log"] == {"p50": 0.25, "p99": 0.25, "n": 1, "bound": 0.002}
    assert percentile([], 50) is None


def test_snapshots_that_are_not_metrics_are_ignored():
    store, poll = fed()
    poll.send({"t": 1, "device": "x", "metrics": "nope"})
    poll.send(["not", "a", "dict"])
    poll.send({"t": 1, "sink": "s", "latency_s": "slow"})
    assert store.view()["devices"] == {} and store.latency_stats() == {}


def feed_two(poll):
    for k in range(3):
        t = 10.0 + k
        poll.snapshot("board-1", t, k * 100_000, k * 1_000_000, {"temp": step(0, k * 20), "smooth": step(k * 20, k * 2)},
                      {"smooth->pc": pipe(k * 2, k * 80)}, interp="micropython",
                      mem={"heap_free": 60_000 - k, "heap_largest": 30_000})
        poll.snapshot("pc", t, k * 10_000, k * 1_000_000, {"alarm": step(k * 2, k)},
                      {"smooth->pc": pipe(k * 2, k * 80, direction="in", peer="board-1")})
        poll.latency(t, "alarms", 0.002 + k / 1000.0)


def test_sqlite_file_holds_every_sample(tmp_path):
    path = str(tmp_path / "m.sqlite")
    store, poll = fed(files.open_writer(path))
    store.set_info(pipeline="demo")
    feed_two(poll)
    store.event("a note")
    store.close()
    db = sqlite3.connect(path)
    rate = db.execute("SELECT t, value FROM samples WHERE kind='pipe' AND device='board-1' AND entity='smooth->pc' "
                      "AND metric='values_per_s' ORDER BY t").fetchall()
    assert rate == [(11.0, 2.0), (12.0, 2.0)]
    raw = db.execute("SELECT value FROM samples WHERE kind='step' AND entity='temp' AND metric='out' ORDER BY t")
    assert [r[0] for r in raw] == [0, 20, 40]
    heap = db.execute("SELECT value FROM samples WHERE metric='heap_free_bytes' ORDER BY t").fetchall()
    assert [r[0] for r in heap] == [60_000, 59_999, 59_998]
    assert db.execute("SELECT count(*), max(latency_s) FROM latency").fetchone() == (3, pytest.approx(0.004))
    assert db.execute("SELECT value FROM run WHERE key='pipeline'").fetchone() == ("demo",)
    assert db.execute("SELECT text FROM events").fetchall() == [("a note",)]


def test_csv_file(tmp_path):
    path = str(tmp_path / "m.csv")
    store, poll = fed(files.open_writer(path))
    feed_two(poll)
    store.close()
    rows = list(csv.DictReader(open(path)))
    assert set(rows[0]) == set(files.CSV_COLUMNS)
    busy = [float(r["value"]) for r in rows if r["kind"] == "device" and r["device"] == "board-1"
            and r["metric"] == "busy"]
    assert busy == [pytest.approx(0.1), pytest.approx(0.1)]
    assert len([r for r in rows if r["kind"] == "latency" and r["metric"] == "latency_s"]) == 3


def test_bad_file_names_are_refused_clearly(tmp_path):
    with pytest.raises(files.FileError, match=r"\.sqlite.*\.csv"):
        files.open_writer(str(tmp_path / "m.parquet"))
    assert files.default_path("my pipe", now=0) == ".sensormesh/metrics-my_pipe-19700101-000000.sqlite"


def test_top_renders_the_rows():
    store, poll = fed()
    feed_two(poll)
    store.set_info(pipeline="demo", placement={"devices": ["board-1", "pc", "spare"],
                                               "device_of": {"temp": "board-1", "smooth": "board-1", "alarm": "pc"}})
    text = render_text(store.view())
    lines = text.splitlines()
    row = lambda first: next(l for l in lines if l.split() and l.split()[0] == first)  # noqa: E731
    assert "sensormesh top: demo" in text
    b1 = row("board-1")
    assert "micropython" in b1 and "10.0%" in b1 and "heap 60 kB free, 30 kB block" in b1 and "smooth, temp" in b1
    assert "1.0%" in row("pc") and "RSS 20 MB" in row("pc")
    assert row("spare").split()[1:3] == ["-", "-"]
    assert row("smooth").split()[1:4] == ["board-1", "20", "2"]
    pipes = [l for l in lines if l.strip().startswith("smooth->pc")]
    assert len(pipes) == 2 and "80 B" in pipes[0] and "400 us" in pipes[0]
    assert row("alarms").split()[1:] == ["3", "ms", "4", "ms", "500", "us", "3"]
    line = rates_line(store.view())
    assert "board-1 10.0%" in line and "smooth->pc 2/s" in line and "alarms e2e p50 3 ms" in line


def test_the_first_rates_line_shows_a_dash_for_rates_not_known_yet():
    # one poll gives no rate (a rate needs two): the line of `status --watch` and `up` says "-"
    # for it rather than a bare device name, and has numbers once a second poll came
    store, poll = fed()
    poll.snapshot("board", 10.0, 0, 0, {"avg": step(0, 0, 0)}, {"avg->pc": pipe(0, 0)})
    line = rates_line(store.view())
    assert line.startswith("rates: load board - | pipes avg->pc -/s"), line
    poll.snapshot("board", 11.0, 250_000, 1_000_000, {"avg": step(100, 10, 0)}, {"avg->pc": pipe(10, 400)})
    assert rates_line(store.view()).startswith("rates: load board 25.0% | pipes avg->pc 10/s")


def test_a_restart_is_one_reset_and_one_event_not_one_per_counter():
    """A restart resets every counter of the device at once: the views must get one event saying
    so (not one per counter, which pushes failures and re-routes out of the last events shown)
    and the device's reset count grows by one."""
    store, poll = fed()
    steps = lambda n: {s: step(n, n, n) for s in ("a", "b", "c", "d", "e")}   # noqa: E731
    pipes = lambda n: {"a->pc": pipe(n, n * 10), "b->pc": pipe(n, n * 10)}   # noqa: E731
    poll.snapshot("board", 10.0, 500_000, 1_000_000, steps(100), pipes(100))
    store.event("board failed: no answer")
    poll.snapshot("board", 11.0, 1000, 2000, steps(3), pipes(3))        # restarted
    texts = [text for _, text in store.events]
    assert texts[0] == "board failed: no answer"
    assert len(texts) == 2, texts
    assert "board: counters reset" in texts[1] and "restarted" in texts[1] and "more" in texts[1]
    assert store.view()["devices"]["board"]["resets"] == 1
    assert store.view()["steps"]["a"]["in_per_s"] == pytest.approx(3.0)
    poll.snapshot("board", 12.0, 2000, 3000, steps(5), pipes(5))        # counting on: no reset
    assert len(store.events) == 2 and store.view()["devices"]["board"]["resets"] == 1


def test_latency_of_the_last_minute_leaves_out_a_sink_that_stopped():
    """A sink that gets no values any more (its source died) must not go on showing the
    percentiles of minutes ago as the latency of the last minute, in top, the dashboard or
    /metrics' quantiles; the run's count and sum stay."""
    store, poll = fed()
    for i in range(10):
        poll.latency(100.0 + i, "alarms", 0.010)
        poll.latency(100.0 + i, "log", 0.020)
    assert set(store.latency_stats()) == {"alarms", "log"}
    for i in range(10, 100):          # the devices keep answering; only "log" gets values
        poll.snapshot("pc", 100.0 + i, i * 1000, i * 1_000_000, {}, {})
        poll.latency(100.0 + i, "log", 0.020)
    stats = store.latency_stats()
    assert set(stats) == {"log"} and stats["log"]["n"] == 61
    for i in range(100, 200):         # the source of both died: no sink gets values any more
        poll.snapshot("pc", 100.0 + i, i * 1000, i * 1_000_000, {}, {})
    assert store.latency_stats() == {}
    text = render_text(store.view())
    assert "alarms" not in text and "log" not in text
    assert store.latency_count == {"alarms": 10, "log": 100}


def test_a_metrics_file_of_an_earlier_run_is_replaced_and_other_databases_are_refused(tmp_path):
    """`--metrics-out run.sqlite` given twice: the file holds the second run only (as a CSV file
    does), not both runs mixed under the second run's `run` table; a database of something else
    is refused and left as it was."""
    path = str(tmp_path / "run.sqlite")
    for run, n in (("first", 5), ("second", 2)):
        store, poll = fed(files.open_writer(path))
        store.set_info(pipeline=run)
        for i in range(n):
            poll.snapshot("board", 10.0 + i, i, 10 * i, {"s": step(i, i)}, {})
            poll.latency(10.0 + i, "k", 0.01)
        store.event("run " + run)
        store.close()
    db = sqlite3.connect(path)
    assert db.execute("SELECT value FROM run WHERE key='pipeline'").fetchone() == ("second",)
    assert db.execute("SELECT count(*) FROM samples WHERE entity='s' AND metric='in'").fetchone() == (2,)
    assert db.execute("SELECT count(*) FROM latency").fetchone() == (2,)
    assert [r[0] for r in db.execute("SELECT text FROM events")] == ["run second"]
    db.close()

    other = str(tmp_path / "mine.db")
    db = sqlite3.connect(other)
    db.execute("CREATE TABLE readings (x)")
    db.execute("INSERT INTO readings VALUES (1)")
    db.commit()
    db.close()
    with pytest.raises(files.FileError, match=r"mine\.db is a database with other tables \(readings\)"):
        files.open_writer(other)
    db = sqlite3.connect(other)
    assert db.execute("SELECT x FROM readings").fetchall() == [(1,)]
    assert [r[0] for r in db.execute("SELECT name FROM sqlite_master")] == ["readings"]


def test_a_device_with_its_metrics_off_has_no_loop_load():
    """A device run with --no-metrics does not time its loop's waits: it reports busy_us equal
    to wall_us. That is no load figure, not a load of 100% (top, the rates line, the dashboard's
    bar, the file and /metrics)."""
    store, poll = fed()
    for k in range(3):
        m = {"device": "b", "interp": "micropython", "enabled": False, "tick_us": k * 1_000_000,
             "loop": {"busy_us": k * 1_000_000, "wall_us": k * 1_000_000}, "mem": {"heap_free": 40_000},
             "steps": {"s": {"in": 10 * k, "out": 10 * k}}, "pipes": {}, "latency": []}
        poll.send({"t": 10.0 + k, "device": "b", "metrics": m, "offset": None, "offset_bound": None})
    v = store.view()
    assert v["devices"]["b"]["busy"] is None
    assert v["steps"]["s"]["in_per_s"] == 10.0               # counts still count
    assert "100.0%" not in render_text(v) and "100.0%" not in rates_line(v)
    from sensormesh.controller.observe.prom import exposition
    assert 'sensormesh_device_loop_busy_seconds_total{device="b"}' not in exposition(store)[0].decode()


def test_latency_samples_a_device_dropped_are_kept_in_the_file_and_on_metrics(tmp_path):
    # a device that could not hand out every latency sample counts the ones it dropped
    # (latency_dropped): the metrics file holds that counter, the view its total since the
    # controller began watching, and /metrics exports it, so the latency figures say what they miss
    from sensormesh.controller.observe.prom import exposition
    for name in ("m.sqlite", "m.csv"):
        path = str(tmp_path / name)
        store, poll = fed(files.open_writer(path))
        poll.subscribers.insert(0, lambda item: item.get("metrics", {}).update(
            latency_dropped=item["t"] // 10 * 3) if "metrics" in item else None)
        feed_two(poll)             # t = 10, 11, 12: 3 dropped before the controller watched; 3 more by t = 20
        poll.snapshot("board-1", 20.0, 300_000, 3_000_000, {}, {}, interp="micropython", mem={})
        v = store.view()
        assert v["devices"]["board-1"]["latency_dropped"] == 3
        body = exposition(store)[0].decode()
        store.close()
        assert 'sensormesh_device_latency_samples_dropped_total{device="board-1"} 3.0' in body
        if name.endswith(".sqlite"):
            rows = sqlite3.connect(path).execute(
                "SELECT t, value FROM samples WHERE device='board-1' AND metric='latency_dropped' ORDER BY t").fetchall()
        else:
            rows = [(float(r["t"]), float(r["value"])) for r in csv.DictReader(open(path))
                    if r["device"] == "board-1" and r["metric"] == "latency_dropped"]
        assert rows == [(10.0, 3), (11.0, 3), (12.0, 3), (20.0, 6)]


def test_a_csv_metrics_file_of_an_earlier_run_is_replaced_and_other_csv_files_are_refused(tmp_path):
    # `--metrics-out data.csv` naming the user's own CSV file must not overwrite it, as a
    # database with other tables is not; the metrics CSV of an earlier run is replaced
    path = str(tmp_path / "run.csv")
    for n in (5, 2):
        store, poll = fed(files.open_writer(path))
        for i in range(n):
            poll.snapshot("board", 10.0 + i, i, 10 * i, {"s": step(i, i)}, {})
        store.close()
    rows = list(csv.DictReader(open(path)))
    assert len([r for r in rows if r["entity"] == "s" and r["metric"] == "in"]) == 2
    mine = tmp_path / "data.csv"
    mine.write_text("time,temperature\n1,20.5\n")
    with pytest.raises(files.FileError, match=r"data\.csv is a CSV file with other columns \(time,temperature\), "
                                              r"not a sensormesh metrics file"):
        files.open_writer(str(mine))
    assert mine.read_text() == "time,temperature\n1,20.5\n"


def test_the_rates_line_of_a_fleet_stays_a_line():
    # 200 boards used to give a line of ~7000 characters every five seconds
    devices = {"s%d" % i: {"busy": 0.001 * (i % 7)} for i in range(200)}
    devices["pc"] = {"busy": 0.205}
    devices["s7"] = {"down": True}
    devices["s8"] = {"down": True}
    pipes = [{"dir": "out", "edge": "w%d->pc" % i, "values_per_s": 0.5, "delay_s": 0.001 * (i == 42) or 0.0002}
             for i in range(200)]
    pipes += [{"dir": "in", "edge": "w%d->pc" % i, "values_per_s": 0.5, "delay_s": None} for i in range(200)]
    view = {"devices": devices, "pipes": pipes, "latency": {"out": {"p50": 0.002, "p99": 0.004}}}
    line = rates_line(view)
    assert line == ("rates: load 201 devices, busiest pc 20.5%, s6 0.6%, s13 0.6%, median 0.3%, DOWN s7, s8 | "
                    "pipes 200 pipes 100/s in all, longest delay w42->pc 1 ms | out e2e p50 2 ms p99 4 ms"), line
    # a few devices: each one, as before
    few = {"devices": {"board": {"busy": 0.25}, "pc": {"down": True}},
           "pipes": [{"dir": "out", "edge": "avg->pc", "values_per_s": 10, "delay_s": None}], "latency": {}}
    assert rates_line(few) == "rates: load board 25.0%, pc DOWN | pipes avg->pc 10/s"
