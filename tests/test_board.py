"""sensormesh board: the device module list, package.json, the build and the mpremote plan,
and the compiled bundle running on the MicroPython unix port with simulated hardware."""
import ast
import json
import os
import queue
import subprocess
import threading

import pytest
from click.testing import CliRunner

from procs import ROOT, free_port, keyed_client, need_micropython
from sensormesh import board
from sensormesh.client import Client

PKG = os.path.join(ROOT, "sensormesh")

CONFIG = {
    "name": "kitchen",
    "wifi": {"ssid": "lab", "password": "hunter2"},
    "controller": "192.168.1.10:7100",
    "sensors": [
        {"name": "air", "kind": "co2", "pin": 35, "range_ppm": 2000},
        {"name": "knob", "kind": "poti", "pin": 34},
        {"name": "chip", "kind": "temperature"},
        {"name": "dist", "kind": "ultrasonic", "trigger": 5, "echo": 18, "rate": 10},
        {"name": "imu", "kind": "gyro", "scl": 22, "sda": 21},
        {"name": "imu2", "kind": "gyro", "scl": 22, "sda": 21, "address": 105},
    ],
}


def all_package_files():
    out = []
    for d, dirs, files in os.walk(PKG):
        dirs[:] = [x for x in dirs if x != "__pycache__"]
        out += [os.path.relpath(os.path.join(d, f), ROOT) for f in files if f.endswith(".py")]
    return sorted(out)


# -- which modules go onto a device --------------------------------------------------

def test_package_json_lists_exactly_the_device_modules():
    with open(os.path.join(ROOT, "package.json")) as f:
        pj = json.load(f)
    files = board.device_files(ROOT)
    assert [u[0] for u in pj["urls"]] == files, "package.json is stale: run `sensormesh board package-json`"
    assert all(u[0] == u[1] for u in pj["urls"])
    assert pj["deps"] == []
    from sensormesh.device.core import VERSION
    assert pj["version"] == VERSION
    for f in files:
        assert not f.startswith(("sensormesh/controller/", "sensormesh/fakehw/")), f
        assert f not in ("sensormesh/cli.py", "sensormesh/board.py"), f


def test_package_json_check_command_agrees():
    r = CliRunner().invoke(board.board, ["package-json", "--check"])
    assert r.exit_code == 0, r.output


def test_every_module_is_classified_device_or_host():
    device = set(board.device_files(ROOT))
    host = set(board.host_files(ROOT))
    assert not device & host
    unclassified = set(all_package_files()) - device - host
    assert not unclassified, ("add these to DEVICE_MODULES or HOST_MODULES in sensormesh/board.py: %s"
                              % sorted(unclassified))


def test_device_modules_listed_are_there_or_reported():
    # the device folder is what goes onto a board, every module of it
    assert "sensormesh/device/" in board.DEVICE_MODULES
    files = board.device_files(ROOT)
    for name in ("__main__", "compat", "codec", "transport", "core", "datarequest", "forward", "schedule",
                 "steps/__init__", "steps/windows", "runtime/__init__", "runtime/pipes",
                 "runtime/shipped", "secure/__init__", "secure/handshake", "secure/fernet",
                 "secure/x25519", "sensors/__init__"):
        assert "sensormesh/device/%s.py" % name in files, name
    assert board.missing_device_modules(ROOT) == []


def _imports(path):
    """(module name, top level?) for every import of a module."""
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    top = set(id(n) for n in tree.body)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, id(node) in top) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            # `from package import module` imports the module; `from module import name` the module
            for a in node.names:
                sub = node.module + "." + a.name
                p = os.path.join(ROOT, sub.replace(".", "/"))
                is_mod = os.path.exists(p + ".py") or os.path.exists(p + "/__init__.py")
                out.append((sub if is_mod else node.module, id(node) in top))
    return out


def test_device_modules_import_only_device_modules():
    device = set(board.device_files(ROOT))
    host = set(board.host_files(ROOT))

    def file_of(mod):
        p = mod.replace(".", "/")
        for cand in (p + ".py", p + "/__init__.py"):
            if cand in device or cand in host:
                return cand
        return None

    for f in sorted(device):
        for mod, top in _imports(os.path.join(ROOT, f)):
            if not mod.startswith("sensormesh"):
                continue
            target = file_of(mod)
            assert target is not None, "%s imports %s, which does not exist" % (f, mod)
            assert target in device, "%s imports the host module %s" % (f, mod)


