# The device's entry point: argv -> configuration dict (options.py) -> core.start() and the loop. Runs on
# both interpreters:
#     micropython -m sensormesh.device --port 7000 --sensors dht11,co2
#     python -m sensormesh.device --config device.json
# A board's main.py calls core.start(config) and runs the loop itself; `sensormesh worker` builds the same dict with click.
# main(config=PATH) runs a configuration file as it is, as a board's main.py does: no options to
# parse, so options.py never loads (sensormesh up's launcher for local MicroPython devices; a
# device keeps every name a module it loaded brought, options.py's about 25, for good).
from sensormesh.device.core import start


def main(argv=None, config=None):
    # Reading the configuration, and saying why a device could not start, is boot.py's, whose
    # code core.start forgets once the device is started (boot.start): that code, its messages
    # and the configuration dict (the identity's and trust store's paths, the sensor specs:
    # about 1 KB on a board with keys) are freed before the device runs.
    from sensormesh.device import boot
    cfg = None
    try:
        cfg = boot.config(argv, config)
        boot = None
        dev = start(cfg)
        cfg = None
    except Exception as e:
        from sensormesh.device import boot
        boot.refused(e, cfg)    # a bad configuration or a failed start: logged, and exits
        raise
    try:
        dev.run()
    except KeyboardInterrupt:
        dev.log("stopped")


if __name__ == "__main__":
    main()
