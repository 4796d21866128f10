"""`sensormesh up|deploy|status|stop` and Pipeline.up() with real processes on real sockets.

`up` starts the file's local devices (one on the MicroPython unix port), deploys, prints callback
values as they arrive and stops everything; every value arrives exactly once and in order."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from procs import ROOT, free_port, need_micropython
from sensormesh.controller.model import DEFAULT_HEAP

N = 200
STEPS_PY = "def double(x):\n    return 2 * x\n"


def counting_file(tmp_path, local=True, ports=None, name="count"):
    """a (MicroPython) and b count to N; c zips them (a doubled by shipped code), windows of 10."""
    (tmp_path / "user_steps.py").write_text(STEPS_PY)

    def where(dev):
        if local:
            return "local: true"
        return 'address: "127.0.0.1:%d"' % ports[dev]
    text = textwrap.dedent("""\
        pipeline: %s
        devices:
          a: {interpreter: micropython, sensors: ["counter@1000"], %s}
          b: {interpreter: cpython, sensors: ["counter@1000"], %s}
          c: {interpreter: cpython, cpu: 4, %s}
        steps:
          sa: {type: source, sensor: counter, count: %d, on: a}
          da: {type: map, fn: "user_steps.py:double", input: sa, on: a}
          sb: {type: source, sensor: counter, count: %d, on: b}
          z:  {type: zip, inputs: [da, sb], on: c}
          w:  {type: window, values: 10, agg: list, input: z, on: c}
        sinks:
          windows: {type: callback, input: w, on: c}
        """) % (name, where("a"), where("b"), where("c"), N, N)
    path = tmp_path / ("%s.yaml" % name)
    path.write_text(text)
    return str(path)


def cli(*args, timeout=90, cwd=ROOT):
    env = dict(os.environ, PYTHONPATH=ROOT, PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", "sensormesh.cli"] + list(args), cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def windows_from(out):
    return [json.loads(line.split(None, 1)[1]) for line in out.splitlines() if line.startswith("windows ")]


def unix_paths(names):
    from sensormesh.controller.model import default_unix_path
    return [default_unix_path(n) for n in names]


def assert_exact(windows):
    pairs = [p for w in windows for p in w]
    assert pairs == [[2 * i, i] for i in range(N)], "values lost, repeated or out of order"


def test_up_runs_local_devices_delivers_every_value_once_and_stops_them(tmp_path):
    need_micropython()
    path = counting_file(tmp_path)
    r = cli("up", path, "--count", str(N // 10), "--timeout", "10")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "a (micropython, heap %s)" % DEFAULT_HEAP in r.stdout and "(count)" in r.stdout
    assert_exact(windows_from(r.stdout))
    assert "stopped; per device" in r.stdout
    # shipped code ran on the MicroPython device, and the device said it was deployed
    assert "a | [a] deployed count" in r.stdout
    for p in unix_paths("abc"):
        assert not os.path.exists(p), "up left its socket %s behind" % p


def test_up_ctrl_c_stops_the_pipeline_then_the_devices(tmp_path):
    need_micropython()
    path = counting_file(tmp_path, name="endless").replace("count: %d" % N, "count: 0")
    text = open(path).read().replace("count: %d" % N, "count: 0")
    open(path, "w").write(text)
    env = dict(os.environ, PYTHONPATH=ROOT, PYTHONUNBUFFERED="1")
    p = subprocess.Popen([sys.executable, "-m", "sensormesh.cli", "up", path, "--quiet-devices"], cwd=ROOT, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    lines = []
    try:
        deadline = time.monotonic() + 60
        windows = 0
        while windows < 3 and time.monotonic() < deadline:   # wait for values, then press Ctrl-C
            line = p.stdout.readline()
            if not line:
                break
            lines.append(line)
            windows += line.startswith("windows ")
        assert windows >= 3, "".join(lines)
        # secure by default: a plaintext client is refused, the controller's key is accepted
        plain = cli("client", "unix:" + unix_paths("a")[0], "--sensor", "counter", "--count", "1", timeout=30)
        assert plain.returncode == 1 and "plaintext-refused" in plain.stderr, plain.stderr
        st = cli("status", path, timeout=60)
        assert st.returncode == 0 and "c: running pipeline endless" in st.stdout, st.stdout + st.stderr
        p.send_signal(signal.SIGINT)
        watchdog = threading.Timer(60, p.kill)   # bounds the read below if `up` hangs
        watchdog.start()
        try:
            for line in p.stdout:                # to the end of its output
                lines.append(line)
        finally:
            watchdog.cancel()
        p.wait(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    out = "".join(lines)
    assert p.returncode == 0, out
    assert "secure: the local devices use keys" in out
    assert "stopping (interrupted)" in out and "stopped; per device" in out
    got = [x for w in windows_from(out) for x in w]
    assert got == [[2 * i, i] for i in range(len(got))]
    for path_ in unix_paths("abc"):
        assert not os.path.exists(path_)


def test_deploy_status_stop_on_running_devices(tmp_path, devices):
    ports = {n: free_port() for n in "abc"}
    devices("micropython", ["--port", str(ports["a"]), "--name", "a", "--sensors", "counter@1000"])
    devices("cpython", ["--port", str(ports["b"]), "--name", "b", "--sensors", "counter@1000"])
    devices("cpython", ["--port", str(ports["c"]), "--name", "c", "--sensors", ""])
    path = counting_file(tmp_path, local=False, ports=ports)
    r = cli("deploy", path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "deployed and started on 3 device(s)" in r.stdout
    # wait for the sources to finish: status shows every value through the zip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        st = cli("status", path, "--json")
        assert st.returncode == 0, st.stdout + st.stderr
        raw = json.loads(st.stdout)
        if raw["c"]["assignment"]["steps"]["z"]["out"] == N:
            break
    assert raw["c"]["assignment"]["steps"]["w"]["out"] == N // 10
    assert raw["a"]["assignment"]["state"] == "running"
    text = cli("status", path).stdout
    assert "c: running pipeline count" in text and "z: in %d, out %d" % (2 * N, N) in text
    r = cli("stop", path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "c: " in r.stdout and "w %d>%d" % (N, N // 10) in r.stdout
    after = json.loads(cli("status", path, "--json").stdout)
    assert all(after[d].get("assignment", {}).get("state", "empty") == "empty" for d in "abc")


def test_deploy_to_a_down_device_names_it_and_starts_nothing(tmp_path, devices):
    ports = {n: free_port() for n in "abc"}
    devices("cpython", ["--port", str(ports["b"]), "--name", "b", "--sensors", "counter@1000"])
    devices("cpython", ["--port", str(ports["c"]), "--name", "c", "--sensors", ""])
    path = counting_file(tmp_path, local=False, ports=ports)
    r = cli("deploy", path)
    assert r.returncode == 1
    assert "device a at 127.0.0.1:%d is not reachable" % ports["a"] in r.stderr
    st = cli("status", path)
    assert st.returncode == 1 and "a: UNREACHABLE" in st.stdout
    assert "b: empty" in st.stdout and "c: empty" in st.stdout


def test_up_names_a_local_device_that_cannot_start(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(textwrap.dedent("""\
        pipeline: bad
        devices:
          pc: {interpreter: cpython, local: true, sensors: ["t=csv:missing.csv@10"]}
        steps:
          s: {type: source, sensor: t}
        sinks:
          k: {type: callback, input: s}
        """))
    r = cli("up", str(path))
    assert r.returncode == 1
    assert "local device pc (cpython) exited" in r.stderr and "missing.csv" in r.stderr
    assert not os.path.exists(unix_paths(["pc"])[0])


def test_up_refuses_a_pipeline_it_cannot_place_before_starting_any_device(tmp_path, monkeypatch):
    """A placement that cannot be made is refused first: no local device is started (and then
    stopped again) for a pipeline that could never run."""
    path = tmp_path / "big.yaml"
    path.write_text(textwrap.dedent("""\
        pipeline: big
        devices:
          pc: {interpreter: cpython, sensors: [temperature], local: true}
          board: {interpreter: micropython, local: true}
        steps:
          t: {type: source, sensor: temperature}
          w: {type: window, values: 1000000, agg: list, input: t, on: board}
        sinks:
          k: {type: callback, input: w}
        """))
    r = cli("up", str(path), "--insecure")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "device 'board': its sources and pinned steps (w) alone need memory" in r.stderr, r.stderr
    assert "starting" not in r.stdout and "listening" not in r.stdout + r.stderr, r.stdout + r.stderr
    # from Python too: up() places before it starts the local devices
    from sensormesh.api import PipelineError, load
    from sensormesh.controller.local import LocalCluster

    def start(self, *a, **kw):
        raise AssertionError("a local device was started for a pipeline that cannot be placed")
    monkeypatch.setattr(LocalCluster, "start", start)
    with pytest.raises(PipelineError, match="alone need memory"):
        load(str(path)).up(insecure=True, duration=1)


def test_up_refuses_a_file_without_local_devices(tmp_path):
    path = counting_file(tmp_path, local=False, ports={"a": 1, "b": 2, "c": 3})
    r = cli("up", path)
    assert r.returncode == 1 and "marks no device `local: true`" in r.stderr


def test_up_warns_as_plan_does_of_a_pipeline_without_sink_naming_the_line(tmp_path):
    (tmp_path / "nosink.yaml").write_text(textwrap.dedent("""\
        pipeline: nosink
        devices:
          pc: {sensors: ["counter@100"], local: true}
        steps:
          c: {type: source, sensor: counter}
          w: {type: window, values: 5, input: c}
        """))
    r = cli("up", "nosink.yaml", "--duration", "0.5", "--insecure", "--quiet-devices", "--no-metrics-file",
            cwd=str(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "! warning: the pipeline has no sink: its results go nowhere\n" in r.stdout
    assert "! warning: nosink.yaml:6:3: step 'w': its output is not used by any step or sink\n" in r.stdout
    plan = cli("plan", "nosink.yaml", cwd=str(tmp_path))
    assert "warning: nosink.yaml:6:3: step 'w': its output is not used" in plan.stdout


def test_count_without_a_callback_sink_is_refused_before_anything_starts(tmp_path):
    """--count counts callback values: without a callback sink it would never stop."""
    from sensormesh.api import PipelineError, load
    (tmp_path / "printed.yaml").write_text(textwrap.dedent("""\
        pipeline: printed
        devices:
          pc: {sensors: ["counter@100"], local: true}
        steps:
          c: {type: source, sensor: counter}
        sinks:
          shown: {type: print, input: c}
        """))
    r = cli("up", "printed.yaml", "--count", "3", "--insecure", cwd=str(tmp_path))
    assert r.returncode == 2 and r.stdout == "", r.stdout + r.stderr
    assert "Invalid value for --count: it counts the values of callback sinks, and printed.yaml has none; " \
           "use --duration" in r.stderr
    with pytest.raises(PipelineError, match="count: pipeline printed has no callback sink"):
        load(str(tmp_path / "printed.yaml")).up(count=3, insecure=True)


def test_commands_say_where_a_local_device_without_address_is_looked_for(tmp_path):
    """status, stop, deploy and top reach a `local: true` device without an address at the
    socket `up` makes for its working directory: run elsewhere (or with no up), they say so
    instead of leaving the user with a device that merely looks down."""
    (tmp_path / "loc.yaml").write_text(textwrap.dedent("""\
        pipeline: loc
        devices:
          pc%d: {sensors: ["counter@10"], local: true}
          remote: {address: "127.0.0.1:1"}
        steps:
          c: {type: source, sensor: counter}
        sinks:
          shown: {type: callback, input: c}
        """ % os.getpid()))
    for command in ("status", "stop", "deploy"):
        r = cli(command, "loc.yaml", "--timeout", "1", "--insecure", cwd=str(tmp_path))
        assert r.returncode == 1, r.stdout + r.stderr
        notes = [ln for ln in r.stderr.splitlines() if ln.startswith("! ")]
        assert notes == ["! pc%d is local: true without an address: commands reach it at unix:%s, the socket "
                         "`sensormesh up` makes for the directory it runs in, and nothing listens there; run "
                         "this command in the directory where `sensormesh up loc.yaml` runs (this is %s)"
                         % (os.getpid(), os.path.join(run_dir_of(tmp_path), "pc%d.sock" % os.getpid()),
                            tmp_path)], r.stderr


def run_dir_of(path):
    import hashlib
    import tempfile
    return os.path.join(tempfile.gettempdir(), "sensormesh-%s" % hashlib.sha1(
        os.path.realpath(str(path)).encode()).hexdigest()[:10])


def test_a_refused_assignment_points_at_the_step_that_caused_it(tmp_path):
    """A device refusing its assignment (here: a fn naming something its module lacks) ends
    `up` with the device's words and the line of the step they are about."""
    (tmp_path / "refused.yaml").write_text(textwrap.dedent("""\
        pipeline: refused
        devices:
          pc%d: {sensors: ["counter@10"], local: true}
        steps:
          c: {type: source, sensor: counter}
          root: {type: map, fn: "math:sqrtt", input: c}
        sinks:
          shown: {type: callback, input: root}
        """ % os.getpid()))
    r = cli("up", "refused.yaml", "--insecure", "--quiet-devices", "--no-metrics-file", cwd=str(tmp_path))
    assert r.returncode == 1, r.stdout + r.stderr
    assert "refused its assignment" in r.stderr and "sqrtt" in r.stderr
    assert r.stderr.rstrip().endswith("(step root: refused.yaml:6:3)"), r.stderr


