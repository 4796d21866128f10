# Deployment to a MicroPython board (CPython only): `sensormesh board deploy`.
#
# 0. check (with .mpy files): the board's firmware must load the .mpy version mpy-cross makes
#    (board_mpy.py asks both; a mismatch stops here, before the board is touched further).
# 1. build: every device module (DEVICE_MODULES, the one list of what runs on a device) is
#    precompiled with mpy-cross into BUILD/fs/ (a .mpy imports in a fraction of the heap the
#    compiler needs for a .py), next to the board's device.json, boot.py and main.py.
# 2. copy: mpremote removes the old sensormesh/ folder from the board (a stale .py would
#    shadow the new .mpy), makes the folders, copies the files, removes keys an earlier
#    deployment left in :keys (unless the configuration names key files already on the board),
#    copies --keys, and resets the board.
# With --romfs the modules go instead into the board's ROMFS partition (`mpremote romfs
# deploy`): MicroPython runs a .mpy file there in place, without copying its bytecode to the
# heap (firmware with a ROMFS partition; docs/boards.md).
# `--dry-run` prints every command of both steps and runs none. The device configuration
# format and the wiring of each sensor are in docs/boards.md.
#
# package.json at the repository root (MicroPython's mip format) lists the same modules, so
# `mpremote mip install package.json` installs the source instead; `sensormesh board
# package-json --check` says whether it is up to date with DEVICE_MODULES.
import ast
import json
import os
import shutil
import subprocess
import sys

import click

# The directory holding the sensormesh package (the repository root in a checkout).
BASE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# What runs on a device: the device folder (paths relative to BASE; a trailing "/" takes every
# .py file in the folder and below). A device module imports nothing of sensormesh outside
# sensormesh/device/ (tests/test_device_imports.py checks it on both interpreters).
DEVICE_MODULES = (
    "sensormesh/__init__.py",
    "sensormesh/device/",
)

# What never goes onto a device: CPython-only code and test tooling. Every module of the
# package is in exactly one of the two lists (tests/test_board.py checks it).
HOST_MODULES = (
    "sensormesh/controller/",
    "sensormesh/netlab/",
    "sensormesh/cli.py",
    "sensormesh/api.py",
    "sensormesh/board.py",
    "sensormesh/board_mpy.py",
    "sensormesh/client.py",
    "sensormesh/fakehw/",
)

# Where things go on the board's filesystem.
CONFIG_FILE = "device.json"
ROMFS_DIR = "romfs"     # build_dir/romfs: what `--romfs` puts in the board's ROMFS partition
KEYS_DIR = "keys"
DEFAULT_PORT = 7000

# Keys of a device configuration file (see docs/boards.md) and their defaults.
CONFIG_DEFAULTS = {"port": DEFAULT_PORT, "host": "0.0.0.0", "controller": None,
                   "restart_after_s": 10}
CONFIG_KEYS = ("name", "wifi", "controller", "port", "host", "max_conns", "register", "keys", "sensors",
               "restart_after_s")
PIN_PARAMS = ("pin", "trigger", "echo", "pin_a", "pin_b", "scl", "sda")
SHARED_PIN_PARAMS = ("scl", "sda")     # an I2C bus may carry several sensors
INPUT_ONLY_GPIOS = (34, 35, 36, 37, 38, 39)


class BoardError(Exception):
    """A device configuration or a build step that cannot work; the message says why."""


# -- the device modules ----------------------------------------------------------------

def _expand(entries, base):
    out = []
    for e in entries:
        path = os.path.join(base, e)
        if e.endswith("/"):
            for d, dirs, files in os.walk(path):
                dirs[:] = sorted(x for x in dirs if x != "__pycache__")
                for f in sorted(files):
                    if f.endswith(".py"):
                        out.append(os.path.relpath(os.path.join(d, f), base).replace(os.sep, "/"))
        elif os.path.exists(path):
            out.append(e)
    return sorted(out)


def device_files(base=BASE):
    """The device modules that exist, as sorted paths relative to base."""
    return _expand(DEVICE_MODULES, base)


