# What a board has outside its Python heap, for a MicroPython unix port process standing for a
# board (the simulated board, rawrepl_board.py, and the local devices `sensormesh up` starts).
# Runs on the unix port; not a device module, never deployed.
#
# - limit_heap(heap): a board's code finds its heap free after boot, while its REPL, firmware
#   modules and a ROMFS partition take none of it (C code and flash). Here they are Python
#   objects in the same heap, so the process gets more heap and the rest is held back as ballast:
#   every free block is taken, then the largest are given back until `heap` bytes are free, and
#   what is over is taken again from the last one. The free heap then lies in as few pieces as
#   the process's own objects allow (one, when the largest block holds it).
# - map_romfs(path, at): a board maps its ROMFS partition from flash and runs the .mpy files in
#   it in place (their bytecode is not copied to the heap). The unix port cannot map a file, so
#   the image is read into a bytearray, which must happen before limit_heap: like the firmware,
#   it is then not part of the board's heap.
# - boot(): both, as `sensormesh up`'s launcher asks for a local device whose board has the package
#   in a ROMFS partition (the image's path and the board's heap in its environment).
import gc
import os
import sys

# What `sensormesh up` puts in a local device's environment (controller/mpy_cache.py and local.py
# use these names): the image's path and the board's heap in bytes.
ROMFS_ENV = "SENSORMESH_ROMFS"
HEAP_ENV = "SENSORMESH_BOARD_HEAP"
# Heap a process standing for a board with ROMFS gets beyond the board's heap and the image (up's
# local devices, the simulated board): room for the board's heap to be one free block rather than
# the holes the image leaves; the ballast takes what is over.
ROMFS_SLACK = 128 * 1024
ROM_ROOT = "/rom"                       # where a board's firmware mounts its ROMFS partition
ROM_ROOT_OTHER = "/.smrom"              # where this machine has a /rom of its own

BALLAST_MIN = 64        # smaller holes stay free (a board's heap has such crumbs too)
BALLAST_MAX = 512       # blocks at most: bounded work, and the list never grows
_ballast = [None] * BALLAST_MAX
_image = []             # the ROMFS image, held for as long as the process runs


def _take_all():
    """Fill _ballast with every free block, largest first (halving a size that does not fit).
    Returns how many. Its own frame (as _largest and _refill): the block objects it handled
    leave no stale pointers in the caller's frame, which the collector would take for live."""
    size = gc.mem_free()
    n = 0
    while n < BALLAST_MAX and size >= BALLAST_MIN:
        try:
            _ballast[n] = bytearray(size)
            n += 1
        except MemoryError:
            size //= 2
    return n


def _largest(n):
    """The index of the largest block still held (None when none is); allocates nothing."""
    best = None
    size = 0
    for k in range(n):
        if _ballast[k] is not None and len(_ballast[k]) > size:
            best = k
            size = len(_ballast[k])
    return best


def _refill(k, size):
    try:
        _ballast[k] = bytearray(size)
    except MemoryError:
        pass


def limit_heap(heap):
    """Hold back all of the process's free heap but `heap` bytes, and collect garbage after every
    twelfth of it is allocated, as the device package does on a board of that heap (compat.py;
    it keeps a threshold set before). False (and nothing held back) when less than that is free."""
    gc.threshold(heap // 12)
    gc.collect()
    if gc.mem_free() < heap:
        return False
    n = _take_all()
    last = None
    while gc.mem_free() < heap:
        k = _largest(n)
        if k is None:
            break
        last = k
        _ballast[k] = None
        gc.collect()
    over = gc.mem_free() - heap
    if last is not None and over >= BALLAST_MIN:
        _refill(last, over)
    gc.collect()
    return True


def map_romfs(path, at):
    """Mount the ROMFS image in the file `path` at `at` and put `at` first on sys.path, as a
    board's firmware mounts its partition. OSError when the file is missing or no image."""
    import vfs
    size = os.stat(path)[6]
    data = bytearray(size)
    with open(path, "rb") as f:
        f.readinto(data)
    vfs.mount(vfs.VfsRom(memoryview(data)), at)
    _image.append(data)
    sys.path.insert(0, at)


def boot():
    """The package from the ROMFS image named by ROMFS_ENV, mounted at /rom, and the heap held
    to HEAP_ENV bytes (a local device standing for a board with the package in ROMFS)."""
    at = ROM_ROOT
    try:
        os.stat(at)
        at = ROM_ROOT_OTHER
    except OSError:
        pass
    map_romfs(os.getenv(ROMFS_ENV), at)
    if not limit_heap(int(os.getenv(HEAP_ENV))):
        sys.stderr.write("sensormesh: less heap free than the board's after mapping its ROMFS image\n")
