# A simulated board's REPL, run by the MicroPython unix port (started by serialboard.py, which
# puts it behind a pseudo-terminal). Not a device module: never deployed.
#
#     micropython rawrepl_board.py FLASH_DIR MODE [HEAP [ROMFS]]   MODE: power | soft | raw
#
# What a board does, and so does this:
# - its flash is the filesystem root: FLASH_DIR is mounted at "/" (os.VfsPosix), the working
#   directory is "/", sys.path is ["", ".frozen", "/lib", FIRMWARE]; FIRMWARE is this folder
#   (the simulated machine, esp32, dht, network), mounted read-only at /.fw like modules built
#   into the firmware;
# - at start it runs boot.py, then main.py unless the reset came from the raw REPL (MODE raw),
#   then it waits in the friendly REPL (or in the raw REPL after a raw-mode soft reset);
# - REPL code, boot.py and main.py share one globals dict (the board's __main__);
# - with HEAP (bytes, 0: no limit), the board's code finds that much heap free after boot,
#   however much this program and the simulated firmware modules take (see limit_heap);
# - with ROMFS (bytes), the board has a ROMFS partition of that size (MicroPython's read-only
#   filesystem whose .mpy files run in place, without their bytecode copied to the heap):
#   `vfs.rom_ioctl` serves `mpremote romfs query|deploy`, the partition is kept in the file
#   FLASH_DIR.romfs/partition0 (it outlives resets, as flash does; the folder is mounted at
#   /.romfs, beside the firmware's /.fw), and a valid image found there at start
#   is mounted at /rom, with /rom and /rom/lib on sys.path, as firmware with ROMFS does. A board
#   maps its partition from flash; this port cannot map a file, so the partition is read into a
#   bytearray before the heap is measured and, like the firmware modules, takes none of HEAP.
#
# Console: stdin is a non-blocking pipe, stdout the console output (serialboard.py relays both
# to the pseudo-terminal). Protocol, as MicroPython's pyexec.c speaks it:
#   friendly REPL: a line is evaluated/executed on CR; Ctrl-A raw REPL, Ctrl-B banner,
#                  Ctrl-C clears the line, Ctrl-D on an empty line soft reset.
#   raw REPL:      "raw REPL; CTRL-B to exit\r\n" then ">"; bytes up to Ctrl-D are the program:
#                  "OK", its output, "\x04", its error text, "\x04", ">" again. Ctrl-D alone:
#                  soft reset. Ctrl-A: raw REPL again. Ctrl-B: friendly REPL. Ctrl-C: clear.
#   raw paste:     "\x05A\x01" in the raw REPL: "R\x01", the window size (2 bytes LE) and
#                  "\x01"; a "\x01" after every window of bytes consumed; the host's "\x04"
#                  ends the program and is answered "\x04", then output "\x04" error "\x04".
# A reset ends this process with an exit status naming the next start (serialboard.py starts
# it again): machine.reset() is a hard reset (pending input is lost), Ctrl-D or SystemExit a
# soft reset. A Ctrl-C while code runs reaches it as SIGINT from serialboard.py, which is told
# on stderr when code starts and stops running ("~busy" / "~idle").
import os
import select
import sys

import board_memory     # (from this folder: the script's own comes first on sys.path)

EXIT_SOFT = 10          # soft reset from the friendly REPL: next start runs main.py
EXIT_SOFT_RAW = 11      # soft reset in the raw REPL: next start skips main.py, stays raw
EXIT_HARD = 12          # machine.reset(): power-on start, pending console input dropped
EXIT_EOF = 13           # the console went away (serialboard.py stopped)

RAW_BANNER = b"raw REPL; CTRL-B to exit\r\n"
PASTE_WINDOW = 128      # as boards with the default 256-byte stdin buffer (half of it)
FIRMWARE_MOUNT = "/.fw"
PARTITION_MOUNT = "/.romfs"
PARTITION_FILE = "partition0"
# Modules a board has in its firmware (C or frozen, no Python heap): here they are Python, so
# they are loaded before the heap is measured, and do not count against the board's heap.
FIRMWARE = ("machine", "machine_extra", "esp32", "dht", "network")
ROMFS_HEADER = b"\xd2\xcd\x31"
ROM_BLOCK = 4096        # erase block of the simulated partition (an ESP32's flash sector)
ROM_MIN_WRITE = 4
ENODEV = 19
EINVAL = 22

_out = sys.stdout.buffer
_in = sys.stdin.buffer
_poll = select.poll()
_poll.register(_in, select.POLLIN)
_buf = bytearray(512)
_pending = []           # bytes read but not consumed yet (a list used as a queue)


class Reset(Exception):
    def __init__(self, status):
        self.status = status


def write(b):
    _out.write(b)


def state(busy):
    sys.stderr.write("~busy\n" if busy else "~idle\n")


def getc():
    """The next console byte (blocks until one arrives)."""
    while not _pending:
        _poll.poll(1000)
        n = _in.readinto(_buf)
        if n == 0:
            raise Reset(EXIT_EOF)
        if n:
            _pending.extend(_buf[:n])
            _pending.reverse()   # pop() takes the oldest
            break
    return _pending.pop()