def missing_device_modules(base=BASE):
    """DEVICE_MODULES entries that are not there (yet)."""
    return [e for e in DEVICE_MODULES if not os.path.exists(os.path.join(base, e))]


def host_files(base=BASE):
    return _expand(HOST_MODULES, base)


def package_json(base=BASE):
    """MicroPython mip package description of the device modules (the source files)."""
    from sensormesh.device.core import VERSION
    return {"urls": [[f, f] for f in device_files(base)], "deps": [], "version": VERSION}


def package_json_text(base=BASE):
    """package.json as written to the repository: one module per line."""
    pj = package_json(base)
    urls = ",\n".join("  " + json.dumps(u) for u in pj["urls"])
    return ('{\n "urls": [\n%s\n ],\n "deps": %s,\n "version": %s\n}\n'
            % (urls, json.dumps(pj["deps"]), json.dumps(pj["version"])))


# -- device configuration --------------------------------------------------------------

def driver_params(kind, base=BASE, driver="esp32"):
    """Constructor parameter names of the esp32 (or sim) driver for kind, read from its source."""
    if not isinstance(kind, str) or not kind or "/" in kind or kind.startswith("."):
        return None
    path = os.path.join(base, "sensormesh", "device", "sensors", driver, kind + ".py")
    if not os.path.exists(path):
        return None
    cls_name = kind[0].upper() + kind[1:]
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == cls_name:
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == "__init__":
                    return [a.arg for a in item.args.args[1:]] + [a.arg for a in item.args.kwonlyargs]
            # a simulated sensor without its own constructor takes its base's: the seed
            return ["seed"] if any(getattr(b, "id", None) == "Simulated" for b in node.bases) else []
    return None


# the drivers a sensor spec may name, and the parameters of a CSV replay (sensors/csvreplay.py)
DRIVERS = ("esp32", "sim", "csv")
CSV_PARAMS = ("path", "column", "loop", "header", "seed")
CSV_ALL = list(CSV_PARAMS)


def _rate_problem(rate):
    """Why a spec's "rate" (samples per second) is not one, or None."""
    if rate is None:
        return None
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or rate != rate or rate in (float("inf"), -float("inf")):
        return "rate must be a number of samples per second (0: as fast as it is read), not %s" % json.dumps(rate)
    if rate < 0:
        return "rate must not be negative (0: as fast as it is read), not %s" % json.dumps(rate)
    return None


def esp32_kinds(base=BASE):
    d = os.path.join(base, "sensormesh", "device", "sensors", "esp32")
    return sorted(f[:-3] for f in os.listdir(d) if f.endswith(".py") and not f.startswith("_"))


