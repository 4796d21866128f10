# A simulated MicroPython board on a pseudo-terminal, for trying `mpremote` and
# `sensormesh board deploy` without hardware (CPython only; not a device module).
#
#     python -m sensormesh.fakehw.serialboard --flash DIR [--heap 256K] [--romfs 256K] [--console FILE]
#
# prints the board's serial port (a /dev/pts/N path) on its first line, then runs until
# stopped (SIGTERM, Ctrl-C) or --timeout. `mpremote connect /dev/pts/N ...` then talks to it
# as to a board on USB: the raw REPL, raw-paste mode, `fs`, `exec`, `soft-reset`, `reset`,
# and with --romfs `romfs query` and `romfs deploy` (a ROMFS partition, kept in DIR.romfs/).
#
# The board itself is rawrepl_board.py running on the MicroPython unix port, with DIR as the
# root of its filesystem (the flash). This process holds the pseudo-terminal's master side and
# relays between it and the board's console (stdin/stdout pipes), and plays the hardware:
# - a reset restarts the board process with a fresh heap (the board exits with a status saying
#   which reset); a hard reset drops console input that had not been read;
# - Ctrl-C from the serial line interrupts running code (SIGINT to the board process, sent
#   only while the board reports that code runs);
# - console output that nobody reads is dropped beyond CONSOLE_BUFFER bytes, as a UART's is,
#   so a board printing with no terminal attached never blocks.
import argparse
import ctypes
import os
import selectors
import signal
import subprocess
import sys
import time
import tty

from sensormesh.fakehw.board_memory import ROMFS_SLACK

HERE = os.path.dirname(os.path.abspath(__file__))
BOARD_PROGRAM = os.path.join(HERE, "rawrepl_board.py")

# rawrepl_board.py's exit statuses -> how the next start begins.
NEXT_START = {10: "soft", 11: "raw", 12: "power", 13: None}
CONSOLE_BUFFER = 4096          # output kept for a terminal that is not reading (a UART FIFO's job)
INPUT_BUFFER = 65536           # input kept for a board that is not reading; more is lost, as on a UART
CRASH_LIMIT = 5                # unexpected board exits within CRASH_WINDOW_S before giving up
CRASH_WINDOW_S = 30.0
INTERRUPT_GAP_S = 0.5          # at most one SIGINT per this long (a second pending one kills)
STOP_WAIT_S = 3.0
# A board's REPL and firmware modules are C and take none of its Python heap; here they are
# Python (about 9 KB for rawrepl_board.py, more with the simulated machine). The process gets
# this much on top of --heap, and rawrepl_board.py holds what is left over --heap as ballast,
# so the board's own code finds the heap asked for free (tests/test_board_mpremote.py checks).
REPL_HEAP = 64 * 1024


def heap_bytes(text):
    """"96K", "1M" or "98304" -> bytes; ValueError naming the problem otherwise."""
    t = str(text).strip().upper()
    scale = {"K": 1024, "M": 1024 * 1024}.get(t[-1:], 1)
    digits = t[:-1] if scale > 1 else t
    if not digits.isdigit() or int(digits) <= 0:
        raise ValueError("heap size %r: give a number of bytes, optionally with K or M (e.g. 96K)" % text)
    return int(digits) * scale


class BoardGone(Exception):
    """The board process keeps crashing (or micropython cannot run it)."""