class Flash:
    """The flash folder as a board's filesystem: os.VfsPosix, except that a listing carries each
    file's size as a board's filesystems do (VfsPosix lists name, type and inode only, so
    `mpremote fs ls` would show every file with size 0)."""

    def __init__(self, root):
        self.v = os.VfsPosix(root)

    def mount(self, readonly, mkfs):
        self.v.mount(readonly, mkfs)

    def umount(self):
        self.v.umount()

    def ilistdir(self, path):
        base = path if path.endswith("/") else path + "/"
        for e in self.v.ilistdir(path):
            size = 0 if e[1] == 0x4000 else self.v.stat(base + e[0])[6]
            yield (e[0], e[1], e[2], size)

    def open(self, path, mode):
        return self.v.open(path, mode)

    def chdir(self, path):
        self.v.chdir(path)

    def getcwd(self):
        return self.v.getcwd()

    def mkdir(self, path):
        self.v.mkdir(path)

    def remove(self, path):
        self.v.remove(path)

    def rename(self, old, new):
        self.v.rename(old, new)

    def rmdir(self, path):
        self.v.rmdir(path)

    def stat(self, path):
        return self.v.stat(path)

    def statvfs(self, path):
        return self.v.statvfs(path)


class RomPartition:
    """The board's ROMFS partition: `size` bytes kept in the file `path` (erased flash reads
    0xff), and the `vfs` module a board with ROMFS has: the built-in one plus rom_ioctl."""

    def __init__(self, path, size):
        self.path = path
        self.data = bytearray(size)
        try:
            with open(path, "rb") as f:
                f.readinto(self.data)
        except OSError:
            self.erase(0, size)

    def erase(self, start, length):
        mv = memoryview(self.data)
        ff = b"\xff" * 256
        end = start + length
        while start < end:
            n = min(256, end - start)
            mv[start:start + n] = ff[:n]
            start += n

    def valid(self):
        return self.data[:3] == ROMFS_HEADER

    def rom_ioctl(self, op, *args):
        """MicroPython's vfs.rom_ioctl for one partition: 1 how many partitions, 2 the partition
        (a memoryview), 3 erase before writing (whole partition, or offset and length), 4 write
        bytes at an offset, 5 writing done (kept in the file), 6 the erase block size; a negative
        errno otherwise."""
        if op == 1:
            return 1
        if args and args[0] != 0:
            return -ENODEV
        if op == 2:
            return memoryview(self.data)
        if op == 3:
            start, length = (args[1], args[2]) if len(args) > 2 else (0, len(self.data))
            if start < 0 or start + length > len(self.data):
                return -EINVAL
            _umount_rom()
            self.erase(start, length)
            return ROM_MIN_WRITE
        if op == 4:
            off, buf = args[1], args[2]
            if off < 0 or off + len(buf) > len(self.data):
                return -EINVAL
            memoryview(self.data)[off:off + len(buf)] = buf
            return 0
        if op == 5:
            with open(self.path, "wb") as f:
                f.write(self.data)
            return 0
        if op == 6:
            return ROM_BLOCK
        return -EINVAL


class VfsWithRom:
    """What `import vfs` gives on a board whose firmware has ROMFS (sys.modules["vfs"])."""

    def __init__(self, real, part):
        for name in ("mount", "umount", "VfsRom", "VfsPosix"):
            setattr(self, name, getattr(real, name))
        self.rom_ioctl = part.rom_ioctl


def _umount_rom():
    try:
        os.umount(board_memory.ROM_ROOT)
    except OSError:
        pass


def setup(flash, romfs=0):
    fw = __file__.rpartition("/")[0] or "."
    if not fw.startswith("/"):
        fw = os.getcwd() + "/" + fw
    keep = flash + ".romfs"
    if romfs:
        try:
            os.mkdir(keep)          # (a host path: made before "/" is the flash)
        except OSError:
            pass
    os.umount("/")
    os.mount(os.VfsPosix(fw), FIRMWARE_MOUNT, readonly=True)
    part = None
    if romfs:
        os.mount(os.VfsPosix(keep), PARTITION_MOUNT)
        part = RomPartition(PARTITION_MOUNT + "/" + PARTITION_FILE, romfs)
    os.mount(Flash(flash), "/")
    os.chdir("/")
    sys.path[:] = ["", ".frozen", "/lib", FIRMWARE_MOUNT]
    if part is not None:
        import vfs
        sys.modules["vfs"] = VfsWithRom(vfs, part)
        if part.valid():
            try:
                vfs.mount(vfs.VfsRom(memoryview(part.data)), board_memory.ROM_ROOT)
                sys.path[1:1] = [board_memory.ROM_ROOT, board_memory.ROM_ROOT + "/lib"]
            except OSError as e:
                sys.stderr.write("romfs: the image in the partition does not mount (%r)\n" % (e,))