def test_only_the_esp32_drivers_import_board_modules():
    for f in board.device_files(ROOT):
        for mod, _ in _imports(os.path.join(ROOT, f)):
            if mod.split(".")[0] in ("machine", "esp32", "dht", "network"):
                assert f.startswith("sensormesh/device/sensors/esp32/"), "%s imports %s" % (f, mod)
        for mod, top in _imports(os.path.join(ROOT, f)):
            assert mod.split(".")[0] not in ("click", "yaml", "networkx", "scipy", "cryptography") or not top, (f, mod)


# -- the device configuration --------------------------------------------------------

def test_device_config_fills_defaults_and_placeholders(monkeypatch):
    monkeypatch.delenv("SENSORMESH_WIFI_PASSWORD", raising=False)
    cfg = board.device_config(CONFIG, ROOT)
    assert cfg["name"] == "kitchen" and cfg["port"] == 7000 and cfg["host"] == "0.0.0.0"
    assert cfg["wifi"] == {"ssid": "lab", "password": "hunter2"}
    assert cfg["controller"] == "192.168.1.10:7100"
    assert "identity" not in cfg and "trust" not in cfg   # no keys given: a plaintext device
    assert [s["driver"] for s in cfg["sensors"]] == ["esp32"] * 6
    assert cfg["sensors"][3] == {"name": "dist", "kind": "ultrasonic", "driver": "esp32",
                                 "trigger": 5, "echo": 18, "rate": 10}
    bare = board.device_config({"name": "x"}, ROOT)
    assert bare["wifi"] == {"ssid": "", "password": ""} and bare["sensors"] == []
    monkeypatch.setenv("SENSORMESH_WIFI_PASSWORD", "from-env")
    assert board.device_config({"name": "x", "wifi": {"ssid": "s"}}, ROOT)["wifi"]["password"] == "from-env"


@pytest.mark.parametrize("cfg, words", [
    ({}, "needs a \"name\""),
    ({"name": "x", "sensor": []}, "unknown configuration key"),
    ({"name": "x", "sensors": [{"kind": "lidar"}]}, "no esp32 driver for kind 'lidar'"),
    ({"name": "x", "sensors": [{"kind": "co2", "pins": 4}]}, "has no parameter 'pins'"),
    ({"name": "x", "sensors": [{"kind": "co2", "pin": 4}, {"kind": "touch", "pin": 4}]}, "GPIO 4 is used twice"),
    ({"name": "x", "sensors": [{"kind": "ultrasonic", "trigger": 34}]}, "input only"),
    ({"name": "x", "sensors": [{"kind": "poti", "pin": "34"}]}, "must be a GPIO number"),
    ({"name": "x", "sensors": [{"kind": "poti"}, {"kind": "poti"}]}, "used twice"),
    ({"name": "x", "sensors": [{"kind": "gyro", "scl": 22}, {"kind": "touch", "name": "t", "pin": 22}]}, "GPIO 22"),
    ({"name": "../../x"}, 'the device name "../../x" is not a plain name'),
    ({"name": "/tmp/sm/abs"}, 'the device name "/tmp/sm/abs" is not a plain name'),
    ({"name": ".hidden"}, "not starting with '.'"),
    ({"name": "a b"}, "is not a plain name"),
    ({"name": 5}, "the device name 5 is not a plain name"),
    ({"name": "x", "port": 99999}, '"port" must be a TCP port, 0..65535'),
    ({"name": "x", "port": "7000"}, '"port" must be a TCP port'),
    ({"name": "x", "max_conns": 0}, '"max_conns" must be at least 1'),
    # specs that a board would only refuse when it boots (and then reset, again and again)
    ({"name": "x", "sensors": [{"kind": "tempreature", "driver": "sim"}]},
     "no simulated sensor of kind 'tempreature' (did you mean 'temperature'?)"),
    ({"name": "x", "sensors": [{"kind": "temperature", "driver": "simm"}]}, "unknown driver \"simm\" (did you mean 'sim'?)"),
    ({"name": "x", "sensors": [{"kind": "temperature", "driver": "sim", "pin": 3}]},
     "the simulated temperature driver has no parameter 'pin' (it takes: seed)"),
    ({"name": "x", "sensors": [{"kind": "temperature", "rate": -1}]}, "rate must not be negative"),
    ({"name": "x", "sensors": [{"kind": "temperature", "rate": "10"}]}, "rate must be a number of samples per second"),
    ({"name": "x", "sensors": [{"kind": "temperature", "rate": float("nan")}]}, "rate must be a number"),
    ({"name": "x", "sensors": ["temperature@-5"]}, "rate must not be negative"),
    ({"name": "x", "sensors": ["temprature"]}, "no esp32 driver for kind 'temprature'"),
    ({"name": "x", "sensors": [{"kind": "csv", "driver": "csv"}]}, 'a CSV replay needs "path"'),
    ({"name": "x", "sensors": [{"kind": "csv", "path": "/d.csv", "colum": 1}]},
     "the csv driver has no parameter 'colum' (did you mean 'column'?)"),
    ({"name": "x", "sensors": [{"kind": "poti", "name": 5}]}, '"name" must be a string, not 5'),
])
def test_bad_configurations_are_refused_with_reasons(cfg, words):
    with pytest.raises(board.BoardError) as e:
        board.device_config(cfg, ROOT)
    assert words in str(e.value)


