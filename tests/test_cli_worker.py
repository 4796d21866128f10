"""The worker and client commands as a user runs them."""
import json
import os
import subprocess
import sys
import time

import pytest

from procs import ROOT, free_port

INTERPS = ["cpython", "micropython"]


def run_client(*args, timeout=60):
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, "-m", "sensormesh.cli", "client"] + list(args), cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("interp", INTERPS)
def test_client_prints_json_lines_and_stops_after_count(devices, port, interp):
    devices(interp, ["--port", str(port), "--sensors", "dht11@20,gyro"])
    r = run_client("127.0.0.1:%d" % port, "--sensor", "dht11", "--time-frame", "100", "--count", "3")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 3
    for ln in lines:
        frame = json.loads(ln)
        assert isinstance(frame, list) and frame and set(frame[0]) == {"temperature", "humidity"}


@pytest.mark.parametrize("interp", INTERPS)
def test_client_reports_device_error_with_status_1(devices, port, interp):
    devices(interp, ["--port", str(port), "--sensors", "dht11"])
    r = run_client("127.0.0.1:%d" % port, "--sensor", "radar")
    assert r.returncode == 1
    assert "unknown sensor 'radar'" in r.stderr and "dht11" in r.stderr


def test_worker_rejects_unknown_sensor_kind(port):
    r = subprocess.run([sys.executable, "-m", "sensormesh.cli", "worker", "--port", str(port), "--sensors", "lava"],
                       cwd=ROOT, capture_output=True, text=True, timeout=60, env=dict(os.environ, PYTHONPATH=ROOT))
    assert r.returncode != 0
    assert "unknown simulated sensor 'lava'" in r.stderr


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.parametrize("interp", INTERPS)
def test_idle_worker_does_not_busy_poll(devices, port, interp):
    p = devices(interp, ["--port", str(port)])
    pid = p.p.pid
    c0, t0 = cpu_seconds(pid), time.monotonic()
    time.sleep(2.0)  # a measurement window, not synchronisation
    used = (cpu_seconds(pid) - c0) / (time.monotonic() - t0)
    assert used < 0.02, "idle worker used %.1f%% of a core" % (used * 100)


def test_client_fails_when_the_device_closes_before_count(port):
    """A device that ends the stream early: the client says so and exits 1 (not 0 with less)."""
    import socket
    import struct
    import threading

    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port))
    srv.listen(1)
    srv.settimeout(30)

    def serve():
        conn, _ = srv.accept()
        with conn:
            conn.settimeout(30)
            conn.recv(4096)                          # the data request
            for v in (1, 2):
                body = json.dumps([{"t": v}]).encode()
                conn.sendall(struct.pack(">I", len(body)) + body)
    t = threading.Thread(target=serve)
    t.start()
    try:
        r = run_client("127.0.0.1:%d" % port, "--sensor", "t", "--count", "5")
    finally:
        t.join(30)
        srv.close()
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert len(r.stdout.strip().splitlines()) == 2
    assert "127.0.0.1:%d closed the stream after 2 of 5 data messages" % port in r.stderr


def test_worker_listens_on_loopback_by_default(port):
    from procs import Proc
    p = Proc([sys.executable, "-m", "sensormesh.cli", "worker", "--port", str(port), "--sensors", "dht11"])
    try:
        line = p.wait_line("listening on")
    finally:
        p.stop()
    assert "tcp 127.0.0.1:%d" % port in line, line


# -- bad input on the command line: a clear error line, a non-zero exit, no traceback ----------

def run_cli(*args, timeout=60):
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, "-m", "sensormesh.cli"] + list(args), cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def refused(r, *words):
    assert r.returncode != 0, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    for w in words:
        assert w in r.stderr, (w, r.stderr)


@pytest.mark.parametrize("address, words", [
    ("nohostport", "bad address 'nohostport': expected HOST:PORT"),
    ("127.0.0.1:99999", "bad address '127.0.0.1:99999'"),
    ("127.0.0.1:-1", "bad address '127.0.0.1:-1'"),
    ("127.0.0.1:0", "a device's port is 1..65535"),
])
def test_client_refuses_a_bad_address(address, words):
    r = run_client(address, "--sensor", "dht11", "--timeout", "2")
    refused(r, "Invalid value for 'ADDRESS'", words)


