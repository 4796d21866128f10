# The smallest heap a MicroPython device needs, found by bisection over real runs of
# `sensormesh up` (the unix port, `micropython -X heapsize=...`), for three devices:
#   idle             started with a simulated temperature sensor, answers an info request;
#   deployed         runs source -> shipped map -> window -> pipe out to a CPython device, whose
#                    callback sink must receive --count values (plaintext);
#   keyed+deployed   the same with keys, as `sensormesh up` runs it by default;
#   keyed receiving  with keys, the CPython device samples and pipes to the board (window, callback
#                    sink): an accepted connection's handshake on top of a deployment;
#   demo boards      the README demo (examples/pipelines/rotary_alarm.yaml) with keys, both boards;
# each from the precompiled package's .mpy files (a board with the package in files on its flash),
# with two baselines measured in the same run: the .py sources, and (deployed devices) the .mpy
# package importing every step family at start (what a device paid before steps loaded on demand);
# and from the same .mpy files as a ROMFS image run in place (`up`'s default, a board with
# the package in its ROMFS partition: --form romfs), against the .mpy files. A run passes when every
# wanted value arrives and no device reported a MemoryError; a run that failed with no sign of
# running out of heap (a missed deadline on a loaded machine) is run once more. Then the heap after each import
# (gc.mem_alloc() after gc.collect(), a fresh interpreter with a roomy heap): where it goes.
#     python3 benchmarks/bench_heap.py [--count 10] [--lo 32] [--hi 320] [--step 4] [--only idle|deployed|keyed+deployed|"keyed receiving"|"demo boards"]
#                                      [--form .mpy|.py|all|romfs, or several: --form .mpy,romfs]
# Phases (--phases runs only this part): the keyed deployed device under a roomy heap (256K) with a
# launcher that wraps the device's entry points (nothing in the package changes) and prints the
# live heap (gc.mem_alloc() after gc.collect()), the free heap and its largest free block after
# each phase (keys loaded and listening, the controller's handshake, the deployment, the start,
# the pipe's own handshake, steady state) and at the deployment's fullest moment (the largest live
# heap at the boundaries between its stages: each device module it imports, each call of code loaded
# on demand, on entry and on return; where that was), the names interned so far (micropython.qstr_info():
# how many, and their heap with the pools that index them) and the device modules resident at
# steady state. --phases --receiving: the keyed receiving board instead, with the CPython device's
# pipe accepted after the deployment (admit.py, then accept.py for its hello, loaded; its handshake done).
# --phases --demo: both boards of the README demo (with keys), the same phases where they apply.
# The stop that ends the run is traced as the deployment is: its fullest moment, and where.
# The unix port is 64-bit: objects take up to twice their size on an ESP32 (32-bit), so these
# figures are an upper bound for a board. Prints tables; the serving figures of data requests
# are benchmarks/bench_heap_streams.py.
# Metrics (docs/observability.md): the live heap of a deployed device with its metrics on vs off,
# byte for byte (--metrics runs only this part): one fresh interpreter per setting, the .mpy
# package, a device with a controller's session (hello) running source -> map -> window -> pipe
# out to itself -> pipe in -> callback for 4 s, asked for its metrics every second (on) as the
# controller does (off: not asked, so the reply's own cost counts as metrics too); the heap after
# gc.collect() sampled every 100 ms, its largest value after the first second kept (target: at
# most 2 KB more on). Runs alternate off/on, --repeat N times (3 with --metrics), the median and
# the smallest of each shown. --against DIR measures another checkout's device package (e.g. a
# worktree of main) in the same run, as the baseline:
#     python3 benchmarks/bench_heap.py --metrics [--repeat 3] [--against ../main]
# Rounds (--rounds N runs only this part): the keyed deployed device run N times under 96K and,
# as the baseline, N times under the default heap of local MicroPython devices, the two heaps
# alternating; per heap, how many runs were clean (every value arrived, nothing short of heap),
# how many ran to their end with a shortfall the device named (a status reply without its
# per-step counts, a flush that found no block to seal its frame), and how many failed. A heap
# this close to the device's need is met in some runs and not in others, so a bisection's one
# run per heap cannot tell; this part says how often:
#     python3 benchmarks/bench_heap.py --rounds 20 [--heaps 96,112] [--slow-peer 0.8] [--logs DIR]
# --slow-peer S: the CPython device takes S seconds to answer each hello (a loaded PC); --logs DIR
# keeps the output of every run that was not clean (DIR/round-N-HEAPK.log).
# Every interpreter runs in the package's own folder, so that it imports the .mpy files (a
# checkout's working directory would put its .py sources first on MicroPython's path).
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from sensormesh.board import _find_tool  # noqa: E402
from sensormesh.controller import mpy_cache, runner  # noqa: E402
from sensormesh.controller.local import LocalCluster, LocalError  # noqa: E402
from sensormesh.controller.pipeline_file import load_model  # noqa: E402

FAMILIES = ("user", "field", "windows", "sliding", "joins", "change", "alarm", "sinks", "callback", "filters")
TARGET_KB = 96

PIPELINE = """\
pipeline: heap-bench
devices:
  board: {interpreter: micropython, sensors: ["t=temperature@50"], local: true, unix: "%(tmp)s/board.sock"}
  pc: {interpreter: cpython, local: true, unix: "%(tmp)s/pc.sock"}
steps:
  t:      {type: source, sensor: t, on: board}
  scaled: {type: map, fn: "bench_fns.py:fahrenheit", input: t, on: board}
  avg:    {type: window, time-frame: 100, agg: mean, input: scaled, on: board}
  late:   {type: map, fn: "bench_fns.py:rounded", input: avg, on: pc}
sinks:
  got: {type: callback, input: late}
"""
FNS = """\
def fahrenheit(c):
    return c * 1.8 + 32


def rounded(v):
    return round(v, 2)
"""

