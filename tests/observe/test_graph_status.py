"""The placement graph (Graphviz) and snapshots made from plain status replies."""
import html
import os

from sensormesh.controller.observe.fromstatus import StatusPoller, hop_peers, metrics_from_status
from sensormesh.controller.observe.graph import render_svg, to_dot
from sensormesh.controller.observe.run import placement_info
from sensormesh.controller.observe.store import Store
from sensormesh.controller.pipeline_file import load_model

from procs import ROOT

TWO_DOMAINS = os.path.join(ROOT, "examples", "pipelines", "two_domains.yaml")


def test_graph_puts_steps_in_their_devices_and_relays_on_the_route():
    model = load_model(TWO_DOMAINS)
    pl = model.place("optimal")
    info = placement_info(model, pl)
    relayed = [p for p in info["pipes"] if len(p["route"]) > 2]
    assert relayed, "the example routes a pipe through a gateway"
    dot = to_dot(info)
    for p in relayed:
        for d in p["route"][1:-1]:
            assert '"relay:%s:%s"' % (d, p["edge"]) in dot
    svg = html.unescape(render_svg(info))
    assert svg.startswith("<svg")
    for dev in model.devices:
        assert 'id="device:%s"' % dev in svg
    for sid in model.steps:
        assert 'id="step:%s"' % sid in svg
    for p in info["pipes"]:
        assert 'id="pipe:%s"' % p["edge"] in svg


def test_snapshots_from_status_replies_name_pipes_and_peers():
    model = load_model(TWO_DOMAINS)
    pl = model.place("optimal")
    p = next(p for p in pl.pipes if len(p.route) > 2)
    hop1 = "%s@1" % p.edge
    assert hop_peers(pl)[hop1] == (p.route[0], p.route[1])
    st = {"name": p.src, "mem_free": 50_000, "assignment": {"steps": {
        p.producer: {"in": 10, "out": 5}, "out:" + hop1: {"in": 5, "out": 4, "pending": 1, "unshipped": 0,
                                                          "connects": 2}}}}
    m = metrics_from_status(p.src, st, "micropython", hop_peers(pl))
    assert m["steps"] == {p.producer: {"in": 10, "out": 5}}
    assert m["pipes"][hop1] == {"dir": "out", "peer": p.route[1], "values": 4, "reconnects": 1, "queue": 1}
    assert m["mem"] == {"heap_free": 50_000}

    class Sup:
        placement = pl
        last_status = {p.src: st}
    store = Store()
    poller = StatusPoller(Sup(), clock=iter([1.0, 2.0]).__next__)
    poller.subscribe(store.feed)
    poller.poll()
    poller.poll()                       # the same reply again: no second snapshot
    assert store.prev[("pipe", p.src, hop1, "values")] == (1.0, 4)
    Sup.last_status = {p.src: dict(st, assignment={"steps": {"out:" + hop1: {"out": 14}}})}
    poller.poll()
    assert store.view()["pipes"][0]["values_per_s"] == 10.0


def test_devices_without_metrics_are_watched_through_their_status(monkeypatch):
    """A device that does not answer {"metrics"} (an older version) still shows its counts:
    the Observation falls back to its status replies, and only for that device."""
    from sensormesh.controller.observe import run

    class Poller:
        latest = {"new": {}}
        errors = {"old": "old: unknown message metrics"}

        def subscribe(self, fn):
            pass

        def start(self):
            pass

        def poll(self):
            pass

    class Sup:
        placement = None
        last_status = {}
    monkeypatch.setattr(run, "make_poller", lambda sup, model: Poller())
    model = load_model(TWO_DOMAINS)
    obs = run.Observation(model, out=False)
    obs.attach(Sup())
    for k, n in enumerate((10, 30)):
        Sup.last_status = {dev: {"name": dev, "assignment": {"steps": {"s_" + dev: {"in": n, "out": n}}}}
                           for dev in ("old", "new")}
        obs.fallback.clock = lambda k=k: 100.0 + k
        obs.tick()
    steps = obs.store.view()["steps"]
    assert steps["s_old"]["in_per_s"] == 20.0
    assert "s_new" not in steps          # that one reports metrics itself