def test_a_sensor_spec_string_is_read_as_the_command_line_reads_it():
    out = board.device_config({"name": "x", "sensors": ["temperature@20", "knob=poti", "r=csv:/d.csv@5",
                                                        {"kind": "counter", "driver": "sim", "start": 3}]}, ROOT)
    assert out["sensors"] == [
        {"kind": "temperature", "name": "temperature", "rate": 20.0, "driver": "esp32"},
        {"kind": "poti", "name": "knob", "driver": "esp32"},
        {"kind": "csv", "driver": "csv", "rate": 5.0, "path": "/d.csv", "name": "r"},
        {"kind": "counter", "driver": "sim", "start": 3, "name": "counter"}]


def test_driver_params_come_from_the_driver_source():
    assert board.driver_params("co2", ROOT) == ["pin", "range_ppm"]
    assert board.driver_params("ultrasonic", ROOT) == ["trigger", "echo", "timeout_us"]
    assert "lidar" not in board.esp32_kinds(ROOT)
    assert set(board.esp32_kinds(ROOT)) == {"co2", "dht11", "gyro", "hall", "poti", "rotary",
                                            "temperature", "touch", "touchpad", "ultrasonic"}


# -- the plan and the mpremote command lines -------------------------------------------

def test_plan_mpremote_commands(tmp_path):
    steps, cfg = board.plan(CONFIG, "/dev/ttyUSB0", str(tmp_path), ROOT)
    fs = os.path.join(str(tmp_path), "fs")
    files = board.device_files(ROOT)
    compiles = [s[1] for s in steps if s[0] == "compile"]
    assert len(compiles) == len(files)
    for argv, f in zip(compiles, files):
        # the embedded name is the last part of the module name, which the import interns anyway
        parts = f[:-3].split("/")
        name = parts[-2] if parts[-1] == "__init__" else parts[-1]
        assert argv == ["mpy-cross", "-o", os.path.join(fs, f[:-3] + ".mpy"), "-s", name, "-X", "no-source-lines",
                        os.path.join(ROOT, f)]
    # --lines: the same without the flag (tracebacks name the line)
    steps, _ = board.plan(CONFIG, "/dev/ttyUSB0", str(tmp_path), ROOT, lines=True)
    argv = [s[1] for s in steps if s[0] == "compile"][0]
    assert argv == ["mpy-cross", "-o", os.path.join(fs, files[0][:-3] + ".mpy"), "-s", board.source_name(files[0]),
                    os.path.join(ROOT, files[0])]
    cmds = [(s[1], s[2]) for s in steps if s[0] == "board"]
    conn = ["mpremote", "connect", "/dev/ttyUSB0"]
    assert cmds[0] == (conn + ["fs", "rm", "-r", ":sensormesh"], True)
    mkdirs = [c[0][-1] for c in cmds if c[0][3:5] == ["fs", "mkdir"]]
    assert mkdirs == [":sensormesh", ":sensormesh/device", ":sensormesh/device/runtime", ":sensormesh/device/secure",
                      ":sensormesh/device/sensors", ":sensormesh/device/sensors/esp32",
                      ":sensormesh/device/sensors/sim", ":sensormesh/device/steps"]
    assert all(c[1] for c in cmds if c[0][3:5] == ["fs", "mkdir"])
    copies = [c[0] for c in cmds if c[0][3:5] == ["fs", "cp"]]
    copied = []
    for c in copies[:-1]:
        dest = c[-1]
        assert dest.startswith(":sensormesh") and dest.endswith("/")
        for src in c[5:-1]:
            rel = os.path.relpath(src, fs)
            assert rel.endswith(".mpy") and ":" + os.path.dirname(rel) + "/" == dest, (src, dest)
            copied.append(rel[:-4] + ".py")
    assert sorted(copied) == files
    assert copies[-1] == conn + ["fs", "cp", os.path.join(fs, "device.json"), os.path.join(fs, "boot.py"),
                                 os.path.join(fs, "main.py"), ":"]
    assert cmds[-1] == (conn + ["reset"], False)
    writes = dict((s[1], s[2]) for s in steps if s[0] == "write")
    assert json.loads(writes[os.path.join(fs, "device.json")]) == cfg


