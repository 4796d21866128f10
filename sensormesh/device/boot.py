# Starting a device from its configuration: the Device built, its keys loaded, its listeners
# opened and announced, its registration with a gateway begun (core.start); for the command
# line (__main__.py), the configuration read first and a failed start explained (config,
# refused). Needed once per process: a board running precompiled .mpy files forgets this
# module's code afterwards (compat.forget).
import sys

from sensormesh.device import transport
from sensormesh.device.compat import MICROPYTHON, unload
from sensormesh.device.core import DEFAULT_MAX_CONNS, Device


# The fields of a configuration file whose type start() relies on ("sensors": each spec is
# checked as it is added).
_TYPES = (("port", int, "a whole number"), ("host", str, "a string"), ("name", str, "a string"),
          ("sensors", list, "a list of sensor specs"), ("max_conns", int, "a whole number"))


def config(argv, config):
    """__main__.main's configuration: the options argv (sys.argv's when both are None) or the
    JSON file `config` as it is, with the default port and host: every interface on MicroPython
    (a board is reached over its network), loopback on CPython (as `sensormesh worker`)."""
    if argv is None and config is None:
        argv = sys.argv[1:]
    if config is None:
        from sensormesh.device import options
        cfg = options.config(argv)
        unload(options)    # needed once: its code is freed before the device runs
        del options
        if cfg.get("config"):       # --config FILE: the options given with it override its fields
            opts, cfg = cfg, read_config(cfg["config"])
            del opts["config"]
            cfg.update(opts)
    else:
        cfg = read_config(config)
    cfg.setdefault("port", 7000)
    cfg.setdefault("host", "0.0.0.0" if MICROPYTHON else "127.0.0.1")
    return cfg


def read_config(path):
    """The configuration file at path (--config): a JSON object whose fields start() reads
    have their types; a ValueError naming the file and the field otherwise."""
    import json
    with open(path) as f:
        try:
            cfg = json.load(f)
        except ValueError as e:
            raise ValueError("%s: not valid JSON: %s" % (path, e))
    if type(cfg) is not dict:
        raise ValueError("%s: not a JSON object" % path)
    for k, t, what in _TYPES:
        if cfg.get(k) is not None and type(cfg[k]) is not t:
            raise ValueError("%s: %s must be %s, not %s" % (path, k, what, json.dumps(cfg[k])))
    return cfg


def refused(e, cfg=None):
    """__main__.main could not start the device because of e: a bad configuration (exit status
    2) or a failed start (an OSError, 1: an address it cannot listen on named, from its
    configuration cfg) is logged and exits; the caller raises anything else."""
    from sensormesh.device.core import log
    from sensormesh.device.sensors import SensorError   # (a device without sensors keeps no sensors package)
    if isinstance(e, (SensorError, ValueError)):
        log("device", "configuration error: %s" % e)
        sys.exit(2)
    if isinstance(e, OSError):
        if cfg:     # (its words are options.py's, loaded for them: a running device never has them)
            from sensormesh.device.options import start_error
            e = start_error(e, cfg)
        log("device", "cannot start: %s" % e)
        sys.exit(1)


