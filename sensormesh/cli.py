# The `sensormesh` command (CPython). Device commands are thin wrappers around the device-side
# modules; controller commands live in sensormesh/controller and are registered here.
import json
import os
import sys

import click

from sensormesh.device import codec


# The controller's commands, loaded when one of them runs (or `--help` lists them): `sensormesh
# worker` and `client` then import click and the device package only, not the controller with
# its libraries (scipy, numpy, networkx: some 80 MB more per process, and seconds to start).
LAZY_COMMANDS = {
    "plan": ("sensormesh.controller.plan_cli", "plan"),
    "deploy": ("sensormesh.controller.deploy_cli", "deploy"),
    "status": ("sensormesh.controller.deploy_cli", "status"),
    "stop": ("sensormesh.controller.deploy_cli", "stop"),
    "up": ("sensormesh.controller.deploy_cli", "up"),
    "top": ("sensormesh.controller.observe.cli", "top"),
    "experiment": ("sensormesh.controller.experiment.cli", "experiment"),
    "keys": ("sensormesh.controller.keys_cli", "keys"),
    "board": ("sensormesh.board", "board"),
}


class _Commands(click.Group):
    """A group whose controller commands are imported on first use (LAZY_COMMANDS). A Ctrl-C
    that no command handles itself (one while a command loads, reads its file or checks its
    options) ends with "Aborted!" and exit status 130 (128 + SIGINT, as a shell reports it and
    as `experiment` and `up` exit after a Ctrl-C they handle), not in a traceback, and not with
    status 1, which means a failure."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            click.echo("\nAborted!", err=True)
            sys.exit(130)

    def list_commands(self, ctx):
        return sorted(set(self.commands) | set(LAZY_COMMANDS))

    def get_command(self, ctx, name):
        cmd = self.commands.get(name)
        if cmd is not None or name not in LAZY_COMMANDS:
            return cmd
        import importlib
        modname, attr = LAZY_COMMANDS[name]
        try:
            mod = importlib.import_module(modname)
        except ModuleNotFoundError as e:
            if e.name != modname:
                raise
            return None
        cmd = getattr(mod, attr, None)
        if cmd is not None:
            self.add_command(cmd, name)
        return cmd


@click.group(cls=_Commands)
@click.version_option(package_name="sensormesh")
def main():
    """sensormesh: decentralized processing of continuous sensor data."""


# Option checks: a bad value is refused when the options are read, with a message that names
# the option and says what it takes (click's usage error, exit status 2).
PORT = click.IntRange(0, 65535)
TIMEOUT_MAX = 365 * 24 * 3600     # a socket timeout beyond a few hundred years overflows


def _timeout(ctx, param, value):
    if not 0 < value <= TIMEOUT_MAX:      # (false for NaN too)
        raise click.BadParameter("%s: the seconds to wait must be more than 0 and at most %d (a year)"
                                 % (value, TIMEOUT_MAX))
    return value


def _device_address(ctx, param, value):
    from sensormesh.device.transport import parse_address
    try:
        addr = parse_address(value)
    except ValueError as e:
        raise click.BadParameter(str(e))
    if addr[0] == "tcp" and addr[2] == 0:
        raise click.BadParameter("bad address %r: a device's port is 1..65535" % value)
    return value


# What a worker's configuration file may hold, by key: the JSON types its value may have.
_WORKER_KEY_TYPES = {"name": (str,), "port": (int,), "host": (str,), "unix": (str,), "register": (str,),
                     "identity": (str, dict), "trust": (str, dict), "revoked": (str, dict, list),
                     "max_conns": (int,), "max_handshakes": (int,), "handshake_ms": (int,),
                     "insecure": (bool,), "metrics": (bool,), "exit_with_stdin": (bool,)}
_JSON_TYPE = {str: "a string", int: "an integer", float: "a number", bool: "a boolean", dict: "an object",
              list: "an array", type(None): "null"}


def _json_type(v):
    return _JSON_TYPE.get(type(v), type(v).__name__)


def worker_config(path):
    """The worker's configuration file `path`, read and checked: a JSON object whose known keys
    have values of the right type. Raises click.ClickException ("PATH: what is wrong")."""
    from sensormesh.board import BoardError, load_config
    try:
        cfg = load_config(path)
    except BoardError as e:
        raise click.ClickException(str(e))
    if not isinstance(cfg, dict):
        raise click.ClickException("%s: a device configuration is a JSON object, not %s" % (path, _json_type(cfg)))
    from sensormesh.board import CONFIG_KEYS       # a board's configuration runs on a worker too
    known = sorted(set(_WORKER_KEY_TYPES) | set(CONFIG_KEYS) | {"revoked"})
    unknown = sorted(k for k in cfg if k not in known)
    if unknown:
        import difflib

        def named(k):
            close = difflib.get_close_matches(k, known, n=1)
            return "\"%s\"%s" % (k, " (did you mean \"%s\"?)" % close[0] if close else "")
        raise click.ClickException("%s: unknown key%s %s; known: %s" % (
            path, "s" if len(unknown) > 1 else "", ", ".join(named(k) for k in unknown), ", ".join(known)))
    for key, types in _WORKER_KEY_TYPES.items():
        v = cfg.get(key)
        if v is not None and type(v) not in types:
            raise click.ClickException("%s: \"%s\" must be %s, not %s" % (
                path, key, " or ".join(_JSON_TYPE[t] for t in types), _json_type(v)))
    if cfg.get("port") is not None and not 0 <= cfg["port"] <= 65535:
        raise click.ClickException("%s: \"port\" must be a TCP port, 0..65535, not %d" % (path, cfg["port"]))
    if "max_conns" in cfg and cfg["max_conns"] is not None and cfg["max_conns"] < 1:
        raise click.ClickException("%s: \"max_conns\" must be at least 1, not %d" % (path, cfg["max_conns"]))
    sensors = cfg.get("sensors")
    if sensors is not None:
        if type(sensors) is not list:
            raise click.ClickException("%s: \"sensors\" must be an array of sensor specs (\"KIND@HZ\" strings or "
                                       "objects with a \"kind\"), not %s" % (path, _json_type(sensors)))
        for i, spec in enumerate(sensors):
            if type(spec) not in (str, dict):
                raise click.ClickException("%s: sensor %d: a sensor spec is a \"KIND@HZ\" string or an object "
                                           "with a \"kind\", not %s" % (path, i + 1, _json_type(spec)))
    return cfg


def _start_error(e, cfg):
    """Words for an OSError that stopped a worker from starting: a listening address that is
    taken or not this machine's is named, with what to do."""
    import errno
    where = "%s:%s" % (cfg.get("host") or "127.0.0.1", cfg.get("port"))
    unix = cfg.get("unix")
    if e.errno == errno.EADDRINUSE:
        if unix:
            return ("%s or unix:%s is in use: another device or program listens there (give another --port "
                    "or --unix)" % (where, unix))
        return "%s is in use: another device or program listens there (give another --port)" % where
    if unix and not getattr(e, "filename", None) and e.errno in (errno.ENOENT, errno.ENOTDIR, errno.EACCES):
        return "cannot listen on unix:%s: %s (--unix)" % (unix, os.strerror(e.errno).lower())
    if e.errno == errno.EADDRNOTAVAIL:
        return "cannot listen on %s: %s is not an address of this machine (--host)" % (where, cfg.get("host"))
    if e.errno == errno.EACCES and not getattr(e, "filename", None):
        return "cannot listen on %s: permission denied (ports below 1024 need root)" % where
    return e