@pytest.mark.parametrize("option, value", [
    ("--timeout", "-1"), ("--timeout", "0"), ("--timeout", "nan"), ("--timeout", "inf"), ("--timeout", "1e300"),
    ("--count", "-1"), ("--time-frame", "-5"), ("--values-per-time-frame", "-1"),
])
def test_client_refuses_bad_numbers_before_connecting(option, value, port):
    # nothing listens on port: an option that got through would end in a connection error instead
    r = run_client("127.0.0.1:%d" % port, "--sensor", "dht11", option, value)
    refused(r, "Invalid value for '%s'" % option)
    assert r.returncode == 2 and "connect" not in r.stderr, r.stderr


@pytest.mark.parametrize("args, words", [
    (["--port", "99999"], "Invalid value for '--port'"),
    (["--port", "-1"], "Invalid value for '--port'"),
    (["--max-conns", "-1"], "Invalid value for '--max-conns'"),
    (["--max-conns", "0"], "Invalid value for '--max-conns'"),
    (["--max-handshakes", "0"], "Invalid value for '--max-handshakes'"),
    (["--handshake-timeout", "-5"], "Invalid value for '--handshake-timeout'"),
])
def test_worker_refuses_out_of_range_port_and_max_conns(args, words):
    r = run_cli("worker", "--sensors", "dht11", *args, timeout=30)
    refused(r, words)
    assert "listening" not in r.stdout, r.stdout


@pytest.mark.parametrize("text, words", [
    ("{bad json", "not valid JSON"),
    ("[1]", "a device configuration is a JSON object, not an array"),
    ('{"sensors": 5}', '"sensors" must be an array of sensor specs'),
    ('{"sensors": [5]}', "sensor 1: a sensor spec is a"),
    ('{"unix": 5}', '"unix" must be a string, not an integer'),
    ('{"register": [1]}', '"register" must be a string, not an array'),
    ('{"max_conns": 0}', '"max_conns" must be at least 1'),
    ('{"port": "x"}', '"port" must be an integer, not a string'),
    ('{"port": 70000}', '"port" must be a TCP port, 0..65535, not 70000'),
    ('{"prot": 7001, "sensors": ["dht11"]}', 'unknown key "prot" (did you mean "port"?); known: controller,'),
    ('{"nmae": "x", "hots": "0.0.0.0"}', 'unknown keys "hots" (did you mean "host"?), "nmae" (did you mean "name"?)'),
    # the sensors' problems name the file too (before: "sensor configuration: ...")
    ('{"sensors": [{"kind": "temperature", "seed": "x"}]}', "sensor 'temperature': seed must be a whole number"),
    ('{"sensors": ["dht11@-5"]}', "sensor 'dht11': rate must be a number of samples per second, 0 or more"),
    ('{"sensors": ["lava"]}', "unknown simulated sensor 'lava'"),
])
def test_worker_names_what_is_wrong_with_its_config_file(tmp_path, text, words):
    cfg = tmp_path / "dev.json"
    cfg.write_text(text)
    r = run_cli("worker", "--port", "0", "--config", str(cfg), timeout=30)
    refused(r, "Error: %s: " % cfg, words)
    assert r.returncode == 1 and "listening" not in r.stdout, r.stdout


def test_a_worker_on_port_0_is_named_after_the_port_it_got(devices):
    # before: every worker started with --port 0 was named worker-0
    p = devices("cpython", ["--port", "0", "--sensors", "counter"])
    line = p.wait_line("listening on")
    port = int(line.rsplit(":", 1)[1].split()[0])
    assert ("worker-%d listening on tcp 127.0.0.1:%d " % (port, port)) in line, line