def check_sensors(sensors, base=BASE):
    """Normalised copies of the sensor specs: driver defaults to esp32; unknown kinds and
    parameters and two sensors on one GPIO are BoardErrors, all of them in one."""
    if not isinstance(sensors, list):
        raise BoardError("\"sensors\" must be a list of sensor specs")
    out = []
    names = set()
    used = {}
    problems = []
    from sensormesh.device.sensors.registry import SIM_KINDS, SensorError, parse_spec
    for i, spec in enumerate(sensors):
        if isinstance(spec, str):   # the command line's form, as sensors.make() reads it
            try:
                spec = parse_spec(spec)
            except SensorError as e:
                problems.append("sensor %d: %s" % (i + 1, e))
                continue
        if not isinstance(spec, dict) or not spec.get("kind") or not isinstance(spec["kind"], str):
            problems.append("sensor %d: a sensor spec is an object with at least \"kind\" (a string)" % (i + 1))
            continue
        spec = dict(spec)
        spec.setdefault("driver", "esp32")
        spec.setdefault("name", spec["kind"])
        name = spec["name"]
        if not isinstance(name, str) or not name:
            problems.append("sensor %d: \"name\" must be a string, not %s" % (i + 1, json.dumps(name)))
            continue
        if name in names:
            problems.append("sensor name %r is used twice" % name)
        names.add(name)
        why = _rate_problem(spec.get("rate"))
        if why:
            problems.append("sensor %r: %s" % (name, why))
        driver = spec["driver"]
        if driver not in DRIVERS:
            problems.append("sensor %r: unknown driver %s%s (there are: %s)"
                            % (name, json.dumps(driver), _suggest(driver, DRIVERS), ", ".join(DRIVERS)))
            out.append(spec)
            continue
        if driver == "csv" or spec["kind"] == "csv":
            params = CSV_ALL
            if not isinstance(spec.get("path"), str) or not spec["path"]:
                problems.append("sensor %r: a CSV replay needs \"path\", the file on the board" % name)
        elif driver == "sim":
            params = driver_params(spec["kind"], base, "sim") if spec["kind"] in SIM_KINDS else None
            if params is None:
                problems.append("sensor %r: no simulated sensor of kind %r%s (there are: %s)"
                                % (name, spec["kind"], _suggest(spec["kind"], SIM_KINDS), ", ".join(SIM_KINDS)))
                out.append(spec)
                continue
        else:
            params = driver_params(spec["kind"], base)
            if params is None:
                problems.append("sensor %r: no esp32 driver for kind %r%s (there are: %s)"
                                % (name, spec["kind"], _suggest(spec["kind"], esp32_kinds(base)),
                                   ", ".join(esp32_kinds(base))))
                out.append(spec)
                continue
        for k in spec:
            if k not in ("name", "kind", "driver", "rate") and k not in params:
                what = spec["kind"] if driver == "esp32" else "csv" if params is CSV_ALL else "simulated " + spec["kind"]
                problems.append("sensor %r: the %s driver has no parameter %r%s (it takes: %s)"
                                % (name, what, k, _suggest(k, params), ", ".join(params) or "none"))
        if driver == "esp32":
            for k in PIN_PARAMS:
                if k not in spec:
                    continue
                gpio = spec[k]
                if type(gpio) is not int:
                    problems.append("sensor %r: %s must be a GPIO number, not %r" % (name, k, gpio))
                    continue
                if k == "trigger" and gpio in INPUT_ONLY_GPIOS:
                    problems.append("sensor %r: GPIO %d is input only and cannot drive the trigger" % (name, gpio))
                other = used.get(gpio)
                if other is not None and not (k in SHARED_PIN_PARAMS and other[1] == k):
                    problems.append("GPIO %d is used twice: %s of sensor %r and %s of sensor %r"
                                    % (gpio, other[1], other[0], k, name))
                used[gpio] = (name, k)
        out.append(spec)
    if len(problems) == 1:
        raise BoardError(problems[0])
    if problems:
        raise BoardError("%d problems with the sensors:\n  %s" % (len(problems), "\n  ".join(problems)))
    return out


def _suggest(word, options):
    import difflib
    close = difflib.get_close_matches(str(word), list(options), n=1)
    return " (did you mean %r?)" % close[0] if close else ""


def safe_name(name):
    """A device name that is a plain file name: letters, digits, - _ . and not starting with
    '.' (no path: the build goes to build/board/NAME)."""
    return (type(name) is str and name[:1] not in ("", ".")
            and all(c.isascii() and (c.isalnum() or c in "-_.") for c in name))


