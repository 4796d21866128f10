"""What a board saves with the device package in a ROMFS partition (`board deploy --romfs`).

Measured on the MicroPython unix port (64-bit), with the package precompiled as `sensormesh up`
and `board deploy` compile it (.mpy, no line numbers). Each part has its baseline, the same
package from files (a board's flash), measured in the same run:

1. Import: the live heap (gc.mem_alloc() after gc.collect(), a fresh interpreter with a roomy
   heap) that the modules a keyed board running a deployment keeps take once imported, from a
   folder of .mpy files and from a ROMFS image of the same folder (made by mpremote's romfs
   builder, mounted at /rom). The image itself is read into the heap first (the unix port cannot
   map a file as a board maps flash) and is not counted. Also the names interned
   (micropython.qstr_info()).
2. A board: the smallest heap in which the simulated board (sensormesh/fakehw/serialboard.py),
   deployed with keys by `sensormesh board deploy` with the real mpremote, boots and serves a
   keyed client's data request; bisection in --step KB steps between --lo and --hi, files
   against --romfs.

    python benchmarks/bench_romfs_heap.py [--lo 32] [--hi 128] [--step 8] [--no-boards]
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

from sensormesh.controller.mpy_cache import bundle, romfs_image  # noqa: E402

# The device modules a keyed board running source -> shipped map -> window -> pipe out keeps
# (bench_heap.py --phases lists them at steady state).
RESIDENT = ("codec compat core runtime runtime.pipes runtime.probe runtime.replay schedule secure "
            "secure.channel sensors sensors.sim sensors.sim.temperature steps steps.user steps.windows "
            "transport").split()
BOOT_TIMEOUT_S = 40

IMPORT_SCRIPT = r"""
import gc, sys, micropython
mode, where = sys.argv[1], sys.argv[2]
if mode == "romfs":
    import vfs
    with open(where, "rb") as f:
        image = f.read()
    vfs.mount(vfs.VfsRom(image), "/rom")
    sys.path.insert(0, "/rom")
else:
    sys.path.insert(0, where)
gc.collect()
before = gc.mem_alloc()
for m in %r:
    __import__("sensormesh.device." + m)
gc.collect()
print("live", gc.mem_alloc() - before)
micropython.qstr_info()
"""


def tool(name):
    from test_board_mpremote import _tool
    return _tool(name) or name


def import_heap(mode, where):
    script = IMPORT_SCRIPT % (RESIDENT,)
    r = subprocess.run([tool("micropython"), "-X", "heapsize=4M", "-c", script, mode, where],
                       capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise SystemExit("import run (%s) failed:\n%s%s" % (mode, r.stdout, r.stderr))
    live = int(r.stdout.split("live", 1)[1].split()[0])
    names = int(r.stdout.split("n_qstr=", 1)[1].split(",")[0])
    return live, names


def board_serves(tmp, heap_k, romfs, keys):
    """Deploy the keyed board onto a fresh simulated board with heap_k KB: does it serve?"""
    from procs import free_port, keyed_client
    from test_board_mpremote import SimBoard, deploy
    where = tempfile.mkdtemp(dir=tmp)
    sim = SimBoard(os.path.join(where, "flash"), heap="%dK" % heap_k, romfs="256K" if romfs else None)
    try:
        port = free_port()
        cfg = {"name": "rom-board", "host": "127.0.0.1", "port": port, "restart_after_s": -1,
               "sensors": [{"name": "chip", "kind": "temperature"}]}
        at = sim.mark()
        r = deploy(sim, cfg, _Path(where), "--keys", keys, *(["--romfs"] if romfs else []))
        if r.returncode != 0:
            raise SystemExit("deploy failed:\n%s%s" % (r.stdout, r.stderr))
        deadline = time.monotonic() + BOOT_TIMEOUT_S
        while time.monotonic() < deadline:
            text = sim.text[at:]
            if "listening on" in text:
                break
            if "MemoryError" in text or "device failed" in text:
                return False
            with sim.cond:
                sim.cond.wait(0.5)
        else:
            return False
        try:
            c = keyed_client(port, os.path.join(tmp, "store"), "rom-board")
        except Exception:
            return False
        try:
            c.request_data("chip")
            ok = isinstance(next(c.messages()), list)
        except Exception:
            ok = False
        finally:
            c.close()
        return ok and "MemoryError" not in sim.text[at:]
    finally:
        sim.stop()


class _Path(str):
    """deploy() takes a pytest tmp_path; this is enough of one."""

    def __truediv__(self, other):
        return _Path(os.path.join(self, other))

    def write_text(self, text):
        with open(self, "w") as f:
            f.write(text)


def smallest(tmp, lo, hi, step, romfs, keys):
    """Bisection (step KB) for the smallest heap in which the board serves; None if hi fails."""
    if not board_serves(tmp, hi, romfs, keys):
        return None
    good, bad = hi, lo - step
    while good - bad > step:
        mid = (good + bad) // 2 // step * step
        if mid <= bad:
            mid = bad + step
        print("  %s %dK ..." % ("romfs" if romfs else "files", mid), end="", flush=True)
        if board_serves(tmp, mid, romfs, keys):
            good = mid
            print(" serves")
        else:
            bad = mid
            print(" does not")
    return good


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lo", type=int, default=32, help="lowest heap tried, KB")
    ap.add_argument("--hi", type=int, default=128, help="highest heap tried, KB")
    ap.add_argument("--step", type=int, default=8, help="bisection step, KB")
    ap.add_argument("--no-boards", action="store_true", help="only the import part")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="bench-romfs-")
    try:
        folder, _ = bundle()
        image = os.path.join(tmp, "package.romfs")
        pkg = os.path.join(tmp, "pkg")
        shutil.copytree(os.path.join(folder, "sensormesh"), os.path.join(pkg, "sensormesh"))
        size = romfs_image(pkg, image)
        files_live, files_names = import_heap("files", folder)
        rom_live, rom_names = import_heap("romfs", image)
        print("1. The %d modules a keyed board running a deployment keeps, imported (ROMFS image: %.1f KB)"
              % (len(RESIDENT), size / 1024))
        print("%-28s %14s %8s" % ("from", "live heap", "names"))
        print("-" * 52)
        print("%-28s %11.1f KB %8d" % ("files (baseline)", files_live / 1024, files_names))
        print("%-28s %11.1f KB %8d" % ("ROMFS", rom_live / 1024, rom_names))
        print("ratio ROMFS / files: %.2f (%.1f KB less)" % (rom_live / files_live,
                                                           (files_live - rom_live) / 1024))
        if a.no_boards:
            return
        from sensormesh.controller.keys import KeyStore
        store = KeyStore(os.path.join(tmp, "store"))
        store.init()
        store.issue("rom-board", "device")
        keys = os.path.join(tmp, "export")
        store.export("rom-board", keys)
        print()
        print("2. The smallest heap in which a simulated board deployed with keys serves a data request")
        files_min = smallest(tmp, a.lo, a.hi, a.step, False, keys)
        rom_min = smallest(tmp, a.lo, a.hi, a.step, True, keys)
        print("%-28s %14s" % ("package", "smallest heap"))
        print("-" * 44)
        for name, v in (("files (baseline)", files_min), ("ROMFS", rom_min)):
            print("%-28s %14s" % (name, "%dK" % v if v else "> %dK" % a.hi))
        if files_min and rom_min:
            print("ratio ROMFS / files: %.2f (%d KB less, in %d KB steps)"
                  % (rom_min / files_min, files_min - rom_min, a.step))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
