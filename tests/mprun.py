# Runs the device test modules (tests/device/test_*.py) without pytest, so the same tests run
# on the MicroPython unix port. A test is a module-level function named test_*; it passes if it
# returns without raising. Usage: micropython tests/mprun.py [module ...]
# Prints one line per test and a closing "N passed, N failed" line; exits 1 on any failure.
import gc
import os
import sys

HERE = __file__.rpartition("/")[0] or "."
if not HERE.startswith("/"):
    HERE = os.getcwd() + "/" + HERE
ROOT = HERE.rpartition("/")[0]
for p in (ROOT, HERE + "/device"):
    if p not in sys.path:
        sys.path.insert(0, p)


def modules(names):
    if names:
        return names
    out = []
    for n in sorted(os.listdir(HERE + "/device")):
        if n.startswith("test_") and n.endswith(".py"):
            out.append(n[:-3])
    return out


def main(argv):
    passed = failed = 0
    for name in modules(argv):
        try:
            mod = __import__(name)
        except Exception as e:
            print("FAIL import", name, repr(e))
            sys.print_exception(e) if hasattr(sys, "print_exception") else None
            failed += 1
            continue
        for attr in sorted(dir(mod)):
            if not attr.startswith("test_"):
                continue
            fn = getattr(mod, attr)
            if not callable(fn):
                continue
            gc.collect()    # each test starts on a collected heap, as its own process would
            try:
                fn()
                passed += 1
                print("ok  ", name + "." + attr)
            except Exception as e:
                failed += 1
                print("FAIL", name + "." + attr, repr(e))
                if hasattr(sys, "print_exception"):
                    sys.print_exception(e)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


sys.exit(main(sys.argv[1:]))
