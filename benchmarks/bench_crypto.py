# Cost of the secure session (issue 6) on CPython and the MicroPython unix port, with an
# estimate for an ESP32 (classic ESP32-WROOM-32, 240 MHz, no PSRAM):
#     python3 benchmarks/bench_crypto.py          # CPython, then MicroPython in a subprocess; one table
#     micropython benchmarks/bench_crypto.py --json   # MicroPython figures only, as JSON
# Keys: tests/device/security_keys.json (test keys). Best of a few runs per row; short on purpose.
#
# ESP32 estimate. Two factors, applied to the MicroPython unix-port time:
#   BIGINT = 100 for RSA private-key operations (big-integer pow). MicroPython's mpz uses 32-bit
#     digits on x86-64 and 16-bit digits on 32-bit ports such as the ESP32: a 1024-bit number has
#     twice the digits, so schoolbook multiply and divide do 4x the digit steps; the clock is
#     ~11x slower (2.6 GHz here vs 240 MHz) and the in-order LX6 needs ~2-3x the cycles per step
#     of an out-of-order x86 core: 4 x 11 x 2.3 = ~100 (range 65-130).
#   OTHER = 40 for everything else (bytecode, hashing, AES, base64, JSON): clock 11x and IPC
#     ~3-4x, no digit-size penalty.
# Re-measure on a board when one is at hand (copy sensormesh/ and the keys file, run with
# --json under mpremote): these factors are the weakest number in this table.
import gc
import json
import sys

HERE = __file__.rpartition("/")[0] or "."
ROOT = HERE + "/.."
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from sensormesh import fernet, session  # noqa: E402
from sensormesh.compat import MICROPYTHON, ticks_diff, ticks_us  # noqa: E402

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
    trust = {"version": 1, "keys": {}, "revoked": []}
    for name in ("controller", "dev-a", "dev-b"):
        trust["keys"][name] = {"role": ids[name]["role"], "n": ids[name]["n"], "e": ids[name]["e"]}
    ts = session.load_trust(trust)
    return {n: session.load_identity(ids[n], native) for n in ("controller", "dev-a", "dev-b")}, ts


def measure(native=None):
    ids, trust = load(native)
    r = {}
    key = ids["dev-a"].key
    key.sign(b"warm-up")   # makes the blinding pair once
    r["rsa_private_us"] = best(lambda: key.sign(b"x"))
    pub = key.public()
    sig = key.sign(b"x")
    r["rsa_verify_us"] = best(lambda: pub.verify(b"x", sig), n=5)

    # One full handshake, each side's share timed on its own.
    def full(client, server, tickets=None, cache=None):
        c = session.ClientSession(ids[client], trust, server, resume=cache)
        s = session.ServerSession(ids[server], trust, replay=session.ReplayCache(), tickets=tickets)
        t0 = ticks_us()
        hello = c.start()
        t1 = ticks_us()
        welcome = s.receive(hello)
        t2 = ticks_us()
        c.receive(welcome)
        t3 = ticks_us()
        assert c.done and s.done
        return ticks_diff(t1, t0) + ticks_diff(t3, t2), ticks_diff(t2, t1)

    runs = [full("controller", "dev-a") for _ in range(3)]
    r["hs_client_us"] = min(x[0] for x in runs)
    r["hs_server_us"] = min(x[1] for x in runs)
    tickets, cache = session.TicketStore(), session.ResumeCache()
    full("dev-b", "dev-a", tickets, cache)
    runs = [full("dev-b", "dev-a", tickets, cache) for _ in range(3)]
    r["resume_client_us"] = min(x[0] for x in runs)
    r["resume_server_us"] = min(x[1] for x in runs)

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
    priv = mp["rsa_private_us"]
    est = {}
    for side in ("hs_client_us", "hs_server_us"):
        rest = max(mp[side] - priv, 0)
        est[side] = (priv * BIGINT + rest * OTHER) / 1000
    for side in ("resume_client_us", "resume_server_us"):
        est[side] = mp[side] * OTHER / 1000
    est["rsa_private_us"] = priv * BIGINT / 1000
    est["rsa_verify_us"] = mp["rsa_verify_us"] * BIGINT / 1000
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

    print("secure session cost, milliseconds (best of 3); ESP32 = unix-port x %d (RSA private ops) "
          "or x %d (the rest), an estimate" % (BIGINT, OTHER))
    print("%-44s %9s %9s %9s %9s" % ("", "CPython", "CPy pure", "MP unix", "ESP32 est"))
    rows = [("RSA-2048 private op (sign/decrypt, CRT)", "rsa_private_us"),
            ("RSA-2048 public op (verify, e=65537)", "rsa_verify_us"),
            ("full handshake, client side (1 private op)", "hs_client_us"),
            ("full handshake, server side (1 private op)", "hs_server_us"),
            ("resumed handshake, client side (no RSA)", "resume_client_us"),
            ("resumed handshake, server side (no RSA)", "resume_server_us")]
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
        print("(MicroPython batch payload: %d B; CPython: %d B; 'CPy pure' uses the pure RSA, "
              "Fernet always via cryptography)" % (mp["batch_bytes"], py["batch_bytes"]))
        full = est["hs_client_us"] + est["hs_server_us"]
        print("ESP32 estimate, one full handshake between two ESP32s: %.1f s; ESP32 server with a "
              "CPython client: %.1f s; resumed: %.0f ms" % (full / 1000, est["hs_server_us"] / 1000,
                                                           (est["resume_client_us"] + est["resume_server_us"])))


main()