def test_plan_with_keys_and_source(tmp_path):
    keys = tmp_path / "keys"
    keys.mkdir()
    with pytest.raises(board.BoardError, match="identity.json is missing"):
        board.plan(CONFIG, "COM3", str(tmp_path / "b"), ROOT, keys_dir=str(keys))
    (keys / "identity.json").write_text("{}")
    (keys / "trust.json").write_text("{}")
    steps, _ = board.plan(CONFIG, "COM3", str(tmp_path / "b"), ROOT, compile=False, keys_dir=str(keys))
    assert not [s for s in steps if s[0] == "compile"]
    assert len([s for s in steps if s[0] == "copy"]) == len(board.device_files(ROOT))
    cmds = [s[1] for s in steps if s[0] == "board"]
    assert ["mpremote", "connect", "COM3", "fs", "mkdir", ":keys"] in cmds
    assert ["mpremote", "connect", "COM3", "fs", "cp", str(keys / "identity.json"), str(keys / "trust.json"),
            ":keys/"] in cmds
    assert cmds[-1] == ["mpremote", "connect", "COM3", "reset"]
    # the device reads its keys from the top level of device.json, where the copy puts them
    written = json.loads(dict((s[1], s[2]) for s in steps if s[0] == "write")[
        os.path.join(str(tmp_path / "b"), "fs", "device.json")])
    assert written["identity"] == "keys/identity.json" and written["trust"] == "keys/trust.json"


def _capturing_runner(calls, fail=()):
    def run(argv):
        calls.append(list(argv))
        if argv[0].endswith("mpy-cross"):
            return subprocess.call(argv)
        for f in fail:
            if f in argv:
                return 1
        return 0
    return run


def _may_fail_runner(calls, said):
    # a fresh board: nothing to remove, as mpremote says it
    def run(argv):
        calls.append(list(argv))
        op = argv[argv.index("fs") + 1]
        if op == "rm":
            return 1, "mpremote: rm: %s: %s.\n" % (argv[-1][1:], said)
        return 0, ""
    return run


def test_execute_builds_bundle_and_runs_mpremote_in_order(tmp_path):
    calls = []
    steps, cfg = board.plan(CONFIG, "/dev/ttyUSB0", str(tmp_path), ROOT)
    echoed = []
    board.execute(steps, _capturing_runner(calls), echo=echoed.append,
                  may_fail_runner=_may_fail_runner(calls, "No such file or directory"))
    fs = tmp_path / "fs"
    for f in board.device_files(ROOT):
        mpy = fs / (f[:-3] + ".mpy")
        assert mpy.exists() and mpy.read_bytes()[:1] == b"M", f
    assert json.loads((fs / "device.json").read_text()) == cfg
    assert (fs / "main.py").read_text() == board.MAIN_PY
    remote = [c for c in calls if c[0] == "mpremote"]
    assert remote == [s[1] for s in steps if s[0] == "board"]
    assert echoed == ["$ " + " ".join(c) for c in remote]