# A keyed board at the receiving end: the CPython device samples and pipes to the board, which
# runs a window and a callback sink (an accepted connection's handshake on top of a deployment).
RECEIVING = """\
pipeline: heap-bench-receiving
devices:
  board: {interpreter: micropython, local: true, unix: "%(tmp)s/board.sock"}
  pc: {interpreter: cpython, sensors: ["t=temperature@50"], local: true, unix: "%(tmp)s/pc.sock"}
steps:
  t:      {type: source, sensor: t, on: pc}
  avg:    {type: window, time-frame: 100, agg: mean, input: t, on: board}
sinks:
  got: {type: callback, input: avg, on: board}
"""
DEMO = os.path.join(ROOT, "examples", "pipelines", "rotary_alarm.yaml")

# How the package's launcher runs the device (a checkout older than mpy_cache.LAUNCHER_MAIN, a
# baseline, runs it the same way).
LAUNCHER_MAIN = getattr(mpy_cache, "LAUNCHER_MAIN", "from sensormesh.device.__main__ import main\nmain()\n")
# What a device imported before steps were split into families: all of them. The baseline runs
# this launcher instead of the package's run_device.py (same folder on MICROPYPATH).
ALL_FAMILIES = "".join("import sensormesh.device.steps.%s\n" % f for f in FAMILIES) + LAUNCHER_MAIN
WRAPPER = """#!/bin/sh
# called as: micropython -X heapsize=H FOLDER/run_device.py [ARGS...]
heap="$2"
shift 3
exec %(mp)s -X "$heap" %(launcher)s "$@"
"""


def short_of_memory(text):
    """Does a device's output line or a run's event say it ran out of heap (a MemoryError, or a
    deployment refused for want of memory)?"""
    return ("MemoryError" in text or "no memory free" in text or "out-of-memory" in text
            or "memory allocation failed" in text)


def replies_cut(lines):
    """How many status or stopped replies a device sent without their per-step counts because
    its heap had no block free for the whole reply (the pipeline itself ran on)."""
    return sum(1 for e in lines if "without its per-step counts" in str(e))


class Bench:
    def __init__(self, count, keys_dir, tmp):
        self.count = count
        self.keys_dir = keys_dir
        self.tmp = tmp
        self.mp = _find_tool("micropython")
        self.runs = 0
        self.repeated = 0         # runs repeated after a failure not caused by the heap (fits_twice)
        self.memory_error = False  # did the last run's devices run out of heap?
        self.row = None           # the row being bisected
        self.cut = 0              # replies cut short for memory in the last run (replies_cut)
        self.got = 0              # values the sink received in the last deployed run
        self.cuts = {}            # (row, heap) -> replies cut short in the run that fit
        self.romfs = False        # run the board from the package's ROMFS image, not its .mpy files

    def from_romfs(self, fits, *args):
        """fits(*args) with the board running the package from its ROMFS image."""
        self.romfs = True
        try:
            return fits(*args)
        finally:
            self.romfs = False

    def model(self, heap, text=PIPELINE):
        run = tempfile.mkdtemp(dir=self.tmp)
        path = os.path.join(run, "bench.yaml")
        with open(path, "w") as f:
            f.write(text % {"tmp": run})
        with open(os.path.join(run, "bench_fns.py"), "w") as f:
            f.write(FNS)
        return load_model(path), run

    def wrapper(self, name="all_families", text=ALL_FAMILIES):
        """An executable that runs the device with the launcher `text` (saved as NAME.py in
        the bench's folder, which comes first on the device's sys.path) instead of the package's."""
        path = os.path.join(self.tmp, "mp-" + name)
        if not os.path.exists(path):
            launcher = os.path.join(self.tmp, name + ".py")
            with open(launcher, "w") as f:
                # first the package launcher's own start (module paths through a short mount);
                # a checkout older than it (a baseline) has none
                f.write(getattr(mpy_cache, "SHORT_PATHS", "") + text)
            with open(path, "w") as f:
                f.write(WRAPPER % {"mp": self.mp, "launcher": launcher})
            os.chmod(path, 0o755)
        return path

    def idle(self, heap, mpy):
        """The board alone, started, answering info."""
        from sensormesh.client import Client
        model, run = self.model(heap)
        model.devices["pc"].local = False   # only the board starts
        model.devices["pc"].address = "127.0.0.1:1"
        cl = LocalCluster(model, micropython=self.mp, heap="%dK" % heap, mpy=mpy, romfs=self.romfs)
        ok = False
        try:
            cl.start(timeout=30)
            c = Client(cl.tcp["board"], timeout=10)
            try:
                c.send({"info": {}})
                ok = "info" in (c.recv() or {})
            finally:
                c.close()
            self.memory_error = any(p.memory_error for p in cl.procs.values())
            ok = ok and not self.memory_error
        except (LocalError, OSError, ValueError):
            self.memory_error = any(p.memory_error for p in cl.procs.values())
            ok = False
        finally:
            cl.stop()
            shutil.rmtree(run, ignore_errors=True)
        return ok

    def deployed(self, heap, mpy, keyed, every_family=False, micropython=None, events=None):
        model, run = self.model(heap)
        events = [] if events is None else events
        got = []
        try:   # a device's own MemoryError is in its output (on_line), a failed start's in the events
            runner.up(model, count=self.count, duration=40, heap="%dK" % heap, mpy=mpy, romfs=self.romfs,
                      micropython=micropython or (self.wrapper() if every_family else self.mp),
                      insecure=not keyed, keys_dir=self.keys_dir if keyed else None, timeout=10,
                      on_event=events.append, on_deliver=lambda d, s, v: got.extend(v),
                      on_line=lambda d, line: events.append(line))
        except Exception as e:     # a device that could not start or take the deployment
            events.append("%s: %s" % (type(e).__name__, e))
        finally:
            shutil.rmtree(run, ignore_errors=True)
        self.memory_error = any(short_of_memory(str(e)) for e in events)
        self.cut = replies_cut(events)
        self.got = len(got)
        return len(got) >= self.count and not self.memory_error

    def receiving(self, heap):
        """The keyed board at the receiving end of a CPython device's pipe (RECEIVING)."""
        model, run = self.model(heap, RECEIVING)
        return self._run(model, run, heap)

    def demo(self, heap):
        """The README demo (examples/pipelines/rotary_alarm.yaml) with keys, both boards under
        `heap`: every callback sink must receive values."""
        run = tempfile.mkdtemp(dir=self.tmp)
        model = load_model(DEMO)
        return self._run(model, run, heap, sinks={k for k, v in model.steps.items() if v.type == "callback"})

    def _run(self, model, run, heap, sinks=None):
        """Run `model` keyed for self.count values (every sink in `sinks` receiving some)."""
        events, got, seen = [], [], set()

        def deliver(d, step, values):
            got.extend(values)
            seen.add(step)
        try:
            runner.up(model, count=self.count, duration=40, heap="%dK" % heap, mpy=True, romfs=self.romfs,
                      micropython=self.mp, keys_dir=self.keys_dir, timeout=10,
                      on_event=events.append, on_deliver=deliver,
                      on_line=lambda d, line: events.append(line))
        except Exception as e:
            events.append("%s: %s" % (type(e).__name__, e))
        finally:
            shutil.rmtree(run, ignore_errors=True)
        self.memory_error = any(short_of_memory(str(e)) for e in events)
        self.cut = replies_cut(events)
        return len(got) >= self.count and not (sinks and sinks - seen) and not self.memory_error

    def fits_twice(self, fits, heap):
        """fits(heap); a run that failed with no sign of running out of heap (short_of_memory: a
        deadline missed on a loaded machine, a port taken meanwhile) is run once more, so that one
        such failure does not set a false floor for the whole bisection. A run that ran out of
        heap is not repeated."""
        self.runs += 1
        self.memory_error = False
        self.cut = 0
        if fits(heap):
            self.cuts[(self.row, heap)] = self.cut
            return True
        if self.memory_error:
            return False
        self.runs += 1
        self.repeated += 1
        self.cut = 0
        ok = fits(heap)
        if ok:
            self.cuts[(self.row, heap)] = self.cut
        return ok

    def smallest(self, fits, lo, hi, step):
        """Bisection: the smallest heap (KB, multiple of step) at which fits(heap) holds."""
        if not self.fits_twice(fits, hi):
            return None
        while hi - lo > step:
            mid = (lo + hi) // 2 // step * step
            if mid <= lo:
                break
            if self.fits_twice(fits, mid):
                hi = mid
            else:
                lo = mid
        return hi