def _die_with_parent():
    # Linux: the board process gets SIGKILL if this process dies without stopping it.
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)     # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class SerialBoard:
    """The pseudo-terminal, the flash folder and the board process behind them."""

    def __init__(self, flash, micropython="micropython", heap=None, console=None, echo=None, romfs=None):
        self.flash = os.path.abspath(flash)
        self.micropython = micropython
        self.heap = heap
        self.romfs = romfs              # size of the board's ROMFS partition ("256K"), or None
        self.console = console          # a binary file getting all board output, or None
        self.echo = echo or (lambda text: None)
        self.master, self._slave = os.openpty()
        tty.setraw(self._slave)         # no echo, no line editing until a terminal sets its own
        os.set_blocking(self.master, False)
        self.port = os.ttyname(self._slave)
        self.proc = None
        self.busy = False
        self._last_interrupt = 0.0
        self._to_board = bytearray()
        self._to_line = bytearray()
        self._err_partial = b""
        self._crashes = []
        self.starts = []                # start mode of every board process, in order

    # -- the board process --------------------------------------------------------------

    def start(self, mode="power"):
        argv = [self.micropython]
        rom = heap_bytes(self.romfs) if self.romfs else 0
        if self.heap:
            # the partition is read into the process's heap (rawrepl_board.py), not the board's,
            # with room to spare: the board's heap must be one free block, not the holes the
            # partition leaves (the ballast takes what is over)
            argv += ["-X", "heapsize=%d" % (heap_bytes(self.heap) + REPL_HEAP + (rom + ROMFS_SLACK if rom else 0))]
        argv += [BOARD_PROGRAM, self.flash, mode, str(heap_bytes(self.heap) if self.heap else 0)]
        if rom:
            argv.append(str(rom))
        r, w = os.pipe()
        os.set_blocking(r, False)       # the board reads what is there, never waits for a count
        os.set_blocking(w, False)
        try:
            self.proc = subprocess.Popen(argv, stdin=r, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                         preexec_fn=_die_with_parent, close_fds=True)
        except OSError as e:
            os.close(r)
            os.close(w)
            raise BoardGone("cannot run %s: %s" % (self.micropython, e.strerror or e))
        self._in_r, self._in_w = r, w    # r stays open here: a soft reset hands unread input on
        self.busy = False
        self.starts.append(mode)
        self.echo("board: started (%s), pid %d" % (mode, self.proc.pid))

    def _restart(self, status):
        mode = NEXT_START.get(status, "power")
        if status not in NEXT_START:
            now = time.monotonic()
            self._crashes = [t for t in self._crashes if now - t < CRASH_WINDOW_S] + [now]
            self.echo("board: micropython exited with status %s; starting again as after a power cycle"
                      % status)
            if len(self._crashes) > CRASH_LIMIT:
                raise BoardGone("the board crashed %d times within %ds" % (len(self._crashes), CRASH_WINDOW_S))
        unread = bytearray()
        if mode in ("soft", "raw"):
            while True:
                try:
                    chunk = os.read(self._in_r, 65536)
                except BlockingIOError:
                    break
                if not chunk:
                    break
                unread += chunk
        os.close(self._in_r)
        os.close(self._in_w)
        if mode is None:
            raise BoardGone("the board lost its console")
        self._to_board = unread + (self._to_board if mode != "power" else b"")
        self.start(mode)

    def stop_process(self):
        p = self.proc
        if p is None or p.poll() is not None:
            return
        p.terminate()
        try:
            p.wait(STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(STOP_WAIT_S)

    def close(self):
        self.stop_process()
        for fd in (self.master, self._slave, getattr(self, "_in_r", None), getattr(self, "_in_w", None)):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass

    # -- the relay ----------------------------------------------------------------------

    def _from_line(self, data):
        if 3 in data and self.busy and time.monotonic() - self._last_interrupt > INTERRUPT_GAP_S:
            self._last_interrupt = time.monotonic()
            self.proc.send_signal(signal.SIGINT)
        self._to_board += data[:max(0, INPUT_BUFFER - len(self._to_board))]

    def _from_board(self, data):
        if self.console:
            self.console.write(data)
            self.console.flush()
        self._to_line += data
        if len(self._to_line) > CONSOLE_BUFFER:
            del self._to_line[:len(self._to_line) - CONSOLE_BUFFER]

    def _board_says(self, line):
        """A line the board wrote to stderr: the run state, or text a board prints on its
        console like everything else (the device's log)."""
        if line == b"~busy":
            self.busy = True
        elif line == b"~idle":
            self.busy = False
        else:
            self._from_board(line + b"\r\n")

    def run(self, timeout=None):
        """Relay until timeout seconds passed (None: until stopped); BoardGone if the board
        cannot run."""
        deadline = None if not timeout else time.monotonic() + timeout
        if self.proc is None:
            self.start()
        while deadline is None or time.monotonic() < deadline:
            self._step(1.0 if deadline is None else max(0.0, min(1.0, deadline - time.monotonic())))

    def _step(self, wait):
        out, err = self.proc.stdout, self.proc.stderr
        sel = selectors.DefaultSelector()
        try:
            sel.register(self.master, selectors.EVENT_READ | (selectors.EVENT_WRITE if self._to_line else 0))
            sel.register(out, selectors.EVENT_READ)
            sel.register(err, selectors.EVENT_READ)
            if self._to_board:
                sel.register(self._in_w, selectors.EVENT_WRITE)
            events = sel.select(wait)
        finally:
            sel.close()
        exited = False
        for key, mask in events:
            if key.fileobj == self.master:
                if mask & selectors.EVENT_READ:
                    try:
                        data = os.read(self.master, 4096)
                    except (BlockingIOError, OSError):
                        data = b""
                    if data:
                        self._from_line(data)
                if mask & selectors.EVENT_WRITE and self._to_line:
                    try:
                        n = os.write(self.master, self._to_line)
                        del self._to_line[:n]
                    except BlockingIOError:
                        pass
            elif key.fileobj is out:
                data = os.read(out.fileno(), 65536)
                if data:
                    self._from_board(data)
                else:
                    exited = True
            elif key.fileobj is err:
                self._err_partial += os.read(err.fileno(), 65536)
                *lines, self._err_partial = self._err_partial.split(b"\n")
                for line in lines:
                    self._board_says(line)
            elif key.fileobj == self._in_w:
                try:
                    n = os.write(self._in_w, self._to_board)
                    del self._to_board[:n]
                except BlockingIOError:
                    pass
        if exited:
            for line in (self._err_partial + self.proc.stderr.read()).split(b"\n"):
                if line:
                    self._board_says(line)
            self._err_partial = b""
            try:
                status = self.proc.wait(STOP_WAIT_S)
            except subprocess.TimeoutExpired:   # closed its stdout but still runs: power-cycle it
                self.proc.kill()
                status = self.proc.wait(STOP_WAIT_S)
            self.proc.stdout.close()
            self.proc.stderr.close()
            self._restart(status)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m sensormesh.fakehw.serialboard",
                                 description="A simulated MicroPython board on a pseudo-terminal: prints "
                                             "its serial port, then serves mpremote until stopped.")
    ap.add_argument("--flash", required=True, help="folder standing for the board's flash (made if missing)")
    ap.add_argument("--heap", default=None,
                    help="the MicroPython heap the board's code finds free after boot, e.g. 96K (default: the "
                         "unix port's, with the simulated REPL and firmware in it)")
    ap.add_argument("--romfs", default=None,
                    help="give the board a ROMFS partition of this size, e.g. 256K, for `mpremote romfs "
                         "deploy` (kept in FLASH.romfs/; default: none, as stock ESP32 firmware)")
    ap.add_argument("--micropython", default=None, help="the MicroPython unix port to run (default: micropython)")
    ap.add_argument("--console", default=None,
                    help="append everything the board prints to this file (-: to stdout, after the port line)")
    ap.add_argument("--timeout", type=float, default=0, help="stop after this many seconds (0: never)")
    ap.add_argument("--quiet", action="store_true", help="no board events on stderr")
    a = ap.parse_args(argv)
    for size in (a.heap, a.romfs):
        if size:
            try:
                heap_bytes(size)
            except ValueError as e:
                ap.error(str(e))
    os.makedirs(a.flash, exist_ok=True)
    mp = a.micropython or _find_micropython()
    console = None
    if a.console == "-":
        console = sys.stdout.buffer
    elif a.console:
        console = open(a.console, "ab")
    echo = None if a.quiet else (lambda text: print(text, file=sys.stderr, flush=True))
    board = SerialBoard(a.flash, mp, a.heap, console, echo, romfs=a.romfs)

    def stop(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, stop)
    try:
        board.start()
        print(board.port, flush=True)
        board.run(a.timeout or None)
    except KeyboardInterrupt:
        pass
    except BoardGone as e:
        print("serialboard: %s" % e, file=sys.stderr)
        return 1
    finally:
        board.close()
        if console and a.console != "-":
            console.close()
    return 0


def _find_micropython():
    import shutil
    found = shutil.which("micropython")
    if found:
        return found
    here = os.path.join(os.path.dirname(sys.executable), "micropython")
    return here if os.path.exists(here) else "micropython"


if __name__ == "__main__":
    sys.exit(main())