def test_a_module_that_does_not_compile_stops_the_deployment_before_the_board_is_touched(tmp_path):
    """The compile steps run several at a time; one that fails is named, and no board command
    runs after it."""
    calls = []
    steps, _ = board.plan(CONFIG, "/dev/ttyUSB0", str(tmp_path), ROOT, mpy_cross="mpy-cross")
    bad = [s[1] for s in steps if s[0] == "compile"][5]

    def run(argv):
        calls.append(list(argv))
        return 1 if argv == bad else 0
    with pytest.raises(board.BoardError) as e:
        board.execute(steps, run, echo=lambda line: None)
    assert str(e.value) == "compiling failed: %s" % " ".join(bad)
    assert not [c for c in calls if c[0] == "mpremote"], "the board was touched"
    assert len(calls) == len([s for s in steps if s[0] == "compile"])


def test_a_fresh_boards_expected_mpremote_noise_is_hidden_and_a_real_failure_stops_the_deployment(tmp_path):
    # before, `rm: keys: No such file or directory` of a fresh board reached the terminal, and a
    # board that did not answer went unnoticed until the first copy
    steps, _ = board.plan(CONFIG, "/dev/ttyUSB0", str(tmp_path), ROOT, compile=False)
    calls, echoed = [], []
    board.execute(steps, _capturing_runner(calls), echo=echoed.append,
                  may_fail_runner=_may_fail_runner(calls, "No such file or directory"))
    assert all(line.startswith("$ ") for line in echoed), echoed
    assert ["mpremote", "connect", "/dev/ttyUSB0", "reset"] in calls
    calls = []
    said = "mpremote: failed to access /dev/ttyUSB0 (it may be in use by another program)"
    with pytest.raises(board.BoardError) as e:
        board.execute(steps, _capturing_runner(calls), echo=lambda line: None,
                      may_fail_runner=lambda argv: (calls.append(list(argv)) or (1, said + "\n")))
    assert str(e.value) == "board command failed (exit 1): mpremote connect /dev/ttyUSB0 fs rm -r :sensormesh\n" + said
    assert calls == [["mpremote", "connect", "/dev/ttyUSB0", "fs", "rm", "-r", ":sensormesh"]], calls
    # what a folder made again says is expected too; a command's own output on success is shown
    assert board._expected_failure(["m", "connect", "p", "fs", "mkdir", ":sensormesh"],
                                   "mpremote: mkdir: sensormesh: File exists.")
    assert not board._expected_failure(["m", "connect", "p", "fs", "mkdir", ":sensormesh"],
                                       "mpremote: mkdir: sensormesh: No such file or directory.")


def test_failed_copy_stops_the_deployment(tmp_path):
    calls = []
    steps, _ = board.plan(CONFIG, "/dev/ttyUSB0", str(tmp_path), ROOT, compile=False)
    with pytest.raises(board.BoardError, match="board command failed"):
        board.execute(steps, _capturing_runner(calls, fail=("cp",)), echo=lambda line: None,
                      may_fail_runner=_may_fail_runner(calls, "No such file or directory"))
    assert calls[-1][3:5] == ["fs", "cp"]
    assert ["mpremote", "connect", "/dev/ttyUSB0", "reset"] not in calls


def test_plan_romfs_builds_an_image_folder_and_deploys_it_into_the_partition(tmp_path):
    steps, cfg = board.plan(CONFIG, "/dev/ttyUSB0", str(tmp_path), ROOT, romfs=True)
    rom = os.path.join(str(tmp_path), "romfs")
    fs = os.path.join(str(tmp_path), "fs")
    assert steps[0] == ("clear", rom)           # nothing stale from an earlier build goes into the image
    targets = [s[1][2] for s in steps if s[0] == "compile"]
    assert sorted(os.path.relpath(t, rom) for t in targets) == sorted(
        board.compiled_name(f) for f in board.device_files(ROOT))
    conn = ["mpremote", "connect", "/dev/ttyUSB0"]
    cmds = [(s[1], s[2]) for s in steps if s[0] == "board"]
    # the flash copy of an earlier deployment goes (it would shadow /rom), the image goes in whole
    assert cmds[0] == (conn + ["fs", "rm", "-r", ":sensormesh"], True)
    assert cmds[1] == (conn + ["romfs", "--no-mpy", "deploy", rom], False)
    assert not [c for c in cmds if c[0][3:5] == ["fs", "mkdir"]]
    copies = [c[0] for c in cmds if c[0][3:5] == ["fs", "cp"]]
    assert copies == [conn + ["fs", "cp", os.path.join(fs, "device.json"), os.path.join(fs, "boot.py"),
                              os.path.join(fs, "main.py"), ":"]]
    assert cmds[-1] == (conn + ["reset"], False)
    with pytest.raises(board.BoardError, match="--romfs and --source do not go together"):
        board.plan(CONFIG, "/dev/ttyUSB0", str(tmp_path), ROOT, compile=False, romfs=True)


