# Sensors: one module per sensor, one class per module, one get() per class (the original design's rule,
# docs/design.md).
#
# A device is configured with the sensors it has. Each entry names a kind (the sensor names
# of the original design), a driver ("sim" for the simulated ones, "esp32" for the board drivers, "csv" for a
# replay) and the driver's parameters (pins, seed, rate...). Modules are imported only when a
# sensor of that kind is configured, so a board never loads drivers it does not use.
#
# Every sensor class has:
#   RATE_HZ    how many values per second the sensor can give (0 = as fast as it is read)
#   UNIT       what get() returns, in words
#   MEASURES   (quantity, unit symbol) of the value, or {field: (quantity, symbol)} for dict
#              values; symbol None for raw readings. Quantities use Home Assistant's sensor
#              device classes where one fits ("temperature", "humidity", "distance"...).
#   get()      the current value, JSON-serialisable (number, bool, None, list or dict)
# and may have close(), and get_many(n): the next n values as a list, as n calls of get() would
# give them (a free-running source reads runs of values; without get_many it calls get()).

# Building sensors from their specs (the registry of kinds and drivers, the command line's
# spec format) runs once, at start: that code is in registry.py, which a board running .mpy
# files forgets afterwards. This module holds only what a running driver may need.


class SensorError(Exception):
    """A sensor spec names a kind, driver or parameter that does not exist."""


def make(spec):
    """Build a sensor object from a spec dict ({"name", "kind", "driver"?, ...params}) or a
    command-line spec string (registry.make)."""
    from sensormesh.device.sensors import registry
    return registry.make(spec)