@main.command()
@click.option("--port", type=PORT, default=None,
              help="TCP port to listen on (0 = any free port)  [default: the --config file's \"port\", else 7000]")
@click.option("--host", default=None,
              help="Address to listen on; 0.0.0.0 for every interface (other machines then reach the device: "
                   "give it keys, see docs/security.md)  [default: the --config file's \"host\", else 127.0.0.1]")
@click.option("--unix", "unix_path", default=None, help="Also listen on this Unix socket path.")
@click.option("--name", default=None, help="Device name (default: worker-PORT).")
@click.option("--sensors", default=None,
              help="Comma-separated sensors: KIND, KIND@HZ, NAME=KIND@HZ or NAME=csv:PATH (default: all simulated).")
@click.option("--config", "config_path", default=None, type=click.Path(exists=True, dir_okay=False),
              help="Device configuration JSON (name, sensors, port, ...); options override it.")
@click.option("--max-conns", type=click.IntRange(min=1), default=None, help="Connections accepted at once.")
@click.option("--identity", "identity", default=None, type=click.Path(exists=True, dir_okay=False),
              help="This device's identity.json (sensormesh keys export): require authenticated, encrypted "
                   "sessions. The device is named after it.")
@click.option("--trust", default=None, type=click.Path(exists=True, dir_okay=False),
              help="The trust store (trust.json) with the keys this device accepts; re-read when it changes.")
