# Assignments: one per device, in the documented JSON format, with consistent pipe pairs.
import json
import os

import pytest
from click.testing import CliRunner

import shipping_samples as S
from sensormesh.api import ModelError, Pipeline, merge
from sensormesh.controller.model import default_unix_path
from sensormesh.controller.placement import default_time_frame
from sensormesh.controller.plan_cli import plan

EXAMPLE = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                       "examples", "pipelines", "alarm.yaml")


def mesh(csv_path="x.csv"):
    p = Pipeline("mesh")
    p.device("esp-1", interpreter="micropython", sensors=["temperature", "gyro"], address="10.0.0.1:7000")
    p.device("esp-2", interpreter="micropython", sensors=["temperature"], address="10.0.0.2:7000")
    p.device("a", cpu=20, address="127.0.0.1:7001", local=True)
    p.device("b", cpu=4, address="127.0.0.1:7002", local=True, unix="/run/sm-b.sock")
    p.device("c", cpu=4, address="192.168.0.9:7000")
    t1 = p.source("temperature", on="esp-1", id="t1")
    t2 = p.source("temperature", on="esp-2", id="t2")
    g = p.source("gyro", id="g")
    z = t1.zip(t2, id="z", on="a")
    z.map(S.uses_statistics, id="stat").print(id="p1", on="b")
    z.window(values=5, agg="list", id="zw").print(id="p2", on="b")     # fan-out of z to b
    merge(g.field("accel.0", id="ax"), t1, id="mg", on="c").csv(csv_path, id="out")
    return p


def check_consistent(p, pl, a, epoch=3):
    m = pl.model
    assert set(a) == set(m.devices)
    placed = {}
    pipes_out, pipes_in = {}, {}
    for dev, asg in a.items():
        assert asg["pipeline"] == m.name and asg["epoch"] == epoch
        ids = [s["id"] for s in asg["steps"]]
        assert len(ids) == len(set(ids)), ids
        seen = set()
        for s in asg["steps"]:
            for i in s.get("inputs", []):
                assert i in seen, (dev, s["id"], i)         # inputs come before their readers
            seen.add(s["id"])
            if s["type"] == "pipe_out":
                assert s["params"]["edge"] not in pipes_out
                pipes_out[s["params"]["edge"]] = (dev, s)
            elif s["type"] == "pipe_in":
                assert s["params"]["edge"] not in pipes_in
                pipes_in[s["params"]["edge"]] = (dev, s)
            else:
                placed[s["id"]] = dev
                assert s["params"] == m.device_params[s["id"]]
        # the code a device gets is the code its steps use, and nothing else
        fns = {s["params"]["fn"].partition(":")[0] for s in asg["steps"] if s["type"] in ("map", "filter")}
        assert set(asg["code"]) == fns
    assert placed == pl.device_of
    assert set(pipes_out) == set(pipes_in)          # every pipe has both ends
    hops = 0
    for pp in pl.pipes:
        n = len(pp.route) - 1
        eids = [pp.edge] if n == 1 else ["%s@%d" % (pp.edge, i + 1) for i in range(n)]
        hops += n
        for i, eid in enumerate(eids):
            src, out = pipes_out[eid]
            dst, inn = pipes_in[eid]
            assert (src, dst) == (pp.route[i], pp.route[i + 1])
            assert out["params"]["to"] == pl.address(src, dst)
            if i == 0:
                assert out["inputs"] == [pp.producer] and out["params"]["time-frame"] == pp.time_frame
            else:                                   # a relay: the previous hop's pipe_in feeds it
                assert out["inputs"] == ["in:" + eids[i - 1]] and out["params"]["time-frame"] == 0
        # the consumers on dst read the last pipe_in, not the remote step id
        last = "in:" + eids[-1]
        for s in a[pp.dst]["steps"]:
            if s["id"] in pp.consumers:
                assert last in s["inputs"] and pp.producer not in s["inputs"]
    assert len(pipes_out) == hops
    json.loads(json.dumps(a))       # plain JSON
    check_device_accepts(a)


def check_device_accepts(a):
    """Every step the device builds itself is accepted by the device's own make.build."""
    from sensormesh.device.runtime import shipped
    from sensormesh.device.steps import make

    for dev, asg in a.items():
        registry = shipped.load_code(asg["code"])

        class Ctx:
            def now(self):
                return 0

            def call_later(self, ms, fn):
                class H:
                    def cancel(self):
                        pass
                return H()

            def resolve(self, ref):
                return shipped.resolve(registry, ref)

            def deliver(self, sid, value):
                pass

            def log(self, text):
                pass

        for spec in asg["steps"]:
            if spec["type"] not in ("source", "pipe_in", "pipe_out"):
                make.build(spec, Ctx()).close()