def limit_heap(heap):
    """Leave the board's code heap bytes free, as a board has after boot: load the firmware's
    modules (C on a board, no Python heap), then hold the rest of the process's heap
    (serialboard.py gives it some extra) back (board_memory.limit_heap)."""
    import gc
    for name in FIRMWARE:
        try:
            __import__(name)
        except ImportError:
            pass
    gc.collect()
    if not board_memory.limit_heap(heap):
        sys.stderr.write("heap: %d bytes short of %d after loading the REPL and firmware\n"
                         % (heap - gc.mem_free(), heap))


def execute(g, code, name):
    """Run code (source text or bytes) in the board's globals; the exception or None.
    SystemExit and machine.reset() become Reset."""
    state(True)
    try:
        exec(compile(code, name, "exec"), g)
        err = None
    except SystemExit as e:
        if e.args and e.args[0] == "machine.reset()":   # how the simulated machine resets
            raise Reset(EXIT_HARD)
        err = e
    except BaseException as e:
        err = e
    state(False)
    return err


def run_file(g, name):
    try:
        with open(name) as f:
            src = f.read()
    except OSError:
        return
    err = execute(g, src, name)
    if isinstance(err, SystemExit):
        raise Reset(EXIT_SOFT)
    if err is not None:
        sys.print_exception(err)


def soft_reset(status):
    write(b"MPY: soft reboot\r\n")
    raise Reset(status)


def raw_repl(g):
    """Raw REPL until Ctrl-B (returns) or a reset (raises Reset)."""
    write(RAW_BANNER)
    while True:
        write(b">")
        line = bytearray()
        while True:
            c = getc()
            if c == 1:
                if line == b"\x05A":
                    raw_paste(g)
                    break
                write(b"\r\n" + RAW_BANNER)
                line = None
                break
            if c == 2:
                write(b"\r\n")
                return
            if c == 3:
                line = bytearray()
            elif c == 4:
                write(b"OK")
                if not line:
                    write(b"\r\n")
                    soft_reset(EXIT_SOFT_RAW)
                report(execute(g, bytes(line), "<stdin>"))
                break
            else:
                line.append(c)
        if line is None:
            continue


def raw_paste(g):
    write(b"R\x01" + bytes((PASTE_WINDOW & 0xFF, PASTE_WINDOW >> 8, 1)))
    src = bytearray()
    left = PASTE_WINDOW
    while True:
        c = getc()
        if c == 4 or c == 3:
            write(b"\x04")
            if c == 3:
                write(b"\x04Traceback (most recent call last):\r\nKeyboardInterrupt: \r\n\x04")
                return
            break
        src.append(c)
        left -= 1
        if left == 0:
            write(b"\x01")
            left = PASTE_WINDOW
    report(execute(g, bytes(src), "<stdin>"))


def report(err):
    write(b"\x04")
    if isinstance(err, SystemExit):
        write(b"\x04")
        soft_reset(EXIT_SOFT_RAW)
    if err is not None:
        sys.print_exception(err, sys.stdout)
    write(b"\x04")


def banner():
    v = sys.implementation.version
    write(("MicroPython v%d.%d.%d on the unix port; simulated sensormesh board\r\n"
           "Type \"help()\" for more information.\r\n" % (v[0], v[1], v[2])).encode())


def friendly_repl(g):
    """Friendly REPL (one line at a time) until Ctrl-A (returns) or a reset (raises Reset)."""
    banner()
    line = bytearray()
    write(b">>> ")
    while True:
        c = getc()
        if c == 1:
            write(b"\r\n")
            return
        if c == 2:
            write(b"\r\n")
            banner()
            line = bytearray()
        elif c == 3:
            write(b"\r\n")
            line = bytearray()
        elif c == 4:
            if not line:
                write(b"\r\n")
                soft_reset(EXIT_SOFT)
            continue
        elif c == 13 or c == 10:
            write(b"\r\n")
            if line:
                run_line(g, bytes(line).decode())
            line = bytearray()
        elif c == 8 or c == 127:
            if line:
                line.pop()
                write(b"\x08 \x08")
            continue
        else:
            line.append(c)
            write(bytes((c,)))
            continue
        write(b">>> ")


def run_line(g, text):
    try:
        code = compile(text, "<stdin>", "eval")
        text = "_ = " + text + "\nif _ is not None: print(repr(_))"
    except SyntaxError:
        pass
    err = execute(g, text, "<stdin>")
    if isinstance(err, SystemExit):
        soft_reset(EXIT_SOFT)
    if err is not None:
        sys.print_exception(err, sys.stdout)


def main():
    flash, mode = sys.argv[1], sys.argv[2]
    heap = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    setup(flash, int(sys.argv[4]) if len(sys.argv) > 4 else 0)
    if heap:
        limit_heap(heap)
    g = {"__name__": "__main__"}
    raw = mode == "raw"
    try:
        run_file(g, "boot.py")
        if not raw:
            run_file(g, "main.py")
        while True:
            try:
                if raw:
                    raw_repl(g)
                else:
                    friendly_repl(g)
                raw = not raw
            except KeyboardInterrupt:    # a Ctrl-C that came after the code it was meant for
                write(b"\r\n")
    except Reset as r:
        sys.exit(r.status)


main()