@click.option("--revoked", default=None, type=click.Path(dir_okay=False),
              help="Optional extra list of revoked keys (JSON); re-read when it changes.")
@click.option("--max-handshakes", type=click.IntRange(min=1), default=None, help="Handshakes in progress at once (with keys).")
@click.option("--handshake-timeout", type=click.IntRange(min=1), default=None, help="ms a new connection has to complete its hello.")
@click.option("--insecure", is_flag=True,
              help="Accept unauthenticated plaintext connections even if keys are configured. Anyone who "
                   "reaches the device may then read it and deploy code to it.")
@click.option("--register", default=None, metavar="HOST:PORT", callback=lambda ctx, param, v: v and _device_address(
    ctx, param, v), help="Also dial out to this controller (its --listen) or gateway and keep the connection "
                         "open to be controlled over it: for a device the controller cannot dial.")
def worker(port, host, unix_path, name, sensors, config_path, max_conns, identity, trust, revoked,
           max_handshakes, handshake_timeout, insecure, register):
    """Start a device (the test server of the original design) with simulated or configured sensors.

    With --identity and --trust (or "identity"/"trust" in the config) the device accepts only
    authenticated, encrypted sessions (docs/security.md)."""
    from sensormesh.device import core as device
    from sensormesh.device.sensors import SensorError
    cfg = {}
    if config_path:
        cfg = worker_config(config_path)
    # an option overrides the file, the file the defaults
    if port is None:
        port = cfg.get("port") if cfg.get("port") is not None else 7000
    cfg["port"] = port
    cfg["host"] = host or cfg.get("host") or "127.0.0.1"
    if unix_path:
        cfg["unix"] = unix_path
    if name:
        cfg["name"] = name
    for k, v in (("identity", identity), ("trust", trust), ("revoked", revoked), ("register", register),
                 ("max_handshakes", max_handshakes), ("handshake_ms", handshake_timeout)):
        if v is not None:
            cfg[k] = v
    if insecure:
        cfg["insecure"] = True
    if cfg.get("identity") is None or cfg.get("insecure"):
        cfg.setdefault("name", "worker-%d" % port if port else "worker")   # (port 0: the one it gets)
    if sensors is not None:
        cfg["sensors"] = [s.strip() for s in sensors.split(",") if s.strip()]
    if max_conns:
        cfg["max_conns"] = max_conns
    try:
        dev = device.start(cfg)
    except SensorError as e:
        if config_path and sensors is None:     # the file's sensors: the file is named
            raise click.ClickException("%s: %s" % (config_path, e))
        raise click.ClickException("sensor configuration: %s" % e)
    except ValueError as e:
        raise click.ClickException("configuration: %s" % e)
    except OSError as e:     # the address is taken, a key file cannot be read...
        raise click.ClickException("cannot start: %s" % _start_error(e, cfg))

    from sensormesh.device.options import stop_on_signals
    stop_on_signals()      # SIGTERM, Ctrl-C: the loop stops between two steps, never in one
    try:
        dev.run()
    except KeyboardInterrupt:
        pass
    dev.log("stopped")


def _connect_error(e):
    """Words for an OSError a client's connection failed with: nothing listening is said so."""
    import errno
    if e.errno == errno.ECONNREFUSED:
        return "nothing listens there (is the device running, on this port?)"
    if e.errno in (errno.ENOENT, errno.ENOTDIR):
        return "no such socket (is the device running, listening on this path?)"
    return e


def _credentials(identity, trust):
    """session.load_credentials(identity, trust), or a ClickException that says what is wrong
    with which file: unreadable, not JSON, not an object, a field missing."""
    from sensormesh.device.secure import handshake as session
    try:
        return session.load_credentials(identity, trust)
    except (OSError, ValueError) as e:
        raise click.ClickException("cannot load the identity %s: %s" % (identity, e))
    except (KeyError, TypeError, AttributeError) as e:
        # a file that is JSON but not what `sensormesh keys export` writes: find which one
        id_file = identity if identity.endswith(".json") else os.path.join(identity, "identity.json")
        trust_file = trust or os.path.join(os.path.dirname(id_file) or ".", "trust.json")
        field = e.args[0] if isinstance(e, KeyError) else None
        for path, what, fields in ((id_file, "identity", ("name", "role", "secret")), (trust_file, "trust store", ())):
            try:
                with open(path) as f:
                    obj = json.load(f)
            except (OSError, ValueError):
                continue
            if not isinstance(obj, dict):
                raise click.ClickException("cannot load the %s %s: it is not a JSON object" % (what, path))
            missing = [k for k in fields if k not in obj]
            if missing:
                raise click.ClickException("cannot load the identity %s: it has no %s" % (
                    path, " and no ".join(repr(k) for k in missing)))
        if field is not None:
            raise click.ClickException("cannot load the trust store %s: a key in it has no %r" % (trust_file, field))
        raise click.ClickException("cannot load the identity %s: %s" % (identity, e))