def device_config(cfg, base=BASE):
    """The configuration file written to the board, from the user's device configuration."""
    if not isinstance(cfg, dict):
        raise BoardError("a device configuration is a JSON object")
    unknown = [k for k in cfg if k not in CONFIG_KEYS]
    if unknown:
        raise BoardError("unknown configuration key(s): %s (known: %s)"
                         % (", ".join(k + _suggest(k, CONFIG_KEYS) for k in sorted(unknown)), ", ".join(CONFIG_KEYS)))
    if not cfg.get("name"):
        raise BoardError("the device configuration needs a \"name\"")
    if not safe_name(cfg["name"]):
        raise BoardError("the device name %s is not a plain name: use letters, digits, '-', '_' and '.', "
                         "not starting with '.' (the name is a folder of the build, build/board/NAME)"
                         % json.dumps(cfg["name"]))
    out = {"name": cfg["name"]}
    for k in ("port", "host", "controller", "restart_after_s"):
        out[k] = cfg.get(k, CONFIG_DEFAULTS[k])
    if type(out["port"]) is not int or not -1 <= out["port"] <= 65535:
        raise BoardError("\"port\" must be a TCP port, 0..65535 (-1: no listener), not %s" % json.dumps(out["port"]))
    if "max_conns" in cfg and (type(cfg["max_conns"]) is not int or cfg["max_conns"] < 1):
        raise BoardError("\"max_conns\" must be at least 1, not %s" % json.dumps(cfg["max_conns"]))
    for k in ("max_conns", "register"):
        if k in cfg:
            out[k] = cfg[k]
    wifi = cfg.get("wifi") or {}
    if not isinstance(wifi, dict):
        raise BoardError("\"wifi\" must be an object {\"ssid\", \"password\"}")
    password = wifi.get("password")
    if password is None:
        password = os.environ.get("SENSORMESH_WIFI_PASSWORD", "")
    out["wifi"] = {"ssid": wifi.get("ssid") or "", "password": password}
    keys = cfg.get("keys")
    if keys:   # key files already on the board: the device reads "identity" and "trust"
        if not isinstance(keys, dict):
            raise BoardError("\"keys\" must be an object {\"identity\", \"trust\"} of paths on the board")
        out["identity"] = keys.get("identity", KEYS_DIR + "/identity.json")
        out["trust"] = keys.get("trust", KEYS_DIR + "/trust.json")
    out["sensors"] = check_sensors(cfg.get("sensors", []), base)
    return out


def load_config(path):
    try:
        with open(path) as f:
            return json.load(f)
    except OSError as e:
        raise BoardError("cannot read %s: %s" % (path, e.strerror or e))
    except ValueError as e:
        raise BoardError("%s: not valid JSON: %s" % (path, e))


# -- the board's boot.py and main.py ---------------------------------------------------

BOOT_PY = """\
# sensormesh board boot, written by `sensormesh board deploy`: runs before main.py.
import gc

try:
    import esp
    esp.osdebug(None)       # no ESP-IDF log lines on the REPL's UART
except ImportError:
    pass
gc.collect()
"""

MAIN_PY = """\
# sensormesh board entry point, written by `sensormesh board deploy`: reads device.json,
# joins the WiFi and runs the device (sensormesh.device.core.start(config), then its loop)
# until reset. When that fails it prints why, waits restart_after_s seconds (Ctrl-C here gets
# the REPL) and resets.
import json
import sys
import time

CONFIG = "device.json"


def wifi_up(wifi, timeout_ms=20000):
    import network
    sta = network.WLAN(network.STA_IF)
    sta.active(True)
    if not sta.isconnected():
        sta.connect(wifi["ssid"], wifi.get("password") or "")
        t0 = time.ticks_ms()
        while not sta.isconnected():
            if time.ticks_diff(time.ticks_ms(), t0) > timeout_ms:
                raise OSError("WiFi %r: not connected after %d ms" % (wifi["ssid"], timeout_ms))
            time.sleep_ms(100)
    return sta.ifconfig()[0]


def main():
    with open(CONFIG) as f:
        cfg = json.load(f)
    wifi = cfg.get("wifi") or {}
    if wifi.get("ssid"):
        print("sensormesh: WiFi %s up, address %s" % (wifi["ssid"], wifi_up(wifi)))
    from sensormesh.device.core import start
    dev = start(cfg)
    # the loop runs without holding the configuration: its paths, specs
    # and WiFi settings (about 1 KB of heap) are needed only to start it
    cfg = wifi = None
    try:
        dev.run()
    except KeyboardInterrupt:
        dev.log("stopped")


def restart_after_s():
    try:
        with open(CONFIG) as f:
            return json.load(f).get("restart_after_s", 10)
    except Exception:
        return 10


try:
    main()
except KeyboardInterrupt:
    print("sensormesh: stopped")
except Exception as e:
    print("sensormesh: device failed:", repr(e))
    if hasattr(sys, "print_exception"):
        sys.print_exception(e)
    wait = restart_after_s()
    if wait is not None and wait >= 0:
        try:
            time.sleep(wait)
            import machine
            machine.reset()
        except KeyboardInterrupt:
            print("sensormesh: reset cancelled")
"""


