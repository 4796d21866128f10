# Simulated `esp32` module (see sensormesh/fakehw/__init__.py): the chip's own sensors.
#
# Which functions exist depends on the chip and the firmware, as on real boards:
#   fake_chip("esp32", hall=True)   classic ESP32, MicroPython <= 1.20: raw_temperature(),
#                                   hall_sensor()
#   fake_chip("esp32")              classic ESP32, MicroPython 1.21+: raw_temperature() only
#   fake_chip("esp32s3")            S2/S3/C3/C6: mcu_temperature() only
# fake_set(raw_f=..., mcu_c=..., hall=...) sets what they return. machine.fake_reset()
# restores the default: classic ESP32 with the hall sensor, 128 F, 45 C, hall 0.
import machine

_values = {"raw_f": 128, "mcu_c": 45.0, "hall": 0}


def raw_temperature():
    return _values["raw_f"]


def mcu_temperature():
    return _values["mcu_c"]


def hall_sensor():
    return _values["hall"]


_ALL = {"raw_temperature": raw_temperature, "mcu_temperature": mcu_temperature,
        "hall_sensor": hall_sensor}
_CHIPS = {"esp32": ("raw_temperature",), "esp32s2": ("mcu_temperature",),
          "esp32s3": ("mcu_temperature",), "esp32c3": ("mcu_temperature",),
          "esp32c6": ("mcu_temperature",)}


def fake_chip(name="esp32", hall=False):
    g = globals()
    have = list(_CHIPS[name])
    if hall and name == "esp32":
        have.append("hall_sensor")
    for fn in _ALL:
        if fn in have:
            g[fn] = _ALL[fn]
        elif fn in g:
            del g[fn]


def fake_set(**values):
    for k in values:
        if k not in _values:
            raise ValueError("unknown esp32 fake value %r" % k)
        _values[k] = values[k]


def _reset():
    _values["raw_f"] = 128
    _values["mcu_c"] = 45.0
    _values["hall"] = 0
    fake_chip("esp32", hall=True)


_reset()
machine.fake_on_reset(_reset)