def test_romfs_build_leaves_nothing_stale_in_the_image_folder(tmp_path):
    stale = tmp_path / "romfs" / "sensormesh" / "device" / "gone.mpy"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"M")
    steps, _ = board.plan({"name": "b"}, "-", str(tmp_path), ROOT, romfs=True)
    board.execute([s for s in steps if s[0] not in ("board", "compile")], echo=lambda text: None)
    assert not stale.exists()


def test_cli_dry_run_prints_plan_and_touches_nothing(tmp_path):
    cfgfile = tmp_path / "device.json"
    cfgfile.write_text(json.dumps(CONFIG))
    out = tmp_path / "out"
    r = CliRunner().invoke(board.board, ["deploy", "--port", "/dev/ttyUSB0", "--config", str(cfgfile),
                                         "--build-dir", str(out), "--dry-run", "--mpremote", "mpremote",
                                         "--mpy-cross", "mpy-cross"])
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert lines[0].startswith("mpy-cross -o ")
    assert "mpremote connect /dev/ttyUSB0 fs rm -r :sensormesh    # may fail: nothing to remove / exists" in lines
    assert "mpremote connect /dev/ttyUSB0 reset" in lines
    assert lines[-1] == "# device kitchen: 6 sensors, listening on port 7000, WiFi 'lab'"
    assert not out.exists()


def test_cli_reports_configuration_errors(tmp_path):
    cfgfile = tmp_path / "device.json"
    cfgfile.write_text(json.dumps({"name": "x", "sensors": [{"kind": "co2", "pin": 99, "bogus": 1}]}))
    r = CliRunner().invoke(board.board, ["deploy", "--port", "p", "--config", str(cfgfile), "--dry-run"])
    assert r.exit_code != 0 and "has no parameter 'bogus'" in r.output
    r = CliRunner().invoke(board.board, ["deploy", "--port", "p", "--config", str(tmp_path / "nope.json")])
    assert r.exit_code != 0 and "cannot read" in r.output


def test_cli_names_the_file_and_every_sensor_problem_at_once_with_suggestions(tmp_path):
    cfgfile = tmp_path / "kitchen.json"
    cfgfile.write_text(json.dumps({"name": "kitchen", "sensors": [
        {"name": "air", "kind": "co2", "pin": 35},
        {"name": "climate", "kind": "dht11", "pin": 35},
        {"name": "dist", "kind": "ultrasonic", "trigger": 34, "echo": 18},
        {"name": "imu", "kind": "gyro", "acel_range": 4},
        {"name": "dial", "kind": "rotery"}]}))
    r = CliRunner().invoke(board.board, ["deploy", "--port", "p", "--config", str(cfgfile), "--dry-run"])
    assert r.exit_code == 1
    assert r.output.splitlines() == [
        "Error: %s: 4 problems with the sensors:" % cfgfile,
        "  GPIO 35 is used twice: pin of sensor 'air' and pin of sensor 'climate'",
        "  sensor 'dist': GPIO 34 is input only and cannot drive the trigger",
        "  sensor 'imu': the gyro driver has no parameter 'acel_range' (did you mean 'accel_range'?) (it takes: "
        + ", ".join(board.driver_params("gyro", ROOT)) + ")",
        "  sensor 'dial': no esp32 driver for kind 'rotery' (did you mean 'rotary'?) (there are: "
        + ", ".join(board.esp32_kinds(ROOT)) + ")"], r.output
    cfgfile.write_text(json.dumps({"name": "kitchen", "prot": 7000}))
    r = CliRunner().invoke(board.board, ["deploy", "--port", "p", "--config", str(cfgfile), "--dry-run"])
    assert r.exit_code == 1 and r.output.startswith(
        "Error: %s: unknown configuration key(s): prot (did you mean 'port'?)" % cfgfile), r.output