# -- build and copy ------------------------------------------------------------------------

def compiled_name(path):
    return path[:-3] + ".mpy" if path.endswith(".py") else path


# The package's .mpy files carry no line-number tables: about 6 % less bytecode, which a board
# holds in its heap (measured: 2-4 KB less heap for a keyed device running a deployment;
# docs/boards.md). A traceback from the package's own code then names the file and the function
# but says "line 1"; user functions shipped as source keep their lines. `board deploy --lines`
# and SENSORMESH_MPY_LINES=1 (sensormesh up) compile with them, `--source` copies the sources.
# An mpy-cross older than the option (MicroPython 1.28) compiles with line numbers.
NO_SOURCE_LINES = ("-X", "no-source-lines")
LINES_ENV = "SENSORMESH_MPY_LINES"


def drops_lines(mpy_cross):
    """Does this mpy-cross know NO_SOURCE_LINES? (Its --help lists the option.)"""
    try:
        out = subprocess.run([mpy_cross, "--help"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return NO_SOURCE_LINES[1] in out.stdout + out.stderr


# The name a compiled module carries (its tracebacks say it): the last part of its module name,
# e.g. `pipes` for sensormesh/device/runtime/pipes.py and `runtime` for runtime/__init__.py. A
# device interns the name embedded in every module it loads and keeps it for as long as it runs;
# importing a module interns each part of its dotted name anyway (sensormesh.device.runtime.pipes
# interns `pipes`), so this name costs a device nothing, where a path ('runtime/pipes.py') cost a
# name of its own per module (about 50 names, 0.8 KB on a keyed device running a deployment).
# A traceback then reads `File "pipes", line 1, in _send`: the module and the function.


def source_name(rel):
    """What mpy-cross names the module at `rel` (a path relative to BASE) in tracebacks: the
    last part of its module name ('admit' for sensormesh/device/secure/admit.py)."""
    parts = (rel[:-3] if rel.endswith(".py") else rel).split("/")
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return parts[-1]


def compile_argv(mpy_cross, target, rel, source, lines=False):
    """The mpy-cross command that compiles `source` (at `rel`, named source_name(rel) in
    tracebacks) into `target`; without line numbers unless `lines`."""
    return [mpy_cross, "-o", target, "-s", source_name(rel)] + ([] if lines else list(NO_SOURCE_LINES)) + [source]


def plan(cfg, port, build_dir, base=BASE, compile=True, mpy_cross="mpy-cross",
         mpremote="mpremote", keys_dir=None, lines=False, romfs=False):
    """Every step of a deployment, in order, without running any:
    ("clear", local folder) | ("write", local path, text) | ("compile", argv) |
    ("copy", local, local) | ("board", argv, may_fail). With romfs the modules are built into build_dir/romfs and go
    into the board's ROMFS partition. Returns (steps, board configuration)."""
    board_cfg = device_config(cfg, base)
    if romfs and not compile:
        raise BoardError("--romfs runs precompiled .mpy files in place; .py sources would be compiled "
                         "into the heap on every start, so --romfs and --source do not go together")
    fs = os.path.join(build_dir, "fs")
    rom = os.path.join(build_dir, ROMFS_DIR)
    steps = [("clear", rom)] if romfs else []    # the image is the whole folder: nothing stale in it
    files = device_files(base)
    if not files:
        raise BoardError("no device modules found under %s" % base)
    remote = []
    for f in files:
        target = compiled_name(f) if compile else f
        local = os.path.join(rom if romfs else fs, target)
        if compile:
            steps.append(("compile", compile_argv(mpy_cross, local, f, os.path.join(base, f), lines)))
        else:
            steps.append(("copy", os.path.join(base, f), local))
        remote.append(target)
    root_files = [CONFIG_FILE, "boot.py", "main.py"]
    key_files = []
    if keys_dir:
        for k in ("identity.json", "trust.json"):
            src = os.path.join(keys_dir, k)
            if not os.path.exists(src):
                raise BoardError("%s is missing (write it with `sensormesh keys export NAME %s`)"
                                 % (src, keys_dir))
            key_files.append(src)
        board_cfg["identity"] = KEYS_DIR + "/identity.json"   # where the copy below puts them
        board_cfg["trust"] = KEYS_DIR + "/trust.json"

    steps.append(("write", os.path.join(fs, CONFIG_FILE), json.dumps(board_cfg, indent=1) + "\n"))
    steps.append(("write", os.path.join(fs, "boot.py"), BOOT_PY))
    steps.append(("write", os.path.join(fs, "main.py"), MAIN_PY))
    conn = [mpremote, "connect", port]
    steps.append(("board", conn + ["fs", "rm", "-r", ":sensormesh"], True))
    if romfs:
        # the old folder is gone from the flash (the working directory comes first on sys.path,
        # so it would shadow /rom); the whole image replaces the partition's
        steps.append(("board", conn + ["romfs", "--no-mpy", "deploy", rom], False))
    dirs = [] if romfs else sorted(set(r.rpartition("/")[0] for r in remote if "/" in r))
    for d in _with_parents(dirs):
        steps.append(("board", conn + ["fs", "mkdir", ":" + d], True))
    for d in dirs:
        here = [os.path.join(fs, r) for r in remote if r.rpartition("/")[0] == d]
        steps.append(("board", conn + ["fs", "cp"] + here + [":" + d + "/"], False))
    steps.append(("board", conn + ["fs", "cp"] + [os.path.join(fs, r) for r in root_files] + [":"], False))
    if key_files or not cfg.get("keys"):
        # keys of an earlier deployment must not outlive it (cfg "keys" names files put there by hand)
        steps.append(("board", conn + ["fs", "rm", "-r", ":" + KEYS_DIR], True))
    if key_files:
        steps.append(("board", conn + ["fs", "mkdir", ":" + KEYS_DIR], True))
        steps.append(("board", conn + ["fs", "cp"] + key_files + [":" + KEYS_DIR + "/"], False))
    steps.append(("board", conn + ["reset"], False))
    return steps, board_cfg


def _with_parents(dirs):
    out = []
    for d in dirs:
        parts = d.split("/")
        for i in range(1, len(parts) + 1):
            p = "/".join(parts[:i])
            if p not in out:
                out.append(p)
    return out


def run_command(argv):
    """Default runner: the command's exit status (output goes to the terminal)."""
    try:
        return subprocess.call(argv)
    except OSError as e:
        raise BoardError("cannot run %s: %s (is it installed? pip install %s)"
                         % (argv[0], e.strerror or e, os.path.basename(argv[0])))


# What mpremote says when a board command that may fail fails as expected (a fresh board: nothing
# to remove; a folder that is there already), by its fs command: hidden. Any other failure of such
# a command (no board at the port, a board that does not answer) stops the deployment.
EXPECTED_FAILURES = {"rm": "No such file or directory", "mkdir": "File exists"}


def run_captured(argv):
    """Runner of the board commands that may fail: (exit status, what it printed), printed
    nowhere (execute decides what to show)."""
    try:
        r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    except OSError as e:
        raise BoardError("cannot run %s: %s (is it installed? pip install %s)"
                         % (argv[0], e.strerror or e, os.path.basename(argv[0])))
    return r.returncode, r.stdout or ""


def _expected_failure(argv, output):
    """True when a board command that may fail failed for the reason it may (EXPECTED_FAILURES)."""
    op = argv[argv.index("fs") + 1] if "fs" in argv[:-1] else None
    words = EXPECTED_FAILURES.get(op)
    return bool(words) and words in output


ROMFS_HINT = ("\n--romfs needs firmware with a ROMFS partition large enough for the package "
              "(`mpremote romfs query` shows it; docs/boards.md); without one, deploy without --romfs")


# mpy-cross processes at once (a deployment's compile steps, the local devices' cache): the whole
# package compiles in about 2 s
COMPILE_JOBS = 4


def _compile_all(argvs, runner):
    """Run compile commands COMPILE_JOBS at a time; BoardError naming the first that failed."""
    from concurrent.futures import ThreadPoolExecutor

    def one(argv):
        os.makedirs(os.path.dirname(argv[2]), exist_ok=True)
        return runner(argv)
    with ThreadPoolExecutor(COMPILE_JOBS) as pool:
        codes = list(pool.map(one, argvs))
    for argv, rc in zip(argvs, codes):
        if rc != 0:
            raise BoardError("compiling failed: %s" % " ".join(argv))


def execute(steps, runner=run_command, echo=print, may_fail_runner=run_captured):
    """Run a plan: writes and copies locally, compile and board commands through runner (the
    compile steps of a row COMPILE_JOBS at a time); the board commands that may fail (removing
    what may not be there, making a folder that may be) through may_fail_runner, which returns
    (exit status, output): their expected failure is not shown, any other stops the deployment
    with what mpremote said."""
    compiles = []
    for step in steps:
        what = step[0]
        if what == "compile":
            compiles.append(step[1])
            continue
        if compiles:
            _compile_all(compiles, runner)
            compiles = []
        if what == "clear":
            shutil.rmtree(step[1], ignore_errors=True)
        elif what == "write":
            os.makedirs(os.path.dirname(step[1]), exist_ok=True)
            with open(step[1], "w") as f:
                f.write(step[2])
        elif what == "copy":
            os.makedirs(os.path.dirname(step[2]), exist_ok=True)
            shutil.copyfile(step[1], step[2])
        elif what == "board":
            echo("$ " + " ".join(step[1]))
            if step[2]:
                rc, out = may_fail_runner(step[1])
                if rc != 0 and not _expected_failure(step[1], out):
                    raise BoardError("board command failed (exit %d): %s%s" % (
                        rc, " ".join(step[1]), "\n" + out.strip() if out.strip() else ""))
                if rc == 0 and out.strip():
                    echo(out.rstrip())
                continue
            rc = runner(step[1])
            if rc != 0:
                raise BoardError("board command failed (exit %d): %s%s" % (
                    rc, " ".join(step[1]), ROMFS_HINT if "romfs" in step[1] else ""))
    if compiles:
        _compile_all(compiles, runner)


def describe(steps):
    """The plan as shell-like lines, for --dry-run."""
    lines = []
    for step in steps:
        if step[0] == "clear":
            lines.append("rm -r %s" % step[1])
        elif step[0] == "write":
            lines.append("write %s (%d bytes)" % (step[1], len(step[2])))
        elif step[0] == "copy":
            lines.append("cp %s %s" % (step[1], step[2]))
        elif step[0] == "compile":
            lines.append(" ".join(step[1]))
        else:
            lines.append(" ".join(step[1]) + ("    # may fail: nothing to remove / exists" if step[2] else ""))
    return lines


def build(cfg, build_dir, base=BASE, compile=True, mpy_cross="mpy-cross", runner=run_command, keys_dir=None,
          lines=False):
    """Only the local part: the board's filesystem in build_dir/fs (with keys_dir's key files in
    fs/keys, where `deploy` copies them on the board). Returns that folder."""
    steps, _ = plan(cfg, "-", build_dir, base, compile, mpy_cross, keys_dir=keys_dir, lines=lines)
    execute([s for s in steps if s[0] != "board"], runner)
    fs = os.path.join(build_dir, "fs")
    if keys_dir:
        import shutil
        os.makedirs(os.path.join(fs, KEYS_DIR), exist_ok=True)
        for k in ("identity.json", "trust.json"):
            shutil.copy(os.path.join(keys_dir, k), os.path.join(fs, KEYS_DIR, k))
    return fs


def _find_tool(name):
    found = shutil.which(name)
    if found:
        return found
    here = os.path.join(os.path.dirname(sys.executable), name)
    return here if os.path.exists(here) else name


# -- command line ----------------------------------------------------------------------

@click.group("board")
def board():
    """Put the device runtime on a MicroPython board (ESP32)."""


@board.command()
@click.option("--port", required=True, help="Serial port of the board, e.g. /dev/ttyUSB0.")
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False),
              help="Device configuration (JSON; see docs/boards.md).")