IMPORTS = (
    ("device core (compat, codec, transport, sensors, core, __main__)",
     ("compat", "codec", "transport", "sensors", "core", "__main__")),
    ("simulated sensors (sensors.sim, temperature)", ("sensors.sim", "sensors.sim.temperature")),
    ("secure session kept between handshakes (secure, channel)", ("secure", "secure.channel")),
    ("a prepared dial's hello (basics, dial_hello; only while it is made)", ("secure.basics", "secure.dial_hello")),
    ("its welcome's check (welcome; only while it runs)", ("secure.welcome",)),
    ("the rest of the handshake's code (keys, pubkey; a deployment's preparation, an accepted "
     "connection, a dial not prepared)", ("secure.keys", "secure.pubkey")),
    ("a client looking its server up (hello; tools, a dial to a peer not trusted as a device)", ("secure.hello",)),
    ("an accepted connection's server side (admit, accept, server; only while one runs)",
     ("secure.admit", "secure.accept", "secure.server")),
    ("key agreement (x25519; only while a pair key is computed)", ("secure.x25519",)),
    ("runtime + step base, pipe out + replay buffer, metrics probe (first start)",
     ("runtime", "runtime.pipes", "runtime.probe")),
    ("a deployment (runtime/deploy.py; only while one is applied, its stages' modules one at a time)",
     ("runtime.deploy",)),
    ("  its first stage: running its shipped code (runtime/shipped.py)", ("runtime.shipped",)),
    ("  checking it, finding its steps' classes (runtime/build.py, steps/kinds.py)", ("runtime.build", "steps.kinds")),
    ("  making its steps (steps/make.py)", ("steps.make",)),
    ("  making its pipes (runtime/build_pipes.py)", ("runtime.build_pipes",)),
    ("  wiring them (steps/wiring.py)", ("steps.wiring",)),
    ("  its last stage: putting it in place (runtime/install.py)", ("runtime.install",)),
    ("control messages (runtime/control.py; only while one is handled)", ("runtime.control",)),
    ("a stop (runtime/stop.py; only while one is handled)", ("runtime.stop",)),
    ("a status reply: made, counted, sent (status.py, runtime/report.py, replies.py; one after the other, "
     "only while one is made)", ("status", "runtime.report", "replies")),
    ("pipe in + receiver (only with a pipe_in)", ("runtime.pipe_in",)),
    ("callback deliveries (only with a callback sink)", ("runtime.delivery",)),
    ("step family: user (map)", ("steps.user",)),
    ("step family: windows", ("steps.windows",)),
    ("the other step families (filter, sliding, field, joins, changes, throttle, alarm, sinks, callback, filters)",
     ("steps.user_filter", "steps.sliding", "steps.field", "steps.joins", "steps.change", "steps.throttle",
      "steps.alarm", "steps.sinks", "steps.callback", "steps.filters")),
    ("data requests (first data-request)", ("datarequest",)),
)
PROBE = """import gc
gc.collect()
a = gc.mem_alloc()
print('base|%d' % a)
for i, mods in enumerate(GROUPS):
    for m in mods:
        try:
            __import__('sensormesh.device.' + m)
        except ImportError:     # a checkout without this module (a baseline)
            pass
    gc.collect()
    b = gc.mem_alloc()
    print('%d|%d' % (i, b - a))
    a = b
"""