@pytest.mark.parametrize("strategy", ["central", "edge", "optimal"])
def test_assignments_are_consistent(strategy, tmp_path):
    p = mesh(str(tmp_path / "out.csv"))   # check_consistent builds the steps: the csv sink opens it
    pl = p.plan(strategy)
    check_consistent(p, pl, pl.assignments(epoch=3))


def test_fan_out_is_one_pipe_per_device():
    pl = mesh().plan("optimal")
    edges = [pp.edge for pp in pl.pipes if pp.producer == "z"]
    # z is read by stat (maybe on a) and zw (maybe on a); both print on b: at most one pipe to b
    assert len(edges) == len(set(edges))
    assert all(e.startswith("z->") for e in edges)


def test_addresses_unix_on_one_host_tcp_otherwise():
    pl = mesh().plan("central")
    # a and b are both local: unix; b has its own path, a gets the default one
    assert pl.address("a", "b") == "unix:/run/sm-b.sock"
    assert pl.address("b", "a") == "unix:" + default_unix_path("a", "mesh")
    # micropython boards and other hosts: TCP
    assert pl.address("esp-1", "a") == "127.0.0.1:7001"
    assert pl.address("a", "c") == "192.168.0.9:7000"
    # two CPython devices at one address host: unix when the receiver has a path
    p = Pipeline("h")
    p.device("x", address="10.1.1.1:7000", sensors=["counter"])
    p.device("y", address="10.1.1.1:7001", unix="/tmp/y.sock")
    p.device("z", address="10.1.1.1:7002")
    p.source("counter").print(on="y")
    pl = p.plan("edge")
    assert pl.address("x", "y") == "unix:/tmp/y.sock" and pl.address("x", "z") == "10.1.1.1:7002"


def test_time_frames():
    assert default_time_frame(10, 8, "micropython") == 0          # slow: every value on its own
    assert default_time_frame(100, 8, "micropython") == 50        # at most 20 frames/s
    assert default_time_frame(100, 8, "cpython") == 0
    assert default_time_frame(1000, 8, "cpython") == 10           # at most 100 frames/s
    assert default_time_frame(1000, 4000, "cpython") == 2         # a frame stays under 8 KB
    p = Pipeline("tf")
    p.device("esp", interpreter="micropython", sensors=["gyro"], address="10.0.0.1:7000")
    p.device("pc", address="10.0.0.2:7000")
    p.source("gyro", batch=200).print(on="pc")
    a = p.plan("edge").assignments()
    out = [s for s in a["esp"]["steps"] if s["type"] == "pipe_out"][0]
    assert out["params"] == {"edge": "gyro->pc", "to": "10.0.0.2:7000", "time-frame": 200}
    p.source("gyro", id="g2").print(on="pc")
    a = p.plan("edge").assignments()
    out = [s for s in a["esp"]["steps"] if s["type"] == "pipe_out" and s["inputs"] == ["g2"]][0]
    assert out["params"]["time-frame"] == 50


def test_architecture_example_shape():
    """The doc's example: source, map with shipped code, window, zip with a pipe_in, pipe_out."""
    p = Pipeline("alarm")
    p.device("esp", interpreter="micropython", sensors=["dht11"], address="10.0.0.1:7000")
    p.device("pc", interpreter="micropython", sensors=["temperature"], address="10.0.0.2:7000")
    p.device("sink", address="127.0.0.1:7002")
    t = p.source("dht11", id="t").field("temperature", id="c").map(S.fahrenheit, id="f") \
        .window(time_frame=1000, id="w")
    h = p.source("temperature", id="h")
    t.zip(h, id="j", on="esp").print(on="sink", id="k")
    a = p.plan("edge").assignments(epoch=3)["esp"]
    assert a["code"]["user_shipping_samples"].count("def fahrenheit") == 1
    kinds = [(s["id"], s["type"]) for s in a["steps"]]
    assert kinds == [("in:h->esp", "pipe_in"), ("t", "source"), ("c", "field"), ("f", "map"), ("w", "window"),
                     ("j", "zip"), ("out:j->sink", "pipe_out")]
    j = a["steps"][5]
    assert j["inputs"] == ["w", "in:h->esp"]         # port order kept across the pipe


