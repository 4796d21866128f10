# Drivers that read once per get(): temperature, hall, poti, touchpad, touch (simulated hw).
from drivers_support import close, fresh, raises

import esp32
import machine

from sensormesh.device.sensors import SensorError, make


def test_classic_esp32_temperature_is_converted_from_fahrenheit():
    fresh()
    esp32.fake_set(raw_f=131)
    t = make({"name": "t", "kind": "temperature", "driver": "esp32"})
    assert t.source == "raw_temperature"
    assert close(t.get(), 55.0)
    esp32.fake_set(raw_f=32)
    assert close(t.get(), 0.0)
    assert t.RATE_HZ == 10


def test_s3_temperature_uses_mcu_temperature_and_offset():
    fresh()
    esp32.fake_chip("esp32s3")
    esp32.fake_set(mcu_c=41.5, raw_f=999)
    t = make({"kind": "temperature", "driver": "esp32", "offset": -1.5})
    assert t.source == "mcu_temperature"
    assert close(t.get(), 40.0)


def test_hall_reads_and_fails_clearly_on_new_firmware():
    fresh()
    esp32.fake_set(hall=-17)
    h = make({"kind": "hall", "driver": "esp32"})
    assert h.get() == -17 and type(h.get()) is int
    esp32.fake_chip("esp32")          # classic chip, MicroPython 1.21+
    e = raises(SensorError, make, {"kind": "hall", "driver": "esp32"})
    assert "1.21" in str(e)


def test_poti_raw_and_fraction():
    fresh()
    p = make({"kind": "poti", "driver": "esp32", "pin": 34})
    machine.Pin(34).fake_analog(0)
    assert p.get() == {"raw": 0, "fraction": 0.0}
    machine.Pin(34).fake_analog(65535)
    assert p.get() == {"raw": 65535, "fraction": 1.0}
    machine.Pin(34).fake_analog(16384)
    v = p.get()
    assert v["raw"] == 16384 and close(v["fraction"], 0.25, 1e-4)
    raises(ValueError, make, {"kind": "poti", "driver": "esp32", "atten": 3})


def test_poti_on_a_non_adc_pin_is_refused():
    fresh()
    raises(ValueError, make, {"kind": "poti", "driver": "esp32", "pin": 5})


def test_touchpad_raw_reading_drops_when_touched():
    fresh()
    pad = make({"kind": "touchpad", "driver": "esp32", "pin": 33})
    machine.Pin(33).fake_touch(640)
    assert pad.get() == 640
    machine.Pin(33).fake_touch(95)
    assert pad.get() == 95
    raises(ValueError, make, {"kind": "touchpad", "driver": "esp32", "pin": 5})


def test_touch_module_is_a_bool_input():
    fresh()
    t = make({"kind": "touch", "driver": "esp32", "pin": 13})
    assert t.get() is False
    machine.Pin(13).fake_set(1)
    assert t.get() is True
    low = make({"kind": "touch", "driver": "esp32", "pin": 14, "active_high": False, "pull": "up"})
    assert low.get() is False           # pulled up: idle
    machine.Pin(14).fake_set(0)
    assert low.get() is True


def test_bad_pin_values_are_refused():
    fresh()
    raises(ValueError, make, {"kind": "touch", "driver": "esp32", "pin": "13"})
    raises(ValueError, make, {"kind": "touch", "driver": "esp32", "pull": "sideways"})
    raises(SensorError, make, {"kind": "touch", "driver": "esp32", "pins": 13})


def test_every_driver_has_rate_unit_get():
    names = ("temperature", "hall", "poti", "gyro", "dht11", "ultrasonic", "co2",
             "touchpad", "touch", "rotary")
    rates = {"temperature": 10, "hall": 100, "poti": 100, "gyro": 100, "dht11": 1,
             "ultrasonic": 20, "co2": 1, "touchpad": 50, "touch": 50, "rotary": 100}
    for kind in names:
        mod = __import__("sensormesh.device.sensors.esp32." + kind, None, None, [kind])
        cls = getattr(mod, kind[0].upper() + kind[1:])
        assert cls.RATE_HZ == rates[kind], kind
        assert type(cls.UNIT) is str and cls.UNIT, kind
        assert callable(getattr(cls, "get")), kind