@click.option("--build-dir", default=None, help="Where to build (default: build/board/NAME).")
@click.option("--keys", "keys_dir", default=None, type=click.Path(file_okay=False),
              help="Folder with identity.json and trust.json (`sensormesh keys export`) to copy to :keys/.")
@click.option("--source", is_flag=True, help="Copy .py source instead of precompiled .mpy files.")
@click.option("--lines", is_flag=True,
              help="Keep line numbers in the .mpy files (tracebacks name the line; about 6% more heap for code).")
@click.option("--romfs", is_flag=True,
              help="Put the package into the board's ROMFS partition, where its .mpy files run in place "
                   "(about a third less heap for code; firmware with a ROMFS partition, see docs/boards.md).")
@click.option("--mpy-cross", "mpy_cross", default=None, help="mpy-cross to compile with (match the firmware's version).")
@click.option("--mpremote", default=None, help="mpremote command to use.")
@click.option("--dry-run", is_flag=True, help="Print the plan; build and copy nothing.")
def deploy(port, config_path, build_dir, keys_dir, source, lines, romfs, mpy_cross, mpremote, dry_run):
    """Build the device package and copy it with its configuration onto the board at PORT."""
    try:
        cfg = load_config(config_path)
        try:
            board_cfg = device_config(cfg)      # (plan checks it again) the name is safe before it names a folder
        except BoardError as e:
            raise BoardError("%s: %s" % (config_path, e))
        build_dir = build_dir or os.path.join("build", "board", board_cfg["name"])
        mpy_cross = mpy_cross or _find_tool("mpy-cross")
        if not source and not lines and not drops_lines(mpy_cross):
            lines = True
            click.echo("# %s cannot leave out line numbers (-X no-source-lines): the .mpy files keep them"
                       % mpy_cross)
        steps, board_cfg = plan(cfg, port, build_dir, compile=not source, mpy_cross=mpy_cross,
                                mpremote=mpremote or _find_tool("mpremote"), keys_dir=keys_dir, lines=lines,
                                romfs=romfs)
        mpy_check = not source and not dry_run
        if mpy_check:
            from sensormesh import board_mpy
            try:
                board_mpy.probe(port, mpremote or _find_tool("mpremote"), mpy_cross)
            except board_mpy.MpyMismatch as e:
                raise BoardError(str(e))
        if dry_run:
            for line in describe(steps):
                click.echo(line)
            if not source:
                click.echo("# before all of this: ask the board for the .mpy version it loads "
                           "(mpremote exec) and compare with mpy-cross's")
            click.echo("# device %s: %d sensors, listening on port %s, WiFi %r"
                       % (board_cfg["name"], len(board_cfg["sensors"]), board_cfg["port"],
                          board_cfg["wifi"]["ssid"]))
            return
        execute(steps, echo=click.echo)
        click.echo("deployed %s to %s; the board restarts into sensormesh" % (board_cfg["name"], port))
    except BoardError as e:
        raise click.ClickException(str(e))


@board.command("package-json")
@click.option("--check", is_flag=True, help="Only check that package.json is up to date (exit 1 if not).")
@click.option("--path", default=os.path.join(BASE, "package.json"), show_default=True)
def package_json_cmd(check, path):
    """Write (or --check) the mip package.json listing the device modules."""
    want = package_json_text()
    if check:
        try:
            with open(path) as f:
                have = f.read()
        except OSError:
            have = None
        if have != want:
            raise click.ClickException("%s is out of date: run `sensormesh board package-json`" % path)
        click.echo("%s lists the %d device modules" % (path, len(package_json()["urls"])))
        return
    with open(path, "w") as f:
        f.write(want)
    click.echo("wrote %s (%d device modules)" % (path, len(package_json()["urls"])))


if __name__ == "__main__":
    board()