def test_plan_command_prints_table_and_traffic():
    r = CliRunner().invoke(plan, [EXAMPLE, "--strategy", "edge"])
    assert r.exit_code == 0, r.output
    assert "step" in r.output and "why" in r.output and "has sensor dht11" in r.output
    assert "traffic" in r.output and "esp-1" in r.output and "strategy edge" in r.output
    r = CliRunner().invoke(plan, [EXAMPLE, "--assignments"])
    assert r.exit_code == 0 and '"pipe_out"' in r.output and "MIP gap" in r.output


def test_plan_command_reports_file_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps:\n  t: {type: source, sensor: dht11}\n  w: {type: windw, input: t}\n")
    r = CliRunner().invoke(plan, [str(bad)])
    assert r.exit_code == 1
    assert "bad.yaml:3:" in r.output and "steps.w.type" in r.output and "windw" in r.output


@pytest.mark.parametrize("args, text", [
    (["--time-limit", "-1"], "Invalid value for '--time-limit': must be a positive number of seconds, not -1"),
    (["--time-limit", "0"], "Invalid value for '--time-limit': must be a positive number of seconds, not 0"),
    (["--time-limit", "nan"], "Invalid value for '--time-limit': must be a positive number of seconds, not nan"),
    (["--time-limit", "inf"], "Invalid value for '--time-limit': must be a positive number of seconds, not inf"),
    (["--headroom", "nan"], "Invalid value for '--headroom': must be a fraction between 0.05 and 1, not nan"),
    (["--headroom", "1.5"], "Invalid value for '--headroom': must be a fraction between 0.05 and 1, not 1.5"),
])
def test_plan_command_refuses_bad_limits(args, text):
    r = CliRunner().invoke(plan, [EXAMPLE] + args)
    assert r.exit_code == 2 and text in r.output, r.output
    r = CliRunner().invoke(plan, [EXAMPLE, "--strategy", "edge", "--time-limit", "0.5", "--headroom", "1"])
    assert r.exit_code == 0, r.output


def test_catalog_params_are_the_devices():
    """The catalogue's device parameters are exactly what the device's steps accept."""
    from sensormesh.device.steps import kinds
    from sensormesh.controller import catalog
    for name in kinds.types():
        cls = kinds.step_class(name)
        t = catalog.get(name)
        assert {p.name for p in t.param_map.values() if not p.hint} == set(cls.ARGS), name


TOPOLOGY_FILE = """\
pipeline: gw
devices:
  esp-1: {interpreter: micropython, sensors: [gyro], address: "10.1.0.1:7000"}
  gw: {interpreter: cpython, cpu: 4, addresses: {field: "10.1.0.2:7000", office: "10.2.0.2:7000"}}
  pc: {interpreter: cpython, cpu: 20, address: "10.2.0.3:7000"}
  cloud: {interpreter: cpython, cpu: 20, address: "10.3.0.1:7000"}
network:
  controller: [office]
  domains:
    field: [esp-1, gw]
    office: [gw, pc]
    cloud: [cloud]
  links:
    - {from: office, to: cloud}
steps:
  g: {type: source, sensor: gyro}
  w: {type: window, values: 10, agg: count, input: g}
sinks:
  out: {type: print, input: g, on: pc}
  up: {type: print, input: w, on: cloud}
"""


def test_topology_routes_become_relays_with_dial_directions(tmp_path):
    pytest.importorskip("sensormesh.controller.topology")
    from sensormesh.controller.pipeline_file import load_model
    path = tmp_path / "gw.yaml"
    path.write_text(TOPOLOGY_FILE)
    m = load_model(str(path))
    assert m.topology is not None
    for strategy in ("central", "edge", "optimal"):
        pl = m.place(strategy)
        a = pl.assignments(epoch=3)
        for pp in pl.pipes:
            if {pp.src, pp.dst} == {"esp-1", "pc"}:
                assert pp.route == ["esp-1", "gw", "pc"]
        # hop 1 esp-1 -> gw in the field domain, hop 2 gw -> pc in the office
        outs = {s["params"]["edge"]: s for d in a for s in a[d]["steps"] if s["type"] == "pipe_out"}
        assert outs["g->pc@1"]["params"]["to"] == "10.1.0.2:7000"
        assert outs["g->pc@2"]["params"]["to"] == "10.2.0.3:7000"
        assert outs["g->pc@2"]["inputs"] == ["in:g->pc@1"]
        assert pl.loads["gw"][0] > 0                 # relaying is work for the gateway
        json.loads(json.dumps(a))
        check_device_accepts(a)
    # data for the cloud crosses the one-way link office -> cloud: the office end dials
    pl = m.place("optimal")
    to_cloud = [pp for pp in pl.pipes if pp.dst == "cloud"]
    assert to_cloud and all(pp.route[-2] in ("gw", "pc") for pp in to_cloud)