def test_worker_listens_where_its_config_file_says_unless_an_option_overrides(devices, tmp_path):
    """The file's "port" and "host" are used (before: always 7000 on 127.0.0.1); --port wins."""
    from procs import free_port
    port, other = free_port(), free_port()
    cfg = tmp_path / "dev.json"
    cfg.write_text(json.dumps({"name": "cfgdev", "port": port, "host": "127.0.0.1", "sensors": ["counter"]}))
    p = devices("cpython", ["--config", str(cfg)])
    assert "cfgdev listening on tcp 127.0.0.1:%d " % port in p.wait_line("listening on"), p
    r = run_client("127.0.0.1:%d" % port, "--sensor", "counter", "--count", "1")
    assert r.returncode == 0, r.stderr
    q = devices("cpython", ["--config", str(cfg), "--port", str(other)])
    assert "listening on tcp 127.0.0.1:%d " % other in q.wait_line("listening on")


def test_client_names_the_field_an_identity_file_lacks(tmp_path, port):
    ident = tmp_path / "badid.json"
    ident.write_text(json.dumps({"role": "reader", "secret": "11" * 32}))
    (tmp_path / "trust.json").write_text(json.dumps({"keys": {}}))
    r = run_client("127.0.0.1:%d" % port, "--sensor", "dht11", "--identity", str(ident), "--device", "d")
    refused(r, "cannot load the identity %s: it has no 'name'" % ident)
    ident.write_text("[1]")
    r = run_client("127.0.0.1:%d" % port, "--sensor", "dht11", "--identity", str(ident), "--device", "d")
    refused(r, "cannot load the identity %s: it is not a JSON object" % ident)


@pytest.mark.parametrize("interp", INTERPS)
def test_a_data_request_with_an_infinite_number_gets_a_bad_field_reply(devices, port, interp):
    """1e400 is valid JSON and reads as infinity: the device answers bad-field (before: no reply)."""
    import socket
    import struct
    devices(interp, ["--port", str(port), "--sensors", "counter"])
    for field in ("time-frame", "values-per-time-frame", "max-frame"):
        body = b'{"data-request":{"sensor":"counter","%s":1e400}}' % field.encode()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(struct.pack(">I", len(body)) + body)
            data = b""
            while len(data) < 4 or len(data) < 4 + struct.unpack(">I", data[:4])[0]:
                chunk = s.recv(4096)
                assert chunk, "closed without a reply: %r" % data
                data += chunk
        err = json.loads(data[4:4 + struct.unpack(">I", data[:4])[0]])["error"]
        assert err["code"] == "bad-field" and field in err["message"], err


@pytest.mark.parametrize("interp", INTERPS)
def test_device_entry_point_refuses_a_port_or_max_conns_out_of_range(interp):
    from procs import need_micropython
    exe = need_micropython() if interp == "micropython" else sys.executable
    env = dict(os.environ, PYTHONPATH=ROOT, MICROPYPATH=ROOT + os.pathsep + ".frozen")
    for args, words in ((["--port", "99999"], "port 99999: a TCP port is 0..65535"),
                        (["--port", "0", "--max-conns", "0"], "max_conns 0: at least 1")):
        r = subprocess.run([exe, "-m", "sensormesh.device"] + args, cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=30)
        out = r.stdout + r.stderr
        assert r.returncode == 2 and words in out and "Traceback" not in out, out
        assert "listening" not in out, out


@pytest.mark.parametrize("interp", INTERPS)
def test_device_entry_point_names_what_is_wrong_with_its_config_file(interp, tmp_path):
    """python/micropython -m sensormesh.device --config FILE: the file and the field, exit 2."""
    from procs import need_micropython
    exe = need_micropython() if interp == "micropython" else sys.executable
    env = dict(os.environ, PYTHONPATH=ROOT, MICROPYPATH=ROOT + os.pathsep + ".frozen")
    cfg = tmp_path / "dev.json"
    for text, words in (("{bad json", "not valid JSON"), ("[1]", "not a JSON object"),
                        ('{"sensors": 5}', "sensors must be a list of sensor specs, not 5"),
                        ('{"port": "x"}', 'port must be a whole number, not "x"'),
                        ('{"port": 0, "name": 7}', "name must be a string, not 7")):
        cfg.write_text(text)
        r = subprocess.run([exe, "-m", "sensormesh.device", "--config", str(cfg)], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=30)
        out = r.stdout + r.stderr
        assert r.returncode == 2 and "configuration error: %s: %s" % (cfg, words) in out, (text, out)
        assert "Traceback" not in out and "listening" not in out, out