@main.command()
@click.argument("address", callback=_device_address)
@click.option("--sensor", required=True, help="Sensor name on the device.")
@click.option("--time-frame", type=click.IntRange(min=0), default=0, show_default=True, help="ms per frame; 0 = every value on its own.")
@click.option("--values-per-time-frame", type=click.IntRange(min=0), default=0, show_default=True,
              help="Evenly spaced values per frame; 0 = as many as the sensor gives.")
@click.option("--count", type=click.IntRange(min=0), default=0, help="Stop after this many data messages (0 = until the device closes).")
@click.option("--timeout", type=float, default=30.0, show_default=True, callback=_timeout, help="Seconds to wait for the device.")
@click.option("--identity", default=None, type=click.Path(exists=True),
              help="Connect with this identity: a directory from `sensormesh keys export` or an identity.json "
                   "(trust.json is taken from next to it unless --trust is given).")
@click.option("--trust", default=None, type=click.Path(exists=True, dir_okay=False), help="Trust store (trust.json).")
@click.option("--device", "device_name", default=None,
              help="The device's name (its key in the trust store); needed with --identity.")
def client(address, sensor, time_frame, values_per_time_frame, count, timeout, identity, trust, device_name):
    """Request a sensor stream from a device (HOST:PORT or unix:PATH) and print it as JSON lines."""
    from sensormesh.client import Client, DeviceError
    creds = None
    if not identity and (trust or device_name):
        given = [o for o, v in (("--trust", trust), ("--device", device_name)) if v]
        raise click.UsageError("%s work%s only with --identity (the identity to connect with); without it "
                               "the client connects in plaintext" % (" and ".join(given), "" if len(given) > 1 else "s"))
    if identity:
        if not device_name:
            raise click.UsageError("--identity needs --device NAME: the name of the device to authenticate")
        creds = _credentials(identity, trust)
    try:
        c = Client(address, timeout=timeout, identity=creds, server=device_name)
    except DeviceError as e:
        raise click.ClickException("handshake with %s refused: %s" % (address, e))
    except OSError as e:
        raise click.ClickException("cannot connect to %s: %s" % (address, _connect_error(e)))
    req = {"sensor": sensor}
    if time_frame:
        req["time-frame"] = time_frame
    if values_per_time_frame:
        req["values-per-time-frame"] = values_per_time_frame
    req["max-frame"] = codec.DEFAULT_MAX_FRAME
    n = 0
    answered = False
    try:
        c.send({"data-request": req})
        for msg in c.messages():
            answered = True
            if type(msg) is dict:
                click.echo(json.dumps(msg), err=True)
                continue
            sys.stdout.write(json.dumps(msg, separators=(",", ":")) + "\n")
            sys.stdout.flush()
            n += 1
            if count and n >= count:
                break
        else:
            if not answered:
                click.echo("error: %s closed the connection without a word: is it a sensormesh device "
                           "(the right port)? A board with no memory free for a connection also "
                           "closes it so; try again later" % address, err=True)
                sys.exit(1)
            if count:
                click.echo("error: %s closed the stream after %d of %d data message%s" % (
                    address, n, count, "" if count == 1 else "s"), err=True)
                sys.exit(1)
    except DeviceError as e:
        click.echo("device error: %s" % e, err=True)
        sys.exit(1)
    except codec.ProtocolError as e:
        click.echo("protocol error: %s%s" % (e, "" if answered else " (is %s a sensormesh device, the right "
                                                                   "port?)" % address), err=True)
        sys.exit(1)
    except (OSError, TimeoutError) as e:
        click.echo("connection error: %s" % e, err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        pass
    finally:
        c.close()


if __name__ == "__main__":
    main()
