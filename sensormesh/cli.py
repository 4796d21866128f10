# The `sensormesh` command (CPython). Device commands are thin wrappers around the device-side
# modules; controller commands live in sensormesh/controller and are registered here.
import json
import signal
import sys

import click

from sensormesh import codec


@click.group()
@click.version_option(package_name="sensormesh")
def main():
    """sensormesh: decentralized processing of continuous sensor data."""


@main.command()
@click.option("--port", type=int, default=7000, show_default=True, help="TCP port to listen on (0 = any free port).")
@click.option("--host", default="0.0.0.0", show_default=True, help="Address to listen on.")
@click.option("--unix", "unix_path", default=None, help="Also listen on this Unix socket path.")
@click.option("--name", default=None, help="Device name (default: worker-PORT).")
@click.option("--sensors", default=None,
              help="Comma-separated sensors: KIND, KIND@HZ, NAME=KIND@HZ or NAME=csv:PATH (default: all simulated).")
@click.option("--config", "config_path", default=None, type=click.Path(exists=True, dir_okay=False),
              help="Device configuration JSON (name, sensors, port, ...); options override it.")
@click.option("--max-conns", type=int, default=None, help="Connections accepted at once.")
def worker(port, host, unix_path, name, sensors, config_path, max_conns):
    """Start a device (the seed's test server) with simulated or configured sensors."""
    from sensormesh import device
    from sensormesh.sensors import SensorError
    cfg = {}
    if config_path:
        with open(config_path) as f:
            cfg = json.load(f)
    cfg["port"] = port
    cfg["host"] = host
    if unix_path:
        cfg["unix"] = unix_path
    if name:
        cfg["name"] = name
    cfg.setdefault("name", "worker-%d" % port)
    if sensors is not None:
        cfg["sensors"] = [s.strip() for s in sensors.split(",") if s.strip()]
    if max_conns:
        cfg["max_conns"] = max_conns
    try:
        dev = device.start(cfg)
    except SensorError as e:
        raise click.ClickException("sensor configuration: %s" % e)
    except OSError as e:
        raise click.ClickException("cannot listen: %s" % e)

    def on_term(signum, frame):
        # Raising (rather than setting a flag) wakes the loop out of poll(), which CPython
        # would otherwise resume after the handler returns.
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)
    try:
        dev.run()
    except KeyboardInterrupt:
        pass
    dev.log("stopped")


@main.command()
@click.argument("address")
@click.option("--sensor", required=True, help="Sensor name on the device.")
@click.option("--time-frame", type=int, default=0, show_default=True, help="ms per frame; 0 = every value on its own.")
@click.option("--values-per-time-frame", type=int, default=0, show_default=True,
              help="Evenly spaced values per frame; 0 = as many as the sensor gives.")
@click.option("--count", type=int, default=0, help="Stop after this many data messages (0 = until the device closes).")
@click.option("--timeout", type=float, default=30.0, show_default=True, help="Seconds to wait for the device.")
def client(address, sensor, time_frame, values_per_time_frame, count, timeout):
    """Request a sensor stream from a device (HOST:PORT or unix:PATH) and print it as JSON lines."""
    from sensormesh.client import Client, DeviceError
    try:
        c = Client(address, timeout=timeout)
    except OSError as e:
        raise click.ClickException("cannot connect to %s: %s" % (address, e))
    req = {"sensor": sensor}
    if time_frame:
        req["time-frame"] = time_frame
    if values_per_time_frame:
        req["values-per-time-frame"] = values_per_time_frame
    req["max-frame"] = codec.DEFAULT_MAX_FRAME
    n = 0
    try:
        c.send({"data-request": req})
        for msg in c.messages():
            if type(msg) is dict:
                click.echo(json.dumps(msg), err=True)
                continue
            sys.stdout.write(json.dumps(msg, separators=(",", ":")) + "\n")
            sys.stdout.flush()
            n += 1
            if count and n >= count:
                break
    except DeviceError as e:
        click.echo("device error: %s" % e, err=True)
        sys.exit(1)
    except codec.ProtocolError as e:
        click.echo("protocol error: %s" % e, err=True)
        sys.exit(1)
    except (OSError, TimeoutError) as e:
        click.echo("connection error: %s" % e, err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        pass
    finally:
        c.close()


def _register():
    # Commands from the controller side; each module is optional until its part exists.
    import importlib
    for modname, attr in (("sensormesh.controller.plan_cli", "plan"),
                          ("sensormesh.controller.deploy_cli", "deploy"),
                          ("sensormesh.controller.deploy_cli", "status"),
                          ("sensormesh.controller.deploy_cli", "stop"),
                          ("sensormesh.controller.deploy_cli", "up"),
                          ("sensormesh.controller.keys_cli", "keys"),
                          ("sensormesh.board", "board")):
        try:
            mod = importlib.import_module(modname)
        except ModuleNotFoundError as e:
            if e.name != modname:
                raise
            continue
        cmd = getattr(mod, attr, None)
        if cmd is not None:
            main.add_command(cmd)


_register()

if __name__ == "__main__":
    main()