def import_costs(path):
    """[(label, bytes)] of each import group in order, in one fresh interpreter."""
    mp = _find_tool("micropython")
    code = "GROUPS = %r\n" % ([g[1] for g in IMPORTS],) + PROBE
    out = subprocess.run([mp, "-X", "heapsize=2M", "-c", code], env=dict(os.environ, MICROPYPATH=path),
                         capture_output=True, text=True, timeout=60, cwd=path).stdout
    vals = dict(line.split("|") for line in out.splitlines() if "|" in line)
    return int(vals.get("base", 0)), [(label, int(vals[str(i)]) if str(i) in vals else None)
                                      for i, (label, _) in enumerate(IMPORTS)]


METRICS_PROBE = """import gc, time
from sensormesh.device import core, transport, codec
ON = %d
dev = core.Device('m', ['t=temperature@50'])
dev.metrics = dev.loop.timing = bool(ON)    # (boot.set_metrics, which the probe does not load)
lst = transport.listen_tcp(dev.loop, '127.0.0.1', 0, dev.make_inbound)
port = lst.sock.getsockname()[1] if hasattr(lst.sock, 'getsockname') else %d
class C:
    closed = False
    def send(self, m):
        codec.dumps(m)
class S:
    conn = C()
s = S()
dev.dispatch(s, 'hello', {})    # a controller's session, as every deployed device has one
code = {'fns': 'def f(c):\\n    return c * 9 / 5 + 32\\n'}
asg = {'pipeline': 'h', 'epoch': 1, 'code': code, 'steps': [
  {'id': 't', 'type': 'source', 'params': {'sensor': 't'}},
  {'id': 'm', 'type': 'map', 'params': {'fn': 'fns:f'}, 'inputs': ['t']},
  {'id': 'w', 'type': 'window', 'params': {'time-frame': 100, 'agg': 'mean'}, 'inputs': ['m']},
  {'id': 'o', 'type': 'pipe_out', 'params': {'edge': 'e', 'to': '127.0.0.1:%d', 'time-frame': 0}, 'inputs': ['w']},
  {'id': 'i', 'type': 'pipe_in', 'params': {'edge': 'e'}},
  {'id': 'k', 'type': 'callback', 'params': {'name': 'k'}, 'inputs': ['i']}]}
dev.runtime_handler('deploy')(s, {'assignment': asg})
dev.runtime_handler('start')(s, {})
peak = 0
t0 = time.ticks_ms()
nxt = 0
while time.ticks_diff(time.ticks_ms(), t0) < 4000:
    dev.loop.run_once(100)
    el = time.ticks_diff(time.ticks_ms(), t0)
    if el >= nxt:
        nxt += 100
        if ON and el // 1000 != (el - 100) // 1000:
            dev.dispatch(s, 'metrics', {})
        gc.collect()
        if el > 1000:
            a = gc.mem_alloc()
            peak = a if a > peak else peak
st = dev.runtime.status()['steps']
print('peak|%%d' %% peak)
print('delivered|%%d' %% st['k']['in'])
"""


def metrics_heap(path, repeat=1):
    """{"off"|"on": [(largest live heap, values delivered), ...]} of a deployed device, one
    fresh interpreter per run, off and on alternated."""
    import socket
    mp = _find_tool("micropython")
    out = {"off": [], "on": []}
    for _ in range(repeat):
        for on in (0, 1):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
            s.close()
            code = METRICS_PROBE % (on, port, port)
            code = code.replace("'127.0.0.1', 0, dev.make_inbound)", "'127.0.0.1', %d, dev.make_inbound)" % port)
            r = subprocess.run([mp, "-X", "heapsize=256K", "-c", code], env=dict(os.environ, MICROPYPATH=path),
                               capture_output=True, text=True, timeout=60, cwd=path)
            vals = dict(line.split("|") for line in r.stdout.splitlines() if "|" in line)
            if "peak" not in vals:
                raise RuntimeError("metrics heap probe failed: %s" % (r.stderr.strip().splitlines() or ["?"])[-1])
            out["on" if on else "off"].append((int(vals["peak"]), int(vals["delivered"])))
    return out


