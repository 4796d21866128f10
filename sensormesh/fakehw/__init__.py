# Simulated ESP32 hardware for tests and benchmarks.
#
# The modules in this folder (machine.py, esp32.py, dht.py, network.py) stand in for the
# board's own modules when the folder is first on sys.path; fakeparts.py holds models of the
# parts wired to the pins (MPU-6050, HC-SR04, MH-Z19B, rotary encoder). The drivers in
# sensormesh/device/sensors/esp32 import `machine` as usual and never see the difference.
# machine_extra.py and fakeparts_pins.py hold the less used halves of machine and fakeparts,
# loaded on first use (module __getattr__) so that simulated hardware costs a MicroPython
# heap only what a test or benchmark touches.
#
#     import sensormesh.fakehw
#     sensormesh.fakehw.install()     # before the first `import machine`
#     import machine
#
# Works on CPython and on the MicroPython unix port (whose built-in `machine` is extensible,
# so a machine.py earlier on sys.path replaces it). Not a device module: never deployed.
import sys

DIR = __file__.rpartition("/")[0] or "."


def install():
    """Put the simulated hardware modules first on sys.path; returns the folder."""
    if DIR not in sys.path:
        sys.path.insert(0, DIR)
    return DIR
