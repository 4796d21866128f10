"""The device folder, sensormesh/device/, is everything a device process imports and nothing else.

- Its modules import nothing of sensormesh outside the folder (read from the source, every
  import, also the lazy ones inside functions), and no module-level import circle joins them.
- On both interpreters, every module imports with nothing but a copy of the folder on the path
  (arranged as sensormesh/device/ beside an empty sensormesh/__init__.py).
- Steps load on demand: a fresh device that deploys a window-only assignment imports the
  windows family and no other.
- A CPython device started by `sensormesh up` imports the device folder only: never the CLI,
  the controller, click, scipy, numpy or networkx (what `python -X importtime` lists).
"""
import ast
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from procs import FAKE_SESSION, ROOT, need_micropython

DEVICE = os.path.join(ROOT, "sensormesh", "device")
PKG = os.path.join(ROOT, "sensormesh")


def device_files():
    out = []
    for d, dirs, files in os.walk(DEVICE):
        dirs[:] = sorted(x for x in dirs if x != "__pycache__")
        out += [os.path.relpath(os.path.join(d, f), ROOT) for f in sorted(files) if f.endswith(".py")]
    return sorted(out)


def module_of(rel):
    mod = rel[:-3].replace(os.sep, ".")
    return mod[:-len(".__init__")] if mod.endswith(".__init__") else mod


def is_module(dotted):
    p = os.path.join(ROOT, dotted.replace(".", os.sep))
    return os.path.exists(p + ".py") or os.path.exists(os.path.join(p, "__init__.py"))


def imports(rel):
    """(imported module, runs at import time?) for every import statement of a module.
    `from package import name` counts as importing package.name when that is a module."""
    with open(os.path.join(ROOT, rel)) as f:
        tree = ast.parse(f.read(), rel)
    out = []

    def visit(node, at_load):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                out.extend((a.name, at_load) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                assert child.level == 0, "%s: relative import (write sensormesh.device...)" % rel
                for a in child.names:
                    sub = child.module + "." + a.name
                    out.append((sub if is_module(sub) else child.module, at_load))
            # a function body runs when called, not when the module loads
            visit(child, at_load and not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                            ast.Lambda)))
    visit(tree, True)
    return out


def test_device_modules_import_nothing_of_sensormesh_outside_the_folder():
    files = device_files()
    assert len(files) > 30 and "sensormesh/device/core.py" in files
    bad = []
    for rel in files:
        for mod, _ in imports(rel):
            if mod.split(".")[0] != "sensormesh":
                continue
            if not (mod.startswith("sensormesh.device.") or mod == "sensormesh.device"):
                bad.append("%s imports %s" % (rel, mod))
            elif not is_module(mod):
                bad.append("%s imports %s, which does not exist" % (rel, mod))
    assert not bad, "the device folder must import only itself:\n" + "\n".join(bad)


def find_cycle(graph):
    """A list of modules forming an import circle in {module: {imported modules}}, or None."""
    state = {}
    stack = []

    def walk(m):
        state[m] = 1
        stack.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state:
                found = walk(n)
                if found:
                    return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            found = walk(m)
            if found:
                return found
    return None


def load_time_graph():
    graph = {}
    for rel in device_files():
        me = module_of(rel)
        graph[me] = {m for m, at_load in imports(rel) if at_load and m.startswith("sensormesh.device")
                     and m != me}
    return graph


def test_no_import_circle_between_device_modules_at_load_time():
    graph = load_time_graph()
    assert "sensormesh.device.codec" in graph["sensormesh.device.transport"]   # the walk sees imports
    assert find_cycle(graph) is None, "import circle: %s" % " -> ".join(find_cycle(graph))


def test_the_circle_finder_finds_circles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


# -- the folder alone, on both interpreters -------------------------------------------------