def test_a_device_that_goes_down_shows_no_current_rates(monkeypatch):
    """`top`, the dashboard and the line of rates must not show a dead device's last rates as
    if it still ran: once the supervisor counts it as down, its rates go, its counts stay, and
    the views say it is down; when it is back, its figures come back."""
    from sensormesh.controller.observe import run
    from sensormesh.controller.observe.top import rates_line, render_text
    from sensormesh.controller.supervisor.health import Health

    from fakepoll import FakePoller, pipe, step
    fake = FakePoller()

    class Poller:
        latest, errors = {}, {}

        def subscribe(self, fn):
            fake.subscribe(fn)

        def start(self):
            pass

        def poll(self):
            pass

    class Sup:
        placement = None
        last_status = {}
        health = Health()
    monkeypatch.setattr(run, "make_poller", lambda sup, model: Poller())
    obs = run.Observation(load_model(TWO_DOMAINS), out=False)
    obs.attach(Sup())
    for k in range(2):
        fake.snapshot("esp-1", 10.0 + k, k * 100_000, k * 1_000_000, {"inside": step(10 * k, 10 * k)},
                      {"avg->pc": pipe(5 * k, 500 * k)}, interp="micropython", mem={"heap_free": 50_000})
        fake.snapshot("pc", 10.0 + k, k * 10_000, k * 1_000_000, {"alarm": step(5 * k, k)}, {})
    obs.tick()
    v = obs.store.view()
    assert v["devices"]["esp-1"]["down"] is None and v["devices"]["esp-1"]["busy"] == 0.1
    assert v["steps"]["inside"]["in_per_s"] == 10.0

    Sup.health.fail(["esp-1"], "no answer to a status request (control connection 127.0.0.1:7001 closed: "
                               "connection refused)")
    obs.tick()
    v = obs.store.view()
    esp = v["devices"]["esp-1"]
    assert esp["down"] == ("down: no answer to a status request (control connection 127.0.0.1:7001 closed: "
                           "connection refused)")
    assert esp["busy"] is None
    assert (v["steps"]["inside"]["in_per_s"], v["steps"]["inside"]["out_per_s"]) == (None, None)
    assert v["steps"]["inside"]["in"] == 10                       # the last counts stay
    (p,) = [p for p in v["pipes"] if p["device"] == "esp-1"]
    assert (p["values_per_s"], p["bytes_per_s"], p["delay_s"]) == (None, None, None)
    assert v["steps"]["alarm"]["in_per_s"] == 5.0 and v["devices"]["pc"]["busy"] == 0.01   # pc still runs
    text = render_text(v)
    row = next(l for l in text.splitlines() if l.split() and l.split()[0] == "esp-1")
    assert "DOWN" in row and "10.0%" not in row
    assert "esp-1 is down: no answer to a status request" in text and "(its counts below are the last" in text
    assert "esp-1 DOWN" in rates_line(v)
    from sensormesh.controller.observe.prom import exposition
    body = exposition(obs.store)[0].decode()
    assert 'sensormesh_device_busy_ratio{device="pc"}' in body
    assert 'sensormesh_device_busy_ratio{device="esp-1"}' not in body          # no stale gauges
    assert 'sensormesh_device_heap_free_bytes{device="esp-1"}' not in body
    assert 'sensormesh_pipe_rtt_seconds{device="esp-1"' not in body
    assert 'sensormesh_step_values_in_total{device="esp-1",step="inside"} 10.0' in body   # totals stay
    # a device the supervisor counts as down before its first snapshot is listed too
    Poller.errors["gw"] = "gw: control connection 127.0.0.1:7002 closed: connection refused"
    Sup.health.fail(["gw"])
    obs.tick()
    assert obs.store.view()["devices"]["gw"]["down"] == "down: control connection 127.0.0.1:7002 closed: connection refused"
    assert "(its counts" not in render_text(obs.store.view()).split("gw is down")[1].split("\n")[0]

    Sup.health.event("answers", "esp-1")
    Sup.health.event("rejoined", "esp-1")
    fake.snapshot("esp-1", 12.0, 300_000, 2_000_000, {"inside": step(30, 30)}, {"avg->pc": pipe(15, 1500)},
                  interp="micropython", mem={"heap_free": 50_000})
    obs.tick()
    v = obs.store.view()
    assert v["devices"]["esp-1"]["down"] is None and v["devices"]["esp-1"]["busy"] == 0.2
    assert v["steps"]["inside"]["in_per_s"] == 20.0