def print_metrics_heap(results):
    """results: [(label, metrics_heap() of that package)]."""
    print("Live heap of a deployed device, metrics off vs on (.mpy, -X heapsize=256K, largest")
    print("gc.mem_alloc() after gc.collect() over 3 s of running, metrics asked for every second when on;")
    print("median of the runs, the smallest in brackets; bytes)")
    w = max([len(label) for label, _ in results] + [10])
    print("%-*s %18s %18s %16s %8s" % (w, "device code", "metrics off", "metrics on", "on - off", "values"))
    print("-" * (w + 64))

    def med(xs):
        xs = sorted(xs)
        return xs[len(xs) // 2]
    for label, m in results:
        off = [r[0] for r in m["off"]]
        on = [r[0] for r in m["on"]]
        vals = "%d/%d" % (min(r[1] for r in m["off"]), min(r[1] for r in m["on"]))
        print("%-*s %9d (%6d) %9d (%6d) %7d (%6d) %8s" % (w, label, med(off), min(off), med(on), min(on),
                                                         med(on) - med(off), min(on) - min(off), vals))
    print("target: on - off at most 2048 bytes")


PHASE_LAUNCHER = """import gc, sys
try:
    ACCEPTS      # a prelude may set it: mark the first accepted connection's handshake after the deployment
except NameError:
    ACCEPTS = False
def _largest():
    free = gc.mem_free()
    lo, hi = 0, free + 16
    while hi - lo > 64:
        n = (lo + hi) // 2
        try:
            b = bytearray(n)
            b = None
            lo = n
        except MemoryError:
            hi = n
    return lo
import micropython
def mark(label, mods=False):
    gc.collect()
    a, f = gc.mem_alloc(), gc.mem_free()
    print('PHASE|%s|%d|%d|%d' % (label, a, f, _largest()))
    micropython.qstr_info()   # the interned-name table: 'qstr pool: ..., n_qstr=N, ...'
    if mods:
        print('MODS|' + ' '.join(sorted(k[18:] for k in sys.modules if k.startswith('sensormesh.device.'))))
from sensormesh.device import core
_start = core.start
def start(cfg):
    dev = _start(cfg)
    if dev.security is not None:
        traced_security(dev)
    mark('keys loaded, listening')
    return dev
core.start = start
# The deployment's fullest moment: from a deploy message's arrival to its reply, the live heap at
# every boundary between its stages (each import of a device module once it is loaded, each call of
# code loaded on demand, steps.rare_call, on entry and on return; a module forgotten only lowers
# it); the largest, where it was, printed as a row of its own before the 'deployed' row.
# (Its largest free block is not probed: a probe's large bytearray, still pointed at from the C
# stack, could be kept by the next collection and fail the deployment it measures.)
import builtins
_peak = [0, 0, 0, -1, '']    # deploying?, live heap, free, largest free block (not probed), where
def _at(where):
    gc.collect()
    a = gc.mem_alloc()
    if a > _peak[1]:
        _peak[1:] = [a, gc.mem_free(), -1, where]
_rare = []
def rare_call(module, name, *args, **kw):
    if not _peak[0]:
        return _rare[0](module, name, *args, **kw)
    _at('%s.%s called' % (module[18:], name))
    try:
        return _rare[0](module, name, *args, **kw)
    finally:
        _at('%s.%s returned' % (module[18:], name))
_import = builtins.__import__
def traced_import(name, *args):
    if not _peak[0] or name in sys.modules:
        m = _import(name, *args)
    else:
        m = _import(name, *args)
        _at((name[18:] if name.startswith('sensormesh.device.') else name) + ' imported')
    for k in ('sensormesh.device.steps', 'sensormesh.device.runtime'):   # their rare_call, once loaded
        mod = sys.modules.get(k)
        if mod is not None and getattr(mod, 'rare_call', rare_call) is not rare_call:
            if not _rare:
                _rare.append(mod.rare_call)
            mod.rare_call = rare_call
    return m
builtins.__import__ = traced_import
_deploy_traced = core.Device.dispatch
def dispatch(self, session, key, body):
    if key not in ('deploy', 'deploy-part', 'stop', 'undeploy'):
        return _deploy_traced(self, session, key, body)
    _peak[:] = [1, 0, 0, -1, '']
    what = 'deployment' if key.startswith('deploy') else 'stop'
    try:
        _at('the %s message arrived' % key)
        _deploy_traced(self, session, key, body)
    finally:
        _peak[0] = 0
        print("PHASE|the %s's fullest moment (%s)|%d|%d|%d" % (what, _peak[4], _peak[1], _peak[2], _peak[3]))
core.Device.dispatch = dispatch
# steady state: counted from the deployment's start message (a loaded machine may take seconds
# to deploy; counting from the process's start would sample before the deployment)
_n = [0]
def _tick(dev):
    _n[0] += 1
    if _n[0] in (5, 6, 7, 8):
        mark('steady state (%d s after start)' % _n[0], _n[0] == 8)
    if _n[0] < 8:
        dev.loop.call_later(1000, lambda: _tick(dev))
_dispatch = core.Device.dispatch
def dispatch(self, session, key, body):
    _dispatch(self, session, key, body)
    if key in ('hello', 'deploy', 'start'):
        mark({'hello': 'controller session up (handshake done)', 'deploy': 'deployed',
              'start': 'started'}[key])
        if key == 'start' and not _n[0]:
            self.loop.call_later(1000, lambda: _tick(self))
core.Device.dispatch = dispatch
_dial = core.Device.dial
def dial(self, *args):
    conn = _dial(self, *args)
    mark("the pipe dialed (hello sent, its welcome awaited)")
    return conn
core.Device.dial = dial
def traced_security(self):
    # the handshake's modules load and unload: hook secure.load() (a pipe's dial loads dial_hello.py)
    # and compat.collect(), which secure.basics.idle() calls last (basics.py imports it anew each time
    # it loads again)
    from sensormesh.device import compat
    from sensormesh.device import secure as sec
    _collect, _load = compat.collect, sec.load
    state = [0]   # 1: a dial after the deployment loaded dial_hello.py; 3: and welcome.py; 2: marked
    accepts = {}  # with ACCEPTS (a receiving board): the first accept after the deployment
    def load(name):
        if name == 'dial_hello' and state[0] == 0 and getattr(self, 'runtime', None) is not None:
            state[0] = 1
        m = _load(name)
        if state[0] in (1, 3) and name in ('dial_hello', 'welcome'):
            step(m, name)     # the dial's two steps: marked while their code is loaded
            if name == 'welcome':
                state[0] = 3  # its welcome arrived: the next collection with no dial waiting ends it
        if ACCEPTS and name in ('admit', 'accept', 'server') and getattr(self, 'runtime', None) is not None:
            n = accepts[name] = accepts.get(name, 0) + 1
            if name == 'admit' and n == 1:
                mark('the pipe accepted (admit.py loaded)')
            elif name == 'accept' and n == 1:
                mark('its hello: accept.py loaded (basics.py, welcome.py)')
            elif name == 'server' and n <= 2:
                mark('its hello: server.py loaded%s' % ('' if n == 1 else ' again (after the pair key)'))
        return m
    def step(m, name):
        # the hello made (dial_hello.make returned), the welcome checked (welcome.channel returned):
        # the module's own function replaced in its globals, so that its callers there mark too
        fn = 'make' if name == 'dial_hello' else 'channel'
        real = getattr(m, fn)
        if real.__name__ == 'traced':
            return
        def traced(*args):
            r = real(*args)
            mark("the pipe's hello made (dial_hello.py loaded)" if name == 'dial_hello'
                 else "the pipe's welcome checked (welcome.py loaded)")
            return r
        setattr(m, fn, traced)
    _handshake = sec.Security.handshake
    def handshake(s, session, conn, msg):
        _handshake(s, session, conn, msg)
        if ACCEPTS and getattr(self, 'runtime', None) is not None and not accepts.get('done'):
            accepts['done'] = 1   # measured on the next loop turn, once the handshake's frames are gone
            self.loop.call_soon(lambda: mark("the pipe's handshake done (its code unloaded)"))
    sec.Security.handshake = handshake
    def collect():
        _collect()
        if state[0] == 3 and sec.busy[0] == 0 and not sec.dials:
            state[0] = 2  # measured on the next loop turn, once the handshake's frames are gone
            self.loop.call_soon(lambda: mark("the pipe's handshake done (its code unloaded)"))
    compat.collect = collect
    sec.load = load
""" + LAUNCHER_MAIN


def phases(bench, prelude="", name="phases", text=PIPELINE):
    """[(phase, live heap, free, largest free block)], resident modules: the keyed deployed
    device (text=RECEIVING: the keyed receiving board, its accepted pipe's handshake traced too)
    under 256K, traced by a launcher around the package (see the top of this file); `prelude`
    runs first in that launcher (another benchmark's hooks)."""
    if text is RECEIVING:
        prelude, name = "ACCEPTS = True\n" + prelude, name + "-receiving"
    model, run = bench.model(256, text)
    return _traced(bench, bench.wrapper(name, prelude + PHASE_LAUNCHER), model, run, ("board",))["board"]


def demo_phases(bench):
    """{board: (rows, modules)} as phases() gives them, for both boards of the README demo
    (DEMO, with keys)."""
    model = load_model(DEMO)
    return _traced(bench, bench.wrapper("phases", PHASE_LAUNCHER), model, tempfile.mkdtemp(dir=bench.tmp),
                   [d.name for d in model.devices.values() if d.local and d.interpreter == "micropython"])


def _traced(bench, wrapper, model, run, devices):
    lines = []
    try:
        runner.up(model, duration=10, heap="256K", mpy=True, romfs=False, micropython=wrapper, keys_dir=bench.keys_dir,
                  timeout=10, on_event=lambda e: None, on_line=lambda d, line: lines.append((d, line)))
    finally:
        shutil.rmtree(run, ignore_errors=True)
    out = {}
    for dev in devices:
        rows, mods = [], ""
        for d, line in lines:
            if d != dev:
                continue
            if line.startswith("PHASE|"):
                label, a, f, big = line.split("|")[1:]
                rows.append([label, int(a), int(f), int(big), None, None, None])
            elif line.startswith("qstr pool:") and rows:
                rows[-1][4:] = qstr_figures(line)
            elif line.startswith("MODS|"):
                mods = line[5:]
        out[dev] = (rows, mods)
    return out


def qstr_figures(line):
    """[names, string bytes, total bytes] from micropython.qstr_info()'s line ('qstr pool:
    n_pool=6, n_qstr=1060, n_str_data_bytes=14284, n_total_bytes=28524'): the names interned at
    run time, their characters, and those plus the pools that index them."""
    fields = dict(kv.strip().split("=") for kv in line.split(":", 1)[1].split(","))
    return [int(fields["n_qstr"]), int(fields["n_str_data_bytes"]), int(fields["n_total_bytes"])]


def print_phases(rows, mods, what="Keyed deployed device"):
    print("%s, phase by phase (.mpy, -X heapsize=256K, gc.collect() first; the" % what)
    print("tracing launcher itself holds about 5 KB of this)")
    print("names: identifiers and short strings interned at run time (they stay interned once a")
    print("module loaded on demand is forgotten); their heap: characters plus the pools indexing them")
    w = max([24] + [len(r[0]) for r in rows])
    print("%-*s %10s %10s %14s %7s %12s" % (w, "after", "live heap", "free", "largest free", "names",
                                          "their heap"))
    print("-" * (w + 60))
    for label, a, f, big, names, chars, total in rows:
        print("%-*s %7.1f KB %7.1f KB %14s %7s %12s" % (
            w, label, a / 1024.0, f / 1024.0, "-" if big < 0 else "%.1f KB" % (big / 1024.0),
            "-" if names is None else names,
            "-" if total is None else "%.1f KB" % (total / 1024.0)))
    print("device modules resident at steady state: %s" % (mods or "-"))


SLOW_PEER = """import os, time
from sensormesh.device import secure
_handshake = secure.Security.handshake
def handshake(self, session, conn, msg):
    time.sleep(float(os.environ["SENSORMESH_BENCH_SLOW_HELLO"]))
    return _handshake(self, session, conn, msg)
secure.Security.handshake = handshake
"""


def rounds(n, heaps, slow=None, logs=None):
    """Run the keyed deployed device n times under each of `heaps` (KB), alternating; per heap
    {"clean", "cut", "failed"} counts and the first lines of each failed run's shortfall."""
    tmp = tempfile.mkdtemp(prefix="sensormesh-bench-heap-")
    saved = dict((k, os.environ.get(k)) for k in ("PYTHONPATH", "SENSORMESH_BENCH_SLOW_HELLO"))
    if slow:     # the CPython device's process runs this first (sitecustomize)
        site = os.path.join(tmp, "site")
        os.mkdir(site)
        with open(os.path.join(site, "sitecustomize.py"), "w") as f:
            f.write(SLOW_PEER)
        os.environ["PYTHONPATH"] = os.pathsep.join([site, ROOT] + [p for p in [saved["PYTHONPATH"]] if p])
        os.environ["SENSORMESH_BENCH_SLOW_HELLO"] = str(slow)
    out = dict((h, {"clean": 0, "cut": 0, "failed": 0, "where": []}) for h in heaps)
    b = Bench(10, os.path.join(tmp, "keys"), tmp)
    t0 = time.monotonic()
    try:
        for i in range(n):
            for h in heaps:
                events = []
                ok = b.deployed(h, True, True, events=events)
                short = [str(e) for e in events if short_of_memory(str(e))]
                r = out[h]
                if logs and not ok:
                    os.makedirs(logs, exist_ok=True)
                    with open(os.path.join(logs, "round-%d-%dK.log" % (i + 1, h)), "w") as f:
                        f.write("\n".join(str(e) for e in events) + "\n")
                if ok:
                    r["clean"] += 1
                elif b.got >= b.count and any("stopped" in str(e) for e in events):
                    r["cut"] += 1
                    r["where"].append(short[0] if short else "?")
                else:
                    r["failed"] += 1
                    r["where"].append(short[0] if short else (str(events[-1]) if events else "?"))
                print("round %d/%d, %d KB: %s (%.0f s)" % (i + 1, n, h, "clean" if ok else "short" if short else "failed",
                                                          time.monotonic() - t0), file=sys.stderr)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def print_rounds(out, n, base, slow):
    print("Keyed deployed device (source -> shipped map -> window -> pipe out, .mpy, keys), %d runs per heap,"
          % n)
    print("the heaps alternating%s. clean = every value arrived and the device never ran short of heap;"
          % (", the CPython device answering each hello after %s s" % slow if slow else ""))
    print("cut = it ran to its end, its values arrived, but it named a shortfall (a reply without its counts,")
    print("a frame it could not seal); failed = values missing or the device did not stop when told.")
    print()
    print("%8s %7s %5s %8s %12s" % ("heap", "clean", "cut", "failed", "clean/base"))
    print("-" * 44)
    b = out[base]["clean"]
    for h in sorted(out):
        r = out[h]
        print("%6d K %4d/%d %5d %8d %12s" % (h, r["clean"], n, r["cut"], r["failed"],
                                           "%.2f" % (r["clean"] / float(b)) if b else "-"))
    for h in sorted(out):
        for line in out[h]["where"][:5]:
            print("  %d K: %s" % (h, line[:150]))


def main(argv):
    if "--rounds" in argv:
        from sensormesh.controller.model import DEFAULT_HEAP, heap_bytes
        n = int(argv[argv.index("--rounds") + 1])
        base = heap_bytes(DEFAULT_HEAP) // 1024
        heaps = ([int(h) for h in argv[argv.index("--heaps") + 1].split(",")] if "--heaps" in argv
                 else [TARGET_KB, base])
        slow = float(argv[argv.index("--slow-peer") + 1]) if "--slow-peer" in argv else None
        logs = argv[argv.index("--logs") + 1] if "--logs" in argv else None
        print_rounds(rounds(n, heaps, slow, logs), n, base if base in heaps else heaps[-1], slow)
        return 0
    if "-h" in argv or "--help" in argv:     # the notes at the top of this file
        with open(os.path.abspath(__file__)) as f:
            for line in f:
                if not line.startswith("#"):
                    break
                print(line[2:].rstrip())
        return 0
    if "--metrics" in argv:
        repeat = int(argv[argv.index("--repeat") + 1]) if "--repeat" in argv else 3
        bundle, _ = mpy_cache.bundle()
        packages = [("this checkout", bundle)]
        if "--against" in argv:
            other = os.path.abspath(argv[argv.index("--against") + 1])
            packages.append((os.path.basename(other.rstrip("/")) or other, mpy_cache.bundle(base=other)[0]))
        results = [(label, {"off": [], "on": []}) for label, _ in packages]
        for _ in range(repeat):       # the checkouts alternate too: a busy spell hits both
            for (label, path), (_, m) in zip(packages, results):
                one = metrics_heap(path)
                m["off"] += one["off"]
                m["on"] += one["on"]
        print_metrics_heap(results)
        return 0
    if "--phases" in argv:
        tmp = tempfile.mkdtemp(prefix="sensormesh-bench-heap-")
        try:
            if "--receiving" in argv:
                print_phases(*phases(Bench(10, os.path.join(tmp, "keys"), tmp), text=RECEIVING),
                             what="Keyed receiving board")
            elif "--demo" in argv:
                for board, (rows, mods) in sorted(demo_phases(Bench(10, os.path.join(tmp, "keys"), tmp)).items()):
                    print_phases(rows, mods, what="README demo, %s" % board)
                    print()
            else:
                print_phases(*phases(Bench(10, os.path.join(tmp, "keys"), tmp)))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return 0

    def opt(name, default):
        return int(argv[argv.index(name) + 1]) if name in argv else default
    count, lo, hi, step = opt("--count", 10), opt("--lo", 32), opt("--hi", 320), opt("--step", 4)
    only = argv[argv.index("--only") + 1] if "--only" in argv else None
    form_only = set(argv[argv.index("--form") + 1].split(",")) if "--form" in argv else None
    tmp = tempfile.mkdtemp(prefix="sensormesh-bench-heap-")
    keys_dir = os.path.join(tmp, "keys")
    b = Bench(count, keys_dir, tmp)
    bundle, _ = mpy_cache.bundle()
    rows = [      # (device, form, run(heap KB) -> bool)
        ("idle", ".mpy", lambda h: b.idle(h, True)),
        ("idle", ".py", lambda h: b.idle(h, False)),
        ("deployed", ".mpy", lambda h: b.deployed(h, True, False)),
        ("deployed", ".py", lambda h: b.deployed(h, False, False)),
        ("deployed", "all", lambda h: b.deployed(h, True, False, True)),
        ("keyed+deployed", ".mpy", lambda h: b.deployed(h, True, True)),
        ("keyed+deployed", ".py", lambda h: b.deployed(h, False, True)),
        ("keyed+deployed", "all", lambda h: b.deployed(h, True, True, True)),
        ("keyed receiving", ".mpy", b.receiving),
        ("demo boards", ".mpy", b.demo),
        ("idle", "romfs", lambda h: b.from_romfs(b.idle, h, True)),
        ("deployed", "romfs", lambda h: b.from_romfs(b.deployed, h, True, False)),
        ("keyed+deployed", "romfs", lambda h: b.from_romfs(b.deployed, h, True, True)),
        ("keyed receiving", "romfs", lambda h: b.from_romfs(b.receiving, h)),
        ("demo boards", "romfs", lambda h: b.from_romfs(b.demo, h)),
    ]
    found = {}
    t0 = time.monotonic()
    try:
        for name, form, fits in rows:
            if (only and only != name) or (form_only and form not in form_only):
                continue
            b.row = (name, form)
            found[(name, form)] = b.smallest(fits, lo, hi, step)
        base, costs = import_costs(bundle)
        mheap = [("this checkout", metrics_heap(bundle))]
        prows, pmods = phases(b)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("Smallest -X heapsize (bisection over real runs, %d KB steps, %d..%d KB; %d runs in %.0f s, %d of them"
          % (step, lo, hi, b.runs, time.monotonic() - t0, b.repeated))
    print("repeating a run that failed with no sign of running out of heap) at which a")
    print("MicroPython device works: idle = answers info; deployed = source -> shipped map -> window ->")
    print("pipe out, %d values reach the CPython device's callback sink; no MemoryError;" % count)
    print("keyed receiving = the CPython device samples and pipes to the board, whose window feeds a")
    print("callback sink; demo boards = the README demo (examples/pipelines/rotary_alarm.yaml) with keys,")
    print("both boards under the heap, every callback sink receiving.")
    print("  .mpy  the precompiled package, as `sensormesh up` and a board run it")
    print("  .py   baseline: the same device importing the .py sources (the compiler runs on the device)")
    print("  all   baseline: .mpy, importing every step family at start (no loading on demand)")
    print("  romfs the same .mpy files as a ROMFS image, run in place (`up`'s default, `board deploy --romfs`):")
    print("        the heap the device code finds free, the image held outside it as a board's flash")
    print()

    def kb(name, form):
        v = found.get((name, form), "-")
        return "-" if v == "-" else ("> %d KB" % hi if v is None else "%d KB" % v)

    def ratio(name, form):
        a, c = found.get((name, ".mpy")), found.get((name, form))
        return "%.2f" % (a / float(c)) if a and c else "-"
    def ratio_romfs(name):
        a, c = found.get((name, "romfs")), found.get((name, ".mpy"))
        return "%.2f" % (a / float(c)) if a and c else "-"
    w = 16
    print("%-*s %9s %8s %9s %9s %9s %10s %9s %11s" % (w, "device", ".mpy", "of 96K", ".py", "all", ".mpy/.py",
                                                    ".mpy/all", "romfs", "romfs/.mpy"))
    print("-" * (w + 84))
    for name in ("idle", "deployed", "keyed+deployed", "keyed receiving", "demo boards"):
        if only and only != name:
            continue
        m = found.get((name, ".mpy"))
        print("%-*s %9s %8s %9s %9s %9s %10s %9s %11s" % (
            w, name, kb(name, ".mpy"), "%.2f" % (m / float(TARGET_KB)) if m else "-", kb(name, ".py"),
            kb(name, "all"), ratio(name, ".py"), ratio(name, "all"), kb(name, "romfs"), ratio_romfs(name)))
    for (name, form), v in sorted(found.items()):
        n = b.cuts.get(((name, form), v), 0) if v else 0
        if n:
            print("  %s (%s) at %d KB: %d status replies came without their per-step counts (no block "
                  "free for the whole reply; the device said so and ran on)" % (name, form, v, n))
    print()
    print("Heap after each import (.mpy, one fresh interpreter, gc.mem_alloc() growth after gc.collect();")
    print("the bare interpreter holds %.1f KB)" % (base / 1024.0))
    w = 66
    print("%-*s %10s %10s" % (w, "import", "heap", "in all"))
    print("-" * (w + 22))
    total = 0
    for label, v in costs:
        total += v or 0
        print("%-*s %10s %10s" % (w, label, "-" if v is None else "%.1f KB" % (v / 1024.0),
                                  "%.1f KB" % (total / 1024.0)))
    print()
    print_metrics_heap(mheap)
    print()
    print_phases(prows, pmods)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
