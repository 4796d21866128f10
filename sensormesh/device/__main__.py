# The device's entry point: argv -> configuration dict (options.py) -> core.run(). Runs on both
# interpreters:
#     micropython -m sensormesh.device --port 7000 --sensors dht11,co2
#     python -m sensormesh.device --config device.json
# A board's main.py calls core.run(config) itself; `sensormesh worker` builds the same dict with click.
import sys

from sensormesh.device.compat import unload
from sensormesh.device.core import log, run
from sensormesh.device.sensors import SensorError


def main(argv=None):
    if argv is None:
        argv = sys.argv[1:]
    try:
        from sensormesh.device import options
        options.stop_on_signals()
        cfg = options.config_from_args(options.parse_args(argv))
        del options
        unload("sensormesh.device.options")    # needed once: its code is freed before the device runs
        run(cfg)
    except (SensorError, ValueError) as e:
        log("device", "configuration error: %s" % e)
        sys.exit(2)
    except OSError as e:
        log("device", "cannot start: %s" % e)
        sys.exit(1)


if __name__ == "__main__":
    main()