@pytest.mark.parametrize("interp", INTERPS)
def test_device_entry_point_listens_on_loopback_on_cpython_and_everywhere_on_micropython(interp, port):
    from procs import Proc, need_micropython
    exe = need_micropython() if interp == "micropython" else sys.executable
    p = Proc([exe, "-m", "sensormesh.device", "--port", str(port), "--sensors", "dht11"],
             env={"MICROPYPATH": ROOT + os.pathsep + ".frozen"})
    try:
        line = p.wait_line("listening on")
    finally:
        p.stop()
    host = "0.0.0.0" if interp == "micropython" else "127.0.0.1"
    assert "tcp %s:%d" % (host, port) in line, line


# -- what `sensormesh worker` loads -------------------------------------------------------------

def test_worker_loads_the_device_package_and_not_the_controller(port, tmp_path):
    """`sensormesh worker` costs what a device costs: the controller's commands (and with them
    scipy, numpy and networkx) load only when one of them runs."""
    import select
    imports = tmp_path / "imports.txt"
    env = dict(os.environ, PYTHONPATH=ROOT, PYTHONUNBUFFERED="1")
    with open(imports, "w") as err:
        p = subprocess.Popen([sys.executable, "-X", "importtime", "-m", "sensormesh.cli", "worker", "--port",
                              str(port), "--sensors", "counter", "--insecure"],
                             cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=err, text=True)
    try:
        out, deadline = "", time.monotonic() + 30
        while "listening on" not in out:
            left = deadline - time.monotonic()
            assert left > 0 and select.select([p.stdout], [], [], left)[0], "no start line: %r" % out
            line = p.stdout.readline()
            assert line, "the worker exited: %r" % out
            out += line
        with open("/proc/%d/status" % p.pid) as f:
            rss = [int(ln.split()[1]) for ln in f if ln.startswith("VmRSS:")][0]
    finally:
        p.terminate()
        p.wait(10)
        p.stdout.close()
    mods = set(ln.rsplit("|", 1)[1].strip() for ln in imports.read_text().splitlines()
               if ln.startswith("import time:") and "|" in ln)
    assert "sensormesh.device.core" in mods, sorted(mods)
    heavy = sorted(m for m in mods if m.split(".")[0] in ("scipy", "numpy", "networkx", "yaml")
                   or m.startswith("sensormesh.controller"))
    assert not heavy, "sensormesh worker imported %s" % heavy[:10]
    assert rss < 40 * 1024, "sensormesh worker holds %d kB resident" % rss


@pytest.mark.parametrize("module", ["raise KeyboardInterrupt\n",
                                    "import click\n@click.command()\n@click.argument('f')\n"
                                    "def plan(f):\n    raise KeyboardInterrupt\n"])