@pytest.mark.parametrize("name", ["../../x", "/tmp/sm/abs", "..", "a/b"])
def test_deploy_refuses_a_name_that_is_not_a_plain_file_name(tmp_path, monkeypatch, name):
    # the build folder is build/board/NAME: a name with a path in it would put it elsewhere
    monkeypatch.chdir(tmp_path)
    cfgfile = tmp_path / "device.json"
    cfgfile.write_text(json.dumps({"name": name}))
    r = CliRunner().invoke(board.board, ["deploy", "--port", "p", "--config", str(cfgfile), "--source",
                                         "--mpremote", "false"])
    assert r.exit_code == 1 and isinstance(r.exception, SystemExit), (r.output, r.exception)
    assert "is not a plain name" in r.output, r.output
    assert os.listdir(tmp_path) == ["device.json"]


def test_safe_names_pass():
    for name in ("kitchen", "esp-1", "lab_2.b", "A9"):
        assert board.safe_name(name), name
        assert board.device_config({"name": name}, ROOT)["name"] == name


def test_cli_registers_board_group():
    import click
    from sensormesh.cli import main
    board = main.get_command(click.Context(main), "board")
    assert "board" in main.list_commands(None) and "deploy" in board.commands


# -- the compiled bundle on the MicroPython unix port -----------------------------------

@pytest.mark.micropython
def test_compiled_bundle_imports_and_runs_drivers_on_micropython(tmp_path):
    mp = need_micropython()
    fs = board.build({"name": "b"}, str(tmp_path), ROOT)
    assert not [f for f in board.device_files(ROOT) if os.path.exists(os.path.join(fs, f))], "no .py in the bundle"
    script = tmp_path / "fs" / "check_bundle.py"
    script.write_text(
        "import sys\n"
        "import machine, fakeparts, dht\n"
        "assert hasattr(machine, 'fake_reset')\n"
        "from sensormesh.device.sensors import make\n"
        "kinds = ('temperature', 'hall', 'poti', 'gyro', 'dht11', 'ultrasonic', 'co2', 'touchpad', 'touch', 'rotary')\n"
        "machine.fake_i2c(0).attach(0x68, fakeparts.MPU6050())\n"
        "fakeparts.HCSR04(5, 18, echo_us=580)\n"
        "got = {}\n"
        "for k in kinds:\n"
        "    s = make({'kind': k, 'driver': 'esp32'})\n"
        "    got[k] = s.get()\n"
        "mods = [m for m in sys.modules if m.startswith('sensormesh')]\n"
        "for m in mods:\n"
        "    f = getattr(sys.modules[m], '__file__', '')\n"
        "    assert f.endswith('.mpy'), (m, f)\n"
        "print('modules', len(mods))\n"
        "import micropython\n"
        "micropython.qstr_info(1)\n"
        "print('values', got['ultrasonic'], got['poti']['raw'], got['dht11']['temperature'], got['dht11']['humidity'],\n"
        "      got['temperature'] > 50, got['co2'], got['touch'], got['rotary'], len(got['gyro']['accel']))\n")
    r = subprocess.run([mp, "-X", "heapsize=96K", "check_bundle.py"], cwd=fs, capture_output=True, text=True,
                       timeout=60, env=dict(os.environ, MICROPYPATH=":" + os.path.join(PKG, "fakehw")))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "values 10.0 0 21 45 True None False 0 3" in r.stdout, r.stdout
    n = int(r.stdout.split("modules ")[1].split()[0])
    assert n >= 12
    # the names the modules brought: their source names are parts of their module names (no
    # 'runtime/pipes.py' of their own)
    names = [line[2:-1] for line in r.stdout.splitlines() if line.startswith("Q(") and line.endswith(")")]
    assert "sensormesh.device.sensors.esp32.temperature" in names and "temperature" in names, names
    assert [x for x in names if x.endswith(".py") and x[0] != "/" and x != "check_bundle.py"] == [], names