def test_one_domain_topology_uses_the_uniform_formulation(tmp_path):
    pytest.importorskip("sensormesh.controller.topology")
    from sensormesh.controller.pipeline_file import load_model
    path = tmp_path / "one.yaml"
    path.write_text(TOPOLOGY_FILE.split("network:")[0] + "network:\n  domains:\n    lan: {devices: [esp-1, gw, pc, cloud], cost: 3}\n"
                    + "steps:" + TOPOLOGY_FILE.split("steps:")[1])
    m = load_model(str(path))
    pl = m.place("optimal")
    assert pl.solver["variables"] < 40               # no pair variables
    assert pl.objective == pytest.approx(3 * sum(pp.traffic for pp in pl.pipes))


def test_buffer_and_spool_hints_reach_the_pipe():
    p = Pipeline("buf")
    p.device("esp", interpreter="micropython", sensors=["gyro"], address="10.0.0.1:7000")
    p.device("pc", address="10.0.0.2:7000")
    p.source("gyro", batch=100, buffer=300, spool=65536).print(on="pc")
    a = p.plan("edge").assignments()
    out = [s for s in a["esp"]["steps"] if s["type"] == "pipe_out"][0]
    assert out["params"]["buffer"] == 300 and out["params"]["spool"] == 65536
    p2 = Pipeline("nobuf")
    p2.device("esp", interpreter="micropython", sensors=["gyro"], address="10.0.0.1:7000")
    p2.device("pc", address="10.0.0.2:7000")
    p2.source("gyro").print(on="pc")
    out = [s for s in p2.plan("edge").assignments()["esp"]["steps"] if s["type"] == "pipe_out"][0]
    assert "buffer" not in out["params"] and "spool" not in out["params"]   # the device's defaults


def test_two_pipelines_with_a_device_of_the_same_name_have_their_own_unix_sockets():
    # before, both pipelines' local "pc" listened on <run dir>/pc.sock: the second `up` found it
    # taken, and `status` of one reached the other's device
    def model(name):
        p = Pipeline(name)
        p.device("pc", cpu=4, local=True, sensors=["counter"])
        p.device("pc2", cpu=4, local=True)
        p.source("counter", on="pc").callback(print, on="pc2")
        return p
    plan_one = model("one").plan("central")
    one, two = model("one").model(), model("two").model()
    assert one.devices["pc"].unix_path != two.devices["pc"].unix_path
    assert one.devices["pc"].unix_path == default_unix_path("pc", "one")
    assert os.path.dirname(one.devices["pc"].unix_path) == os.path.dirname(one.devices["pc2"].unix_path)
    # assignments address the pipeline's own socket
    pl = plan_one
    assert set(pl.address(a, b) for a, b in (("pc", "pc2"), ("pc2", "pc"))) <= {
        "unix:" + one.devices["pc"].unix_path, "unix:" + one.devices["pc2"].unix_path}
    # a name that is no plain file name, or a long one, gets a folder named by its hash
    odd = default_unix_path("pc", "../x y/" + "z" * 200)
    assert os.path.dirname(os.path.dirname(odd)) == os.path.dirname(os.path.dirname(one.devices["pc"].unix_path))
    assert len(odd) < 100 and ".." not in odd


def test_a_long_device_name_still_gets_a_socket_path_that_fits():
    # a 100-letter device name is valid; its local device used to stop at start with
    # "AF_UNIX path too long"
    long_name = "d" * 100
    path = default_unix_path(long_name, "z" * 32)
    assert len(path.encode()) <= 107 and os.path.basename(path).startswith("d" * 16)
    assert path != default_unix_path("d" * 99, "z" * 32)
    assert default_unix_path("pc", "one").endswith(os.sep + "one" + os.sep + "pc.sock")


def test_a_unix_path_too_long_for_a_socket_is_refused():
    p = Pipeline("x")
    with pytest.raises(ModelError, match="unix: /tmp/%s.sock is 115 bytes long; a Unix socket's path has room for "
                                         "107: give a shorter one" % ("u" * 105)):
        p.device("pc", local=True, unix="/tmp/%s.sock" % ("u" * 105))
    p.device("pc", local=True, unix="/tmp/%s.sock" % ("u" * 97))     # 107 bytes: fits