def test_up_with_a_dashboard_says_in_the_terminal_when_graphviz_is_missing(tmp_path):
    """Without Graphviz's dot the dashboard still serves, and `up` says at once, in the
    terminal, what the page will lack and how to get it; with dot it says nothing."""
    import shutil
    import subprocess
    import sys
    (tmp_path / "p.yaml").write_text(
        "pipeline: nodot\ndevices:\n  pc%d: {sensors: [\"counter@100\"], local: true}\n"
        "steps:\n  c: {type: source, sensor: counter, count: 5}\nsinks:\n  out: {type: callback, input: c}\n"
        % os.getpid())
    bare = str(tmp_path / "bin")          # a PATH with the interpreter and no dot
    os.mkdir(bare)
    os.symlink(sys.executable, os.path.join(bare, "python"))
    note = "! dashboard: the pipeline graph needs Graphviz's dot (Debian: apt-get install graphviz), " \
           "which is not installed"
    for path, has_dot in ((bare, False), (os.environ["PATH"], shutil.which("dot") is not None)):
        env = dict(os.environ, PYTHONPATH=ROOT, PATH=path)
        r = subprocess.run([sys.executable, "-m", "sensormesh.cli", "up", "p.yaml", "--dashboard", "127.0.0.1:0",
                            "--count", "5", "--insecure", "--quiet-devices", "--no-metrics-file"],
                           cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        assert r.stdout.startswith("dashboard: http://127.0.0.1:")
        assert (note in r.stdout) == (not has_dot), r.stdout


def test_graph_gives_every_svg_id_once_when_a_pipe_feeds_two_steps_through_a_relay():
    import collections
    import re
    info = {"devices": ["a", "b", "g"], "interp": {"a": "cpython", "b": "micropython", "g": "cpython"},
            "steps": {"src": {"type": "source", "inputs": []}, "m": {"type": "map", "inputs": ["src"]},
                      "k1": {"type": "callback", "inputs": ["m"]}, "k2": {"type": "print", "inputs": ["m"]}},
            "order": ["src", "m", "k1", "k2"], "device_of": {"src": "a", "m": "a", "k1": "b", "k2": "b"},
            "pipes": [{"edge": "m->b", "producer": "m", "src": "a", "dst": "b", "consumers": ["k1", "k2"],
                       "route": ["a", "g", "b"]}]}
    dot = to_dot(info)
    # the hop to the relay is drawn once, then one arrow to each consumer
    assert dot.count('"s:m" -> "r:g:m->b"') == 1
    assert dot.count('"r:g:m->b" -> "s:k1"') == 1 and dot.count('"r:g:m->b" -> "s:k2"') == 1
    svg = html.unescape(render_svg(info))
    ids = collections.Counter(re.findall(r' id="([^"]+)"', svg))
    assert ids["pipe:m->b"] == 1
    assert [i for i, n in ids.items() if n > 1] == []


def test_top_and_status_watch_write_where_the_steps_run_learned_from_the_devices(tmp_path):
    """`top` and `status --watch` do not place the pipeline themselves: the metrics file's
    placement (and the views) must still say which step runs where and each pipe's route, as
    the devices report them, not an empty step map."""
    import json
    import sqlite3
    from types import SimpleNamespace

    from fakepoll import FakePoller, pipe, step
    from sensormesh.controller.observe.run import Observation

    model = load_model(TWO_DOMAINS)
    pl = model.place("optimal")
    want = placement_info(model, pl)
    assert any(len(p["route"]) > 2 for p in want["pipes"])
    db = str(tmp_path / "watch.sqlite")
    obs = Observation(model, out=db)
    obs.sup = SimpleNamespace(placement=None)          # as under top / status --watch
    obs.poller = obs.fallback = SimpleNamespace(poll=lambda: None)
    poll = FakePoller()
    poll.subscribe(obs.store.feed)
    obs.tick()
    ends = {d: {} for d in model.devices}
    for hop, (a, b) in hop_peers(pl).items():
        ends[a][hop] = pipe(5, 100, direction="out", peer=b)
        ends[b][hop] = pipe(5, 100, direction="in", peer=a)
    for dev in model.devices:
        steps = {sid: step(5, 5) for sid, d in pl.device_of.items() if d == dev}
        steps.update({"%s:%s" % ("out" if e["dir"] == "out" else "in", h): step(5, 5) for h, e in ends[dev].items()})
        poll.snapshot(dev, 10.0, 0, 0, steps, ends[dev])
    obs.tick()
    obs.close()
    got = json.loads(dict(sqlite3.connect(db).execute("select key, value from run").fetchall())["placement"])
    assert got["device_of"] == want["device_of"]
    key = lambda p: p["edge"]
    assert sorted(({k: p[k] for k in ("edge", "producer", "src", "dst", "route")} for p in got["pipes"]), key=key) == \
        sorted(({k: p[k] for k in ("edge", "producer", "src", "dst", "route")} for p in want["pipes"]), key=key)
    assert {p["edge"]: sorted(p["consumers"]) for p in got["pipes"]} == \
        {p["edge"]: sorted(p["consumers"]) for p in want["pipes"]}