@pytest.mark.micropython
def test_board_main_joins_wifi_and_serves_sensors_on_micropython(tmp_path):
    mp = need_micropython()
    port = free_port()
    cfg = {"name": "bench-board", "port": port, "host": "127.0.0.1", "restart_after_s": -1,
           "wifi": {"ssid": "lab", "password": "pw"},
           "sensors": [{"name": "chip", "kind": "temperature"}, {"name": "knob", "kind": "poti"},
                       {"name": "air", "kind": "co2", "pin": 4}, {"name": "pad", "kind": "touchpad"}]}
    fs = board.build(cfg, str(tmp_path), ROOT)
    boot = ("exec(open('boot.py').read())\n"
            "import machine, network\n"
            "machine.Pin(34).fake_analog(32768)\n"
            "network.fake_wlan.connect_after = 3\n"
            "exec(open('main.py').read())\n")
    (tmp_path / "fs" / "start.py").write_text(boot)
    # no heap cap here: this is the boot sequence; heap figures are benchmarks/bench_heap.py's job
    p = subprocess.Popen([mp, "start.py"], cwd=fs, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=dict(os.environ, MICROPYPATH=":" + os.path.join(PKG, "fakehw")))
    lines = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in p.stdout], daemon=True)
    reader.start()
    try:
        seen = []
        while not seen or "listening on" not in seen[-1]:
            try:
                seen.append(lines.get(timeout=20))
            except queue.Empty:
                raise AssertionError("board did not start: %r" % seen)
        assert seen[0] == "sensormesh: WiFi lab up, address 192.168.4.23\n", seen
        c = Client("127.0.0.1:%d" % port)
        try:
            c.request_data("knob", time_frame=0)
            msgs = c.messages()
            first = next(msgs)
            assert first == [{"raw": 32768, "fraction": 0.5}]
        finally:
            c.close()
        c = Client("127.0.0.1:%d" % port)
        try:
            c.request_data("chip")
            assert abs(next(c.messages())[0] - (128 - 32) / 1.8) < 1e-6
        finally:
            c.close()
    finally:
        p.terminate()
        p.wait(10)
        reader.join(10)
        p.stdout.close()
        p.stderr.close()


@pytest.mark.micropython
def test_board_deployed_with_keys_refuses_plaintext_and_serves_the_controller(tmp_path):
    """The keys `board deploy --keys` copies are the ones main.py's device uses: secure by default."""
    from sensormesh.controller.keys import KeyStore
    mp = need_micropython()
    store = KeyStore(str(tmp_path / "store"))
    store.init()
    store.issue("keyed-board", "device")
    store.export("keyed-board", str(tmp_path / "export"))
    port = free_port()
    cfg = {"name": "keyed-board", "port": port, "host": "127.0.0.1", "restart_after_s": -1,
           "sensors": [{"name": "chip", "kind": "temperature"}]}
    fs = board.build(cfg, str(tmp_path / "b"), ROOT, compile=False, keys_dir=str(tmp_path / "export"))
    (tmp_path / "b" / "fs" / "start.py").write_text("exec(open('boot.py').read())\nexec(open('main.py').read())\n")
    p = subprocess.Popen([mp, "start.py"], cwd=fs, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         env=dict(os.environ, MICROPYPATH=":" + os.path.join(PKG, "fakehw")))
    lines = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in p.stdout], daemon=True)
    reader.start()
    try:
        seen = []
        while not seen or "listening on" not in seen[-1]:
            try:
                seen.append(lines.get(timeout=30))
            except queue.Empty:
                raise AssertionError("board did not start: %r" % seen)
        keyed_client(port, str(tmp_path / "store"), "keyed-board").close()
    finally:
        p.terminate()
        p.wait(10)
        reader.join(10)
        p.stdout.close()


@pytest.mark.micropython
def test_board_main_reports_a_bad_sensor_on_micropython(tmp_path):
    mp = need_micropython()
    cfg = {"name": "broken", "port": free_port(), "restart_after_s": -1,
           "sensors": [{"name": "imu", "kind": "gyro"}]}         # no MPU-6050 on the bus
    fs = board.build(cfg, str(tmp_path), ROOT)
    r = subprocess.run([mp, "-c", "exec(open('main.py').read())"], cwd=fs, capture_output=True, text=True,
                       timeout=60, env=dict(os.environ, MICROPYPATH=":" + os.path.join(PKG, "fakehw")))
    assert "sensormesh: device failed: SensorError" in r.stdout, r.stdout + r.stderr
    assert "no MPU-6050 answers at I2C address 0x68" in r.stdout
