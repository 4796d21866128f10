# Cost of the secure session on CPython and the MicroPython unix port, with an
# estimate for an ESP32 (classic ESP32-WROOM-32, 240 MHz, no PSRAM):
#     python3 benchmarks/bench_crypto.py          # CPython, then MicroPython in a subprocess; one table
#     micropython benchmarks/bench_crypto.py --json   # MicroPython figures only, as JSON
# Keys: tests/device/security_keys.json (test keys). Best of a few runs per row; short on purpose.
#
# ESP32 estimate. Two factors, applied to the MicroPython unix-port time:
#   BIGINT = 100 for big-integer work (the X25519 ladder; the RSA baseline). MicroPython's mpz
#     uses 32-bit digits on x86-64 and 16-bit digits on 32-bit ports such as the ESP32: a number
#     has twice the digits, so schoolbook multiply and divide do 4x the digit steps; the clock is
#     ~11x slower (2.6 GHz here vs 240 MHz) and the in-order LX6 needs ~2-3x the cycles per step
#     of an out-of-order x86 core: 4 x 11 x 2.3 = ~100 (range 65-130). For X25519 (255-bit
#     numbers, much of the time in bytecode) this is on the high side: an upper estimate.
#   OTHER = 40 for everything else (bytecode, hashing, AES, base64, JSON): clock 11x and IPC
#     ~3-4x, no digit-size penalty.
# Baseline of the same run: the big-integer work of one RSA-2048 private-key operation with the
# CRT (two 1024-bit modular exponentiations with the built-in pow), what the handshake's first
# design (the original design's RSA sketch, docs/design.md) cost each side per connection.
# Re-measure on a board when one is at hand (copy sensormesh/ and the keys file, run with
# --json under mpremote): these factors are the weakest number in this table.
import gc
import hashlib
import json
import sys

HERE = __file__.rpartition("/")[0] or "."
ROOT = HERE + "/.."
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from sensormesh.device.secure import fernet  # noqa: E402
from sensormesh.device.secure import handshake as session
from sensormesh.device.compat import MICROPYTHON, ticks_diff, ticks_us  # noqa: E402

BIGINT = 100
OTHER = 40
KEYS = ROOT + "/tests/device/security_keys.json"


def best(fn, runs=3, n=1):
    """Best time of `runs` runs of n calls, in microseconds per call."""
    t_best = None
    for _ in range(runs):
        gc.collect()
        t0 = ticks_us()
        for _ in range(n):
            fn()
        t = ticks_diff(ticks_us(), t0) / n
        if t_best is None or t < t_best:
            t_best = t
    return t_best


def load(native):
    with open(KEYS) as f:
        ids = json.load(f)["identities"]
    trust = {"version": 2, "keys": {}, "revoked": []}
    for name in ("controller", "dev-a", "dev-b"):
        trust["keys"][name] = {"role": ids[name]["role"], "x25519": ids[name]["x25519"]}
    ts = session.load_trust(trust)
    return {n: session.load_identity(ids[n], native) for n in ("controller", "dev-a", "dev-b")}, ts