def test_ctrl_c_while_a_command_loads_ends_without_a_traceback(tmp_path, module):
    """A Ctrl-C while a controller command's modules load (they take a second or two), or while
    it reads its file and checks its options before handling Ctrl-C itself, ends as an
    interrupted command does: "Aborted!", exit status 130 (as `experiment` documents for a
    Ctrl-C; 1 would read as a failure), no traceback."""
    (tmp_path / "slow_cli.py").write_text(module)
    code = ("import sensormesh.cli as c; c.LAZY_COMMANDS['plan'] = ('slow_cli', 'plan'); "
            "c.main(['plan', 'x.yaml'], prog_name='sensormesh')")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, str(tmp_path)]))
    r = subprocess.run([sys.executable, "-c", code], cwd=str(tmp_path), env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 130, (r.stdout, r.stderr)
    assert "Aborted!" in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_worker_names_the_address_it_cannot_listen_on(tmp_path):
    import socket
    env = dict(os.environ, PYTHONPATH=ROOT)

    def worker(*args):
        return subprocess.run([sys.executable, "-m", "sensormesh.cli", "worker", "--sensors", "dht11"] + list(args),
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    try:
        port = taken.getsockname()[1]
        r = worker("--port", str(port))
        assert r.returncode == 1
        assert r.stderr.strip() == ("Error: cannot start: 127.0.0.1:%d is in use: another device or program "
                                    "listens there (give another --port)" % port), r.stderr
    finally:
        taken.close()
    r = worker("--port", "0", "--unix", str(tmp_path / "no-such-folder" / "w.sock"))
    assert r.returncode == 1
    assert "cannot listen on unix:%s: no such file or directory (--unix)" % (tmp_path / "no-such-folder" / "w.sock") \
        in r.stderr, r.stderr


def test_client_refuses_trust_or_device_without_identity(tmp_path, port):
    trust = tmp_path / "trust.json"
    trust.write_text("{}")
    r = run_client("127.0.0.1:%d" % port, "--sensor", "dht11", "--device", "d")
    assert r.returncode == 2 and "--device works only with --identity" in r.stderr, r.stderr
    r = run_client("127.0.0.1:%d" % port, "--sensor", "dht11", "--trust", str(trust), "--device", "d")
    assert r.returncode == 2 and "--trust and --device work only with --identity" in r.stderr, r.stderr
    assert "cannot connect" not in r.stderr


@pytest.mark.parametrize("interp", ["cpython", "micropython"])
def test_device_entry_point_names_the_address_it_cannot_listen_on(tmp_path, interp):
    # `python|micropython -m sensormesh.device` said only "[Errno 98] Address already in use"
    import socket
    if interp == "micropython":
        from procs import need_micropython
        exe = [need_micropython()]
    else:
        exe = [sys.executable]
    env = dict(os.environ, PYTHONPATH=ROOT)

    def device(*args):
        return subprocess.run(exe + ["-m", "sensormesh.device", "--host", "127.0.0.1", "--sensors", "dht11"]
                              + list(args), cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    try:
        port = taken.getsockname()[1]
        r = device("--port", str(port))
        assert r.returncode == 1, (r.stdout, r.stderr)
        assert r.stderr.strip() == ("[device] cannot start: 127.0.0.1:%d is in use: another device or program "
                                    "listens there (give another --port)" % port), r.stderr
    finally:
        taken.close()
    path = tmp_path / "no-such-folder" / "d.sock"
    r = device("--port", "0", "--unix", str(path))
    assert r.returncode == 1 and "cannot start: cannot listen on unix:%s (--unix): " % path in r.stderr, r.stderr


def test_client_at_a_wrong_port_says_what_it_found(tmp_path):
    # nothing listening, or something that is no sensormesh device: said in words
    import socket
    import threading
    r = run_client("127.0.0.1:%d" % free_port(), "--sensor", "dht11", "--count", "1", "--timeout", "5")
    assert r.returncode == 1 and "nothing listens there (is the device running, on this port?)" in r.stderr, r.stderr
    r = run_client("unix:%s" % (tmp_path / "none.sock"), "--sensor", "dht11", "--count", "1", "--timeout", "5")
    assert r.returncode == 1 and "no such socket" in r.stderr, r.stderr
    other = socket.socket()
    other.bind(("127.0.0.1", 0))
    other.listen(1)

    def answer_and_close():     # a program that is not a device: reads the request, closes
        c, _ = other.accept()
        c.recv(1000)
        c.close()
    t = threading.Thread(target=answer_and_close)
    t.start()
    try:
        r = run_client("127.0.0.1:%d" % other.getsockname()[1], "--sensor", "dht11", "--count", "1", "--timeout", "5")
    finally:
        t.join(10)
        other.close()
    assert r.returncode == 1 and "closed the connection without a word: is it a sensormesh device" in r.stderr, \
        r.stderr