def start(cfg):
    """Build a device from a configuration dict and start listening; returns it."""
    # Unnamed devices are named after their port, as `sensormesh worker` names them
    # (worker-PORT), so two on one machine differ in the logs.
    name = cfg.get("name") or ("device-%d" % cfg["port"] if cfg.get("port") else "device")
    mc = cfg.get("max_conns", DEFAULT_MAX_CONNS)
    if type(mc) is int and mc < 1:
        raise ValueError("max_conns %d: at least 1 connection" % mc)
    dev = Device(name, cfg.get("sensors"), mc)
    if cfg.get("metrics") is False:
        set_metrics(dev, False)
    keyed = cfg.get("identity") is not None or cfg.get("trust") is not None
    if cfg.get("insecure"):
        dev.log("WARNING: insecure mode: anyone who reaches this device may read it and deploy code to it"
                + (" (its keys are ignored)" if keyed else ""))
    elif keyed:
        if cfg.get("identity") is None:
            raise ValueError("a trust store is configured but no identity: add 'identity' (--identity FILE), "
                             "or run without keys with --insecure")
        sec = secure(dev, cfg)
        if cfg.get("name") and cfg["name"] != sec.identity.name:
            raise ValueError("device name %r differs from its identity's name %r: clients address the "
                             "identity's name" % (cfg["name"], sec.identity.name))
        dev.name = sec.identity.name
    if cfg.get("port") is not None and cfg.get("port") >= 0:
        host = cfg.get("host", "0.0.0.0")
        port = cfg["port"]
        if port > 65535:   # (MicroPython would bind the port modulo 65536)
            raise ValueError("port %d: a TCP port is 0..65535 (-1: none)" % port)
        if port == 0 and MICROPYTHON:
            port = _listen_any_port(dev, host)
        else:
            lst = listen_tcp(dev, host, port)
            if port == 0:
                port = transport.bound_port(lst)
        if dev.name in ("device", "worker"):     # unnamed, on a port chosen now: named after it
            dev.name = "%s-%d" % (dev.name, port)
        # the bound port is in this line: whoever started the device reads it (no port races)
        announce(dev, "tcp %s:%d" % (host, port))
    if cfg.get("unix"):
        dev.listeners.append(transport.listen_unix(dev.loop, cfg["unix"], dev.make_inbound,
                                                   max_frame=dev.max_frame, max_conns=dev.max_conns))
        announce(dev, "unix %s" % cfg["unix"])
    if cfg.get("register"):
        from sensormesh.device import forward   # dial out to a controller or gateway and be controlled
        forward.register(dev, cfg["register"])
    if cfg.get("exit_with_stdin"):
        dev.loop.register(sys.stdin, dev)   # its end stops the device (Device.on_poll)
    return dev


def set_metrics(dev, on):
    """Metrics on (the default) or off: off, the loop does not time its waits and a deployed
    pipeline runs without sampling (its counters still count)."""
    dev.metrics = bool(on)
    dev.loop.timing = dev.metrics
    if dev.runtime is not None:
        dev.runtime.metrics = dev.metrics


def secure(dev, cfg):
    """Make dev require authenticated, encrypted sessions: cfg has "identity" and "trust" (files
    or dicts), optionally "revoked", "max_handshakes", "handshake_ms" (docs/security.md).
    Returns its secure.Security."""
    from sensormesh.device.secure import Security   # crypto is loaded only by devices with keys
    dev.security = Security(dev, cfg)
    return dev.security


def listen_tcp(dev, host, port):
    """Make dev listen on TCP host:port; returns the transport.Listener."""
    lst = transport.listen_tcp(dev.loop, host, port, dev.make_inbound,
                               max_frame=dev.max_frame, max_conns=dev.max_conns)
    dev.listeners.append(lst)
    return lst


# Port 0 on MicroPython: its sockets cannot say which port the kernel chose, so the device
# picks one itself, trying random ports of the dynamic range until one is free.
_PORT_TRIES = 64


def _listen_any_port(dev, host):
    import os
    err = None
    for _ in range(_PORT_TRIES):
        b = os.urandom(2)
        port = 49152 + ((b[0] << 8) | b[1]) % 16384
        try:
            listen_tcp(dev, host, port)
            return port
        except OSError as e:
            err = e
    raise OSError("no free TCP port after %d tries: %s" % (_PORT_TRIES, err))


def announce(dev, where):
    # One line on stdout per listener: tools and tests wait for it instead of sleeping.
    print("sensormesh device %s listening on %s %s" % (dev.name, where,
                                                     "(authenticated)" if dev.security else "(plaintext)"))
    try:
        sys.stdout.flush()
    except AttributeError:
        pass