def _odd(bits, seed):
    x = int.from_bytes(hashlib.sha256(seed).digest() * (bits // 256), "big")
    return x | (1 << (bits - 1)) | 1


def measure(native=None):
    ids, trust = load(native)
    r = {}
    key = ids["dev-a"].key
    peer = ids["dev-b"].key.public
    r["x25519_us"] = best(lambda: key.exchange(peer))
    # Baseline: an RSA-2048 CRT private op is two 1024-bit exponentiations (same cost whatever
    # the numbers, so odd 1024-bit ones stand in for the primes).
    p, q, c = _odd(1024, b"p"), _odd(1024, b"q"), _odd(1024, b"c")
    r["rsa_private_us"] = best(lambda: (pow(c, p - 2, p), pow(c, q - 2, q)))

    # One handshake, each side's share timed on its own. First contact: empty pair-key caches
    # (each side does its one X25519 step); later connections: caches kept.
    def hs(client, server, cpairs, spairs):
        c = session.ClientSession(ids[client], trust, server, pairs=cpairs)
        s = session.ServerSession(ids[server], trust, replay=session.ReplayCache(), pairs=spairs)
        t0 = ticks_us()
        hello = c.start()
        t1 = ticks_us()
        welcome = s.receive(hello)
        t2 = ticks_us()
        c.receive(welcome)
        t3 = ticks_us()
        assert c.done and s.done
        return ticks_diff(t1, t0) + ticks_diff(t3, t2), ticks_diff(t2, t1)

    runs = [hs("controller", "dev-a", session.PairCache(), session.PairCache()) for _ in range(3)]
    r["hs_client_us"] = min(x[0] for x in runs)
    r["hs_server_us"] = min(x[1] for x in runs)
    cp, sp = session.PairCache(), session.PairCache()
    hs("dev-b", "dev-a", cp, sp)
    runs = [hs("dev-b", "dev-a", cp, sp) for _ in range(5)]
    r["cached_client_us"] = min(x[0] for x in runs)
    r["cached_server_us"] = min(x[1] for x in runs)

    # Payloads: one value per frame, and a batched time frame.
    small = b"[21.5]"
    batch = json.dumps([20.0 + i * 0.01 for i in range(400 if MICROPYTHON else 1000)]).encode()
    f = fernet.Fernet(fernet.generate_key())
    c = session.ClientSession(ids["controller"], trust, "dev-a")
    s = session.ServerSession(ids["dev-a"], trust)
    c.receive(s.receive(c.start()))
    for name, payload, n in (("small", small, 200), ("batch", batch, 5)):
        r["fernet_%s_us" % name] = best(lambda: f.decrypt(f.encrypt(payload)), n=n)
        r["channel_%s_us" % name] = best(lambda: s.unwrap(c.wrap(payload)), n=n)
        r["%s_bytes" % name] = len(payload)
        tok = c.wrap(payload)
        assert s.unwrap(tok) == payload
        r["%s_token_bytes" % name] = len(tok)
    return r


def esp32(mp):
    """Estimated ESP32 milliseconds for the handshake rows, from the unix-port figures."""
    x = mp["x25519_us"]
    est = {}
    for side in ("hs_client_us", "hs_server_us"):
        rest = max(mp[side] - x, 0)
        est[side] = (x * BIGINT + rest * OTHER) / 1000
    for side in ("cached_client_us", "cached_server_us"):
        est[side] = mp[side] * OTHER / 1000
    est["x25519_us"] = x * BIGINT / 1000
    est["rsa_private_us"] = mp["rsa_private_us"] * BIGINT / 1000
    for k in mp:
        if k.startswith(("fernet_", "channel_")):
            est[k] = mp[k] * OTHER / 1000
    return est


def main():
    if MICROPYTHON:
        r = measure()
        print(json.dumps(r) if "--json" in sys.argv else r)
        return
    import shutil
    import subprocess
    py = measure(native=True)
    pure = measure(native=False)
    mp = None
    exe = shutil.which("micropython")
    if exe:
        out = subprocess.run([exe, __file__, "--json"], capture_output=True, text=True, timeout=600)
        if out.returncode == 0:
            mp = json.loads(out.stdout.strip().splitlines()[-1])
        else:
            print("micropython run failed:", out.stderr)
    est = esp32(mp) if mp else {}

    def ms(v):
        return "%9.2f" % (v / 1000.0) if v is not None else "        -"

    print("secure session cost, milliseconds (best of 3); ESP32 = unix-port x %d (big-integer work) "
          "or x %d (the rest), an estimate" % (BIGINT, OTHER))
    print("%-44s %9s %9s %9s %9s" % ("", "CPython", "CPy pure", "MP unix", "ESP32 est"))
    rows = [("baseline: RSA-2048 private op (CRT pow)", "rsa_private_us"),
            ("X25519 shared secret (1 scalar mult)", "x25519_us"),
            ("handshake, first contact, client side", "hs_client_us"),
            ("handshake, first contact, server side", "hs_server_us"),
            ("handshake, pair key cached, client side", "cached_client_us"),
            ("handshake, pair key cached, server side", "cached_server_us")]
    for label, k in rows:
        print("%-44s %s %s %s %s" % (label, ms(py[k]), ms(pure[k]), ms(mp[k] if mp else None),
                                     "%9.0f" % est[k] if k in est else "        -"))
    print()
    print("payload encrypt+decrypt, microseconds per frame (and MB/s of payload)")
    for name in ("small", "batch"):
        for kind in ("fernet", "channel"):
            k = "%s_%s_us" % (kind, name)
            line = "%-44s" % ("%s %s: %d B payload -> %d B token" % (
                kind, name, py["%s_bytes" % name], py["%s_token_bytes" % name]))
            for src in (py, pure, mp):
                if src is None:
                    line += "         -"
                    continue
                mbs = src["%s_bytes" % name] / src[k]
                line += " %9.1f" % src[k] if name == "small" else " %4.0f/%4.1f" % (src[k], mbs)
            if k in est:
                line += " %9.0f" % (est[k] * 1000) if name == "small" else \
                    " %4.0f/%4.2f" % (est[k] * 1000, mp["%s_bytes" % name] / (est[k] * 1000))
            print(line)
    if mp:
        print("(MicroPython batch payload: %d B; CPython: %d B; 'CPy pure' uses the pure X25519, "
              "Fernet always via cryptography)" % (mp["batch_bytes"], py["batch_bytes"]))
        print("X25519 step / RSA-2048 private op, same run: CPython %.2f, MP unix %.2f"
              % (py["x25519_us"] / py["rsa_private_us"], mp["x25519_us"] / mp["rsa_private_us"]))
        lo, hi = 65.0 / BIGINT, 130.0 / BIGINT
        srv = est["hs_server_us"]
        print("ESP32 estimate, device (server) side of a handshake with a CPython client: first contact "
              "%.2f s (range %.2f-%.2f s), pair key cached %.0f ms; first contact between two ESP32s "
              "%.2f s for the server side; the original design's RSA: %.1f s per private op"
              % (srv / 1000, (est["x25519_us"] * lo + srv - est["x25519_us"]) / 1000,
                 (est["x25519_us"] * hi + srv - est["x25519_us"]) / 1000, est["cached_server_us"],
                 est["hs_client_us"] / 1000, est["rsa_private_us"] / 1000))


main()
