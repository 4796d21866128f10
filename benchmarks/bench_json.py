"""The JSON implementations a CPython device or client could use, on sensormesh's messages.

For each message kind: microseconds to encode and to decode with the standard json module
(the baseline, same run), orjson and msgspec, best of 7 rounds; and the cost of cutting a
5000-value array into 16 KiB frames the way codec.encode_into does, with the chosen fast path
and with the standard module. Then what each library does with values where they disagree
(the codec hands those to the standard module). Libraries that are not installed are skipped.

    python benchmarks/bench_json.py
"""
import json
import os
import random
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from sensormesh.device import codec  # noqa: E402

rnd = random.Random(7)
MESSAGES = {
    "1 int (time-frame 0)": [123456],
    "control message": {"data-request": {"sensor": "counter", "time-frame": 10, "max-frame": 4194304}},
    "5000 ints": list(range(10 ** 6, 10 ** 6 + 5000)),
    "5000 floats": [rnd.random() * 100 for _ in range(5000)],
    "1000 dht11 readings": [{"temperature": 22, "humidity": 45 + i % 3} for i in range(1000)],
}


def best(f, arg, n):
    t_best = 1e9
    for _ in range(7):
        t = time.perf_counter()
        for _ in range(n):
            f(arg)
        t_best = min(t_best, time.perf_counter() - t)
    return t_best / n * 1e6


def libraries():
    enc = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode
    libs = [("json (stdlib)", lambda m: enc(m).encode(), json.loads)]
    try:
        import orjson
        libs.append(("orjson", orjson.dumps, orjson.loads))
    except ImportError:
        pass
    try:
        import msgspec
        libs.append(("msgspec", msgspec.json.Encoder().encode, msgspec.json.Decoder().decode))
    except ImportError:
        pass
    return libs


def main():
    libs = libraries()
    print("CPython %s, %d cores, load %s, %s" % (sys.version.split()[0], os.cpu_count(),
                                                  "/".join("%.1f" % x for x in os.getloadavg()),
                                                  time.strftime("%Y-%m-%d %H:%M")))
    print()
    print("| message | " + " | ".join("%s enc us | dec us" % name for name, _, _ in libs) + " |")
    print("|---|" + "---:|---:|" * len(libs))
    for label, msg in MESSAGES.items():
        n = 20000 if len(json.dumps(msg)) < 1000 else 200
        cells = []
        base = None
        for name, dumps, loads in libs:
            payload = dumps(msg)
            e, d = best(dumps, msg, n), best(loads, payload, n)
            if base is None:
                base = (e, d)
                cells.append("%.2f | %.2f" % (e, d))
            else:
                cells.append("%.2f (%.1fx) | %.2f (%.1fx)" % (e, base[0] / e, d, base[1] / d))
        print("| %s | %s |" % (label, " | ".join(cells)))

    print()
    print("cutting into 16 KiB frames (codec.encode_into), us per message:")
    for backend in ("stdlib", "msgspec"):
        try:
            old = codec.use_json(backend)
        except ImportError:
            continue
        for label in ("5000 ints", "1000 dht11 readings"):
            msg = MESSAGES[label] * (1 if label == "5000 ints" else 2)
            buf = bytearray()

            def cut(m, buf=buf):
                del buf[:]
                codec.encode_into(buf, m, codec.MIN_MAX_FRAME)
            t = best(cut, msg, 200)
            whole = best(codec.dumps, msg, 200)
            print("  %-8s %-22s %8.1f us (one encode alone: %.1f us)" % (backend, label + " x%d" % (len(msg) // len(MESSAGES[label])), t, whole))
        codec.use_json(old)

    print()
    print("where the libraries disagree (value -> what each writes or reads):")
    cases_enc = [("NaN", [float("nan")]), ("2**64", [2 ** 64]), ("int key", [{1: 2}])]
    cases_dec = [("[18446744073709551616]", b"[18446744073709551616]"), ("[1e400]", b"[1e400]"), ("[NaN]", b"[NaN]")]
    for label, v in cases_enc:
        print("  encode %-24s " % label + "; ".join("%s: %s" % (name, _try(dumps, v)) for name, dumps, _ in libs))
    for label, b in cases_dec:
        print("  decode %-24s " % label + "; ".join("%s: %s" % (name, _try(loads, b)) for name, _, loads in libs))


def _try(f, v):
    try:
        r = f(v)
        return repr(r)[:40]
    except Exception as e:
        return "refused (%s)" % type(e).__name__


if __name__ == "__main__":
    main()
