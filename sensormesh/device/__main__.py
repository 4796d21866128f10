# The device's entry point: argv -> configuration dict (options.py) -> core.start() and the loop. Runs on
# both interpreters:
#     micropython -m sensormesh.device --port 7000 --sensors dht11,co2
#     python -m sensormesh.device --config device.json
# A board's main.py calls core.run(config) itself; `sensormesh worker` builds the same dict with click.
# main(config=PATH) runs a configuration file as it is, as a board's main.py does: no options to
# parse, so options.py never loads (sensormesh up's launcher for local MicroPython devices; a
# device keeps every name a module it loaded brought, options.py's about 25, for good).
import sys

from sensormesh.device.compat import unload
from sensormesh.device.core import log, start
from sensormesh.device.sensors import SensorError


def main(argv=None, config=None):
    if argv is None and config is None:
        argv = sys.argv[1:]
    try:
        if config is None:
            from sensormesh.device import options
            cfg = options.config(argv)
            unload(options)    # needed once: its code is freed before the device runs
            del options
        else:
            import json
            with open(config) as f:
                cfg = json.load(f)
        cfg.setdefault("port", 7000)
        cfg.setdefault("host", "0.0.0.0")
        # core.run(cfg) without holding cfg while the device runs: its paths and specs (about
        # 1 KB on a board with keys) are needed only to start it
        dev = start(cfg)
        cfg = None
        try:
            dev.run()
        except KeyboardInterrupt:
            dev.log("stopped")
    except (SensorError, ValueError) as e:
        log("device", "configuration error: %s" % e)
        sys.exit(2)
    except OSError as e:
        log("device", "cannot start: %s" % e)
        sys.exit(1)


if __name__ == "__main__":
    main()