def isolated_copy(tmp_path):
    """tmp/lib/sensormesh/device: a copy of the folder, with an empty sensormesh/__init__.py."""
    lib = tmp_path / "lib"
    shutil.copytree(DEVICE, str(lib / "sensormesh" / "device"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    (lib / "sensormesh" / "__init__.py").write_text("")
    return str(lib)


IMPORT_ALL = """\
import sys
LIB = %r
mods = %r
failed = []
for m in mods:
    try:
        __import__(m)
    except Exception as e:
        failed.append("%%s: %%s: %%s" %% (m, type(e).__name__, e))
for name in sorted(sys.modules):
    if name.startswith("sensormesh"):
        f = getattr(sys.modules[name], "__file__", "") or ""
        if not f.startswith(LIB):
            failed.append("%%s came from %%r, outside the copy" %% (name, f))
print("imported", len(mods) - len(failed))
for line in failed:
    print("FAIL", line)
"""


def run_isolated(argv, lib, script, env):
    # The script lives in the copy's parent, so the repository is on no path.
    path = os.path.join(os.path.dirname(lib), "check.py")
    with open(path, "w") as f:
        f.write(script)
    r = subprocess.run(argv + [path], cwd=os.path.dirname(lib), env=env, capture_output=True,
                       text=True, timeout=120)
    return r.returncode, r.stdout + r.stderr


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MICROPYPATH")}
    env.update(extra)
    return env


def all_modules():
    # the esp32 drivers need the board's own modules (machine, esp32, dht): the simulated ones
    return [module_of(rel) for rel in device_files()]


def test_every_device_module_imports_from_the_folder_alone_on_micropython(tmp_path):
    mp = need_micropython()
    lib = isolated_copy(tmp_path)
    code, out = run_isolated([mp], lib, IMPORT_ALL % (lib, all_modules()),
                             clean_env(MICROPYPATH=lib + ":" + os.path.join(PKG, "fakehw")))
    assert code == 0 and "FAIL" not in out, out
    assert "imported %d" % len(all_modules()) in out, out


def test_every_device_module_imports_from_the_folder_alone_on_cpython(tmp_path):
    lib = isolated_copy(tmp_path)
    # -s: no user site; the venv's site-packages stay (cryptography), but they come after
    # PYTHONPATH, so `sensormesh` is the copy and sensormesh.controller does not exist there.
    code, out = run_isolated([sys.executable, "-s"], lib, IMPORT_ALL % (lib, all_modules()),
                             clean_env(PYTHONPATH=lib + os.pathsep + os.path.join(PKG, "fakehw")))
    assert code == 0 and "FAIL" not in out, out
    assert "imported %d" % len(all_modules()) in out, out


# -- steps on demand -------------------------------------------------------------------------

WINDOW_ONLY = """\
import sys
from sensormesh.device.core import Device
""" + FAKE_SESSION + """

dev = Device("lazy", ["counter"])
s = Session()
dev.dispatch(s, "deploy", {"assignment": {"pipeline": "p", "epoch": 1, "steps": [
    {"id": "c", "type": "source", "params": {"sensor": "counter"}},
    {"id": "w", "type": "window", "params": {"values": 4, "agg": "mean"}, "inputs": ["c"]},
    {"id": "o", "type": "pipe_out", "params": {"edge": "e", "to": "127.0.0.1:1"}, "inputs": ["w"]}]}})
print("reply", s.conn.sent)
print("steps", sorted(m for m in sys.modules if m.startswith("sensormesh.device.steps")))
print("runtime", sorted(m for m in sys.modules if m.startswith("sensormesh.device.runtime")))
"""

FAMILIES = ("alarm", "callback", "change", "field", "joins", "sinks", "throttle", "user", "user_filter", "windows")


def check_window_only(code, out):
    assert code == 0, out
    assert "'deployed'" in out, out
    line = [ln for ln in out.splitlines() if ln.startswith("steps ")][0]
    loaded = set(ln.strip("' ") for ln in line[len("steps "):].strip("[]").split(","))
    assert "sensormesh.device.steps.windows" in loaded, line
    others = [f for f in FAMILIES if f != "windows" and "sensormesh.device.steps." + f in loaded]
    assert not others, "a window-only device imported the step families %s" % others
    # it only sends: the receiving end of pipes, callback deliveries and the parts of a large
    # assignment stay unloaded
    line = [ln for ln in out.splitlines() if ln.startswith("runtime ")][0]
    loaded = set(ln.strip("' ") for ln in line[len("runtime "):].strip("[]").split(","))
    assert "sensormesh.device.runtime.pipes" in loaded, line
    for m in ("pipe_in", "delivery", "parts"):
        assert "sensormesh.device.runtime." + m not in loaded, line


def test_a_window_only_deployment_loads_only_the_windows_family_on_micropython(tmp_path):
    mp = need_micropython()
    lib = isolated_copy(tmp_path)
    check_window_only(*run_isolated([mp], lib, WINDOW_ONLY, clean_env(MICROPYPATH=lib)))


def test_a_window_only_deployment_loads_only_the_windows_family_on_cpython(tmp_path):
    lib = isolated_copy(tmp_path)
    check_window_only(*run_isolated([sys.executable, "-s"], lib, WINDOW_ONLY, clean_env(PYTHONPATH=lib)))


RECEIVE_ONLY = """\
import sys
from sensormesh.device.core import Device
""" + FAKE_SESSION + """

dev = Device("lazy", [])
s = Session()
dev.dispatch(s, "deploy", {"assignment": {"pipeline": "p", "epoch": 1, "steps": [
    {"id": "i", "type": "pipe_in", "params": {"edge": "e"}},
    {"id": "w", "type": "window", "params": {"values": 4, "agg": "mean"}, "inputs": ["i"]},
    {"id": "p", "type": "print", "params": {}, "inputs": ["w"]}]}})
print("reply", s.conn.sent)
print("runtime", sorted(m for m in sys.modules if m.startswith("sensormesh.device.runtime")))
"""


def check_receive_only(code, out):
    # it only receives: the sending end of pipes (pipes.py) and its replay buffer stay unloaded
    assert code == 0, out
    assert "'deployed'" in out, out
    line = [ln for ln in out.splitlines() if ln.startswith("runtime ")][0]
    loaded = set(ln.strip("' ") for ln in line[len("runtime "):].strip("[]").split(","))
    for m in ("pipe_in", "receiver"):
        assert "sensormesh.device.runtime." + m in loaded, line
    for m in ("pipes", "replay", "delivery", "parts"):
        assert "sensormesh.device.runtime." + m not in loaded, line


@pytest.mark.parametrize("interpreter", ["micropython", "cpython"])
def test_a_receive_only_deployment_loads_no_sending_code(tmp_path, interpreter):
    lib = isolated_copy(tmp_path)
    if interpreter == "micropython":
        argv, env = [need_micropython()], clean_env(MICROPYPATH=lib)
    else:
        argv, env = [sys.executable, "-s"], clean_env(PYTHONPATH=lib)
    check_receive_only(*run_isolated(argv, lib, RECEIVE_ONLY, env))


# -- a CPython device started by `sensormesh up` -------------------------------------------

def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


def test_a_local_cpython_device_imports_the_device_folder_only(tmp_path, monkeypatch):
    from sensormesh.controller.local import LocalCluster
    from sensormesh.controller.pipeline_file import load_model
    name = "imports-%d" % os.getpid()
    path = tmp_path / "p.yaml"
    path.write_text(textwrap.dedent("""\
        pipeline: imports
        devices:
          %s: {interpreter: cpython, sensors: [counter], local: true}
        steps:
          s: {type: source, sensor: counter, on: %s}
        sinks:
          out: {type: callback, input: s, on: %s}
        """ % (name, name, name)))
    model = load_model(str(path))
    # Every import the device process makes, one line each on its stderr (relayed with stdout).
    monkeypatch.setenv("PYTHONPROFILEIMPORTTIME", "1")
    cluster = LocalCluster(model, micropython="")
    cluster.start(timeout=60)
    try:
        proc = cluster.procs[name]
        assert proc.argv[1:3] == ["-m", "sensormesh.device"], proc.argv
        rss = rss_kb(proc.proc.pid)
    finally:
        cluster.stop()
    mods = set()
    for line in proc.lines:
        if line.startswith("import time:") and "|" in line:
            mods.add(line.rsplit("|", 1)[1].strip())
    assert "sensormesh.device.core" in mods and "sensormesh.device.sensors.sim.counter" in mods, sorted(mods)
    outside = sorted(m for m in mods if m.startswith("sensormesh.") and not m.startswith("sensormesh.device"))
    assert not outside, "a CPython device imported %s" % outside
    libs = sorted(m for m in mods if m.split(".")[0] in ("click", "scipy", "numpy", "networkx", "yaml"))
    assert not libs, "a CPython device imported %s" % libs
    print("CPython device: %d modules imported, VmRSS %s kB" % (len(mods), rss))


def test_micropython_runs_the_device_from_any_directory_after_setup(tmp_path):
    """`bash scripts/dev setup` links the package into .venv/lib/micropython and the activate
    script exports MICROPYPATH with it: then `micropython -m sensormesh.device` works anywhere."""
    mp = need_micropython()
    venv = os.path.join(ROOT, ".venv")
    if not os.path.islink(os.path.join(venv, "lib", "micropython", "sensormesh")):
        pytest.skip("bash scripts/dev setup has not run in this checkout")
    with open(os.path.join(venv, "bin", "activate")) as f:
        exports = [ln for ln in f if ln.startswith("export MICROPYPATH=")]
    assert exports, "setup did not add MICROPYPATH to the activate script"
    mppath = exports[-1].split("=", 1)[1].strip().strip('"')
    r = subprocess.run([mp, "-m", "sensormesh.device", "--help"], cwd=str(tmp_path), capture_output=True,
                       text=True, timeout=60, env=clean_env(MICROPYPATH=mppath))
    assert r.returncode == 0 and "usage: python -m sensormesh.device" in r.stdout, r.stdout + r.stderr
    if not os.path.exists(os.path.expanduser("~/.micropython/lib/sensormesh")):
        r = subprocess.run([mp, "-m", "sensormesh.device", "--help"], cwd=str(tmp_path), capture_output=True,
                           text=True, timeout=60, env=clean_env())
        assert "usage:" not in r.stdout   # what the setting changes: without it, no package here
