# Command-line options of a device process -> its configuration dict. Used once at start by
# __main__.py, which then forgets this module (compat.unload): a board pays no heap for it while
# it runs. (argparse is not on every MicroPython port, so the options are parsed by hand.) The
# SIGTERM and SIGINT handler of a CPython device is set up here too.
import sys

OPTIONS = {"--port": int, "--host": str, "--unix": str, "--name": str, "--sensors": str,
           "--max-conns": int, "--config": str, "--register": str, "--identity": str, "--trust": str,
           "--revoked": str, "--max-handshakes": int, "--handshake-timeout": int}
FLAGS = ("--insecure", "--no-metrics", "--exit-with-stdin")

USAGE = ("usage: python -m sensormesh.device [--port P] [--host H] [--unix PATH] [--name NAME]\n"
         "                                   [--sensors KIND[@HZ],...] [--max-conns N] [--config FILE.json]\n"
         "                                   [--identity FILE --trust FILE [--revoked FILE]]\n"
         "                                   [--max-handshakes N] [--handshake-timeout MS] [--insecure]\n"
         "                                   [--register HOST:PORT] [--no-metrics] [--exit-with-stdin]")


def parse_args(argv):
    """--option value pairs -> dict (argparse is not on every MicroPython port)."""
    out = {}
    i = 0
    while i < len(argv):
        opt = argv[i]
        if opt in ("-h", "--help"):
            print(USAGE)
            sys.exit(0)
        if opt in FLAGS:
            out[opt[2:].replace("-", "_")] = True
            i += 1
            continue
        conv = OPTIONS.get(opt)
        if conv is None or i + 1 >= len(argv):
            raise ValueError("%s %r\n%s" % ("missing value for" if conv else "unknown option", opt, USAGE))
        try:
            out[opt[2:].replace("-", "_")] = conv(argv[i + 1])
        except ValueError:
            raise ValueError("option %s wants a number, got %r" % (opt, argv[i + 1]))
        i += 2
    return out


def config_from_args(a):
    cfg = {}
    if a.get("config"):
        cfg["config"] = a["config"]    # the file, which these options override (boot.config reads it)
    if a.get("name"):
        cfg["name"] = a["name"]
    if a.get("sensors") is not None:
        cfg["sensors"] = [s for s in a["sensors"].split(",") if s]
    for k in ("port", "host", "unix", "max_conns", "register", "identity", "trust", "revoked",
              "max_handshakes", "insecure", "exit_with_stdin"):
        if a.get(k) is not None:
            cfg[k] = a[k]
    if a.get("handshake_timeout") is not None:
        cfg["handshake_ms"] = a["handshake_timeout"]
    if a.get("no_metrics"):
        cfg["metrics"] = False
    return cfg          # (__main__.main sets the default port and host)


def stop_on_signals():
    # `kill PID` (how `sensormesh up` stops CPython devices) and Ctrl-C end the loop, so the
    # device closes its listeners and logs "stopped". The handler raises KeyboardInterrupt only
    # while the loop waits in poll() (which CPython would otherwise resume after the handler);
    # elsewhere it asks the loop to raise before its next wait (transport.Loop.halt), so no
    # half-done step (a send whose bytes the socket took but the buffer still holds) is cut
    # short and repeated by the closing flush. A second signal before that stops at once.
    # MicroPython has no signal module: `kill -INT PID` stops it that way (`sensormesh up` does).
    try:
        import signal
    except ImportError:   # MicroPython ports have no signal module
        return
    from sensormesh.device.transport import Loop

    def on_stop(signum, frame):
        if Loop.waiting or Loop.halt:
            raise KeyboardInterrupt
        Loop.halt = True
    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)


def config(argv):
    """The configuration dict of a device started with these command-line arguments, its stop
    on signals set up (CPython): what __main__.main runs when it has no configuration file."""
    stop_on_signals()
    return config_from_args(parse_args(argv))


def start_error(e, cfg):
    """A failed start's OSError e in words that name the address the device could not listen on
    (its TCP address is opened first; a Unix socket's stale file is removed before it is bound),
    as `sensormesh worker` says it; e itself when it is about something else (a key file)."""
    import errno
    from sensormesh.device.compat import errno_of
    code = errno_of(e)
    where = "%s:%s" % (cfg.get("host"), cfg.get("port"))
    # (MicroPython's errno module lacks some names: Linux's numbers stand in)
    if code == getattr(errno, "EADDRINUSE", 98):
        return "%s is in use: another device or program listens there (give another --port)" % where
    if code == getattr(errno, "EADDRNOTAVAIL", 99):
        return "cannot listen on %s: %s is not an address of this machine (--host): %s" % (where, cfg.get("host"), e)
    if cfg.get("unix") and code in (getattr(errno, "ENOENT", 2), getattr(errno, "ENOTDIR", 20),
                                    getattr(errno, "EACCES", 13)) and not getattr(e, "filename", None):
        return "cannot listen on unix:%s (--unix): %s" % (cfg["unix"], e)
    return e