def plus_one(x):
    return x + 1


def test_python_api_up_calls_the_users_callback(tmp_path):
    from sensormesh.api import Pipeline
    p = Pipeline("api-up")
    p.device("edge", interpreter="micropython", sensors=["counter@1000"], local=True)
    p.device("hub", interpreter="cpython", cpu=4, local=True)
    got = []
    p.source("counter", on="edge", count=N).map(plus_one, on="edge") \
        .window(values=20, agg="sum", on="hub").callback(got.append)
    final = p.up(count=N // 20, timeout=10)
    assert got == [sum(range(i * 20 + 1, i * 20 + 21)) for i in range(N // 20)]
    assert final["hub"]["state"] == "stopped"


def test_a_loaded_file_runs_from_python_with_the_users_callbacks(tmp_path, capsys):
    """api.load(FILE, callbacks=...) gives a pipeline that plans and runs like one written in
    Python: the named callback gets its sink's values, a callback sink without a function
    prints them as `sensormesh up` does."""
    from sensormesh.api import load
    (tmp_path / "p.yaml").write_text(textwrap.dedent("""\
        pipeline: loaded
        devices:
          pc: {interpreter: cpython, sensors: ["counter@200"], local: true}
        steps:
          c: {type: source, sensor: counter, count: 40}
          w: {type: window, values: 10, agg: sum, input: c}
        sinks:
          sums: {type: callback, input: w}
          seen: {type: callback, input: c, name: each}
        """))
    got = []
    p = load(str(tmp_path / "p.yaml"), callbacks={"sums": got.append})
    assert p.plan().device_of["w"] == "pc"
    final = p.up(until=lambda: len(got) == 4, timeout=10, insecure=True)
    assert got == [sum(range(i * 10, i * 10 + 10)) for i in range(4)]
    assert final["pc"]["state"] == "stopped"
    printed = [line.split() for line in capsys.readouterr().out.splitlines() if line.startswith("each ")]
    assert [int(v) for _, v in printed] == list(range(40))


def _children(pid):
    """PIDs of the processes whose parent is pid."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/stat" % d) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(d))
    return out


def _gone(pid):
    """True when pid has ended (no longer listed, or a zombie waiting for its new parent)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_up_killed_with_sigkill_leaves_no_device_running(tmp_path):
    """A controller that dies without cleaning up (SIGKILL) takes its local devices with it:
    their standard input, a pipe from up, closes and they stop on both interpreters."""
    need_micropython()
    path = counting_file(tmp_path, name="orphans")
    text = open(path).read().replace("count: %d" % N, "count: 0")
    open(path, "w").write(text)
    env = dict(os.environ, PYTHONPATH=ROOT, PYTHONUNBUFFERED="1")
    p = subprocess.Popen([sys.executable, "-m", "sensormesh.cli", "up", path], cwd=str(tmp_path), env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    devices = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(ln.startswith("windows ") for ln in lines):
            line = p.stdout.readline()
            if not line:
                break
            lines.append(line)
        assert any(ln.startswith("windows ") for ln in lines), "".join(lines)
        devices[:] = _children(p.pid)
        assert len(devices) >= 3, (devices, "".join(lines))
        p.kill()
        p.wait(10)
        end = time.monotonic() + 20
        while time.monotonic() < end and not all(_gone(d) for d in devices):
            time.sleep(0.05)                     # polling the devices' state, bounded by `end`
        left = [d for d in devices if not _gone(d)]
        assert not left, "devices still running after their controller was killed: %s" % left
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        for d in devices:
            if not _gone(d):
                os.kill(d, signal.SIGKILL)      # the devices this test's up started, if it failed


@pytest.mark.parametrize("command, option, value, message", [
    ("up", "--duration", "-5", "-5: give a number of seconds of 0 or more (0 = until Ctrl-C)"),
    ("up", "--duration", "nan", "'nan' is not a number of seconds: give a finite number"),
    ("up", "--count", "-3", "-3: give a whole number of 0 or more (0 = no limit)"),
    ("up", "--timeout", "0", "0: give a number of seconds more than 0"),
    ("up", "--rates-every", "-1", "-1: give a number of seconds of 0 or more (0 = none)"),
    ("deploy", "--timeout", "-1", "-1: give a number of seconds more than 0"),
    ("deploy", "--duration", "inf", "'inf' is not a number of seconds"),
    ("status", "--timeout", "-1", "-1: give a number of seconds more than 0"),
    ("status", "--interval", "nan", "'nan' is not a number of seconds"),
    ("stop", "--timeout", "-1", "-1: give a number of seconds more than 0"),
    ("top", "--timeout", "nan", "'nan' is not a number of seconds"),
    ("top", "--duration", "-1", "-1: give a number of seconds of 0 or more (0 = until Ctrl-C)"),
    ("experiment", "--duration", "nan", "'nan' is not a number of seconds"),
    ("experiment", "--warmup", "-1", "-1: give a number of seconds of 0 or more (0 = no warm-up)"),
    ("experiment", "--timeout", "-1", "-1: give a number of seconds more than 0"),
])
def test_negative_or_non_finite_option_values_are_refused_before_anything_runs(tmp_path, command, option,
                                                                                 value, message):
    path = counting_file(tmp_path)
    extra = ["--strategies", "central", "--out", str(tmp_path / "out")] if command == "experiment" else []
    r = cli(command, path, option, value, *extra, timeout=30, cwd=str(tmp_path))
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Invalid value for '%s': %s" % (option, message) in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""
    assert not (tmp_path / ".sensormesh").exists() and not (tmp_path / "out").exists()


def _plain_file(tmp_path, ports, name, extra=""):
    path = tmp_path / ("%s.yaml" % name)
    path.write_text(textwrap.dedent("""\
        pipeline: %s
        devices:
          b: {interpreter: cpython, sensors: ["counter@100"], address: "127.0.0.1:%d"}
          c: {interpreter: cpython, cpu: 4, address: "127.0.0.1:%d"}
        %s
        steps:
          t: {type: source, sensor: counter, on: b}
        sinks:
          out: {type: callback, input: t, on: c}
        """) % (name, ports["b"], ports["c"], extra))
    return str(path)


def test_devices_without_keys_are_named_so_not_down_and_insecure_talks_to_them(tmp_path, devices):
    # devices running without keys (a worker without --identity, `up --insecure`) while the
    # controller has keys: they answer its secure hello in plaintext. Every command says so and
    # how to talk to them, none calls them down; --insecure talks to them.
    from sensormesh.controller.keys import provision_local
    ports = {n: free_port() for n in ("b", "c", "gone")}
    devices("cpython", ["--port", str(ports["b"]), "--name", "b", "--sensors", "counter@100"])
    devices("cpython", ["--port", str(ports["c"]), "--name", "c", "--sensors", ""])
    store = str(tmp_path / "keys")
    provision_local(["b", "c", "gone"], store)
    path = _plain_file(tmp_path, ports, "plain")
    said = "b runs without keys (plaintext): it answered the controller's secure hello in plaintext; " \
           "use --insecure to talk to it"

    r = cli("deploy", path, "--keys", store, timeout=30)
    assert r.returncode == 1 and said in r.stderr, r.stdout + r.stderr
    assert "not reachable" not in r.stderr and "Traceback" not in r.stderr
    r = cli("deploy", path, "--insecure", timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr

    r = cli("status", path, "--keys", store, timeout=30)
    assert r.returncode == 1
    assert "b: PLAINTEXT (%s)" % said in r.stdout and "c: PLAINTEXT (c runs without keys" in r.stdout
    assert "down" not in r.stdout and "lost" not in r.stdout and "affected area" not in r.stdout
    r = cli("status", path, "--insecure", timeout=30)
    assert r.returncode == 0 and "b: running pipeline plain" in r.stdout, r.stdout + r.stderr

    # a device that is really down is still down, next to the ones without keys
    down = _plain_file(tmp_path, ports, "down", '  gone: {interpreter: cpython, address: "127.0.0.1:%d"}'
                       % ports["gone"])
    r = cli("status", down, "--keys", store, timeout=30)
    assert r.returncode == 1
    assert "b: PLAINTEXT" in r.stdout and "gone: UNREACHABLE (gone is down" in r.stdout, r.stdout
    assert "b is down" not in r.stdout and "affected area:" in r.stdout

    r = cli("top", path, "--keys", store, "--insecure", "--duration", "1", timeout=30)
    assert r.returncode == 2 and "give it or --keys, not both" in r.stderr
    r = cli("status", path, "--keys", str(tmp_path / "empty"), timeout=30)
    assert r.returncode == 1 and "(devices that run without keys: --insecure)" in r.stderr

    r = cli("stop", path, "--keys", store, timeout=30)
    assert r.returncode == 1 and "b: %s" % said in r.stdout.splitlines(), r.stdout + r.stderr
    r = cli("stop", path, "--insecure", timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    assert any(line.startswith("b: t ") for line in r.stdout.splitlines()), r.stdout


def test_nan_callback_values_are_named_as_such_not_lost_while_no_controller_listened(tmp_path):
    # a map yields NaN for every third value: JSON cannot carry it, the device leaves it out
    # (docs/pipelines.md) while the controller listens the whole time
    (tmp_path / "nanstep.py").write_text("def third_nan(v):\n    return float('nan') if v % 3 == 0 else v\n")
    path = tmp_path / "nan.yaml"
    path.write_text(textwrap.dedent("""\
        pipeline: nan
        devices:
          pc: {interpreter: cpython, sensors: ["n=counter@200"], local: true}
        steps:
          t: {type: source, sensor: n, count: 30}
          m: {type: map, fn: "nanstep.py:third_nan", input: t}
        sinks:
          out: {type: callback, input: m}
        """))
    r = cli("up", str(path), "--insecure", "--count", "20", "--quiet-devices", timeout=60, cwd=str(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    values = [json.loads(line.split(None, 1)[1]) for line in r.stdout.splitlines() if line.startswith("out ")]
    assert values == [v for v in range(30) if v % 3]
    assert "pc: t 30>30, m 30>30, out 30>30, 10 callback values not delivered: JSON cannot carry them " \
           "(NaN or infinity) or they were too large to send" in r.stdout
    assert "no controller listened" not in r.stdout and "never reached the controller" not in r.stdout
    assert "value 0 of its numbering was left out by the device while the controller listened" in r.stdout
