# MPU-6050 over simulated I2C: WHO_AM_I, wake-up, full-scale settings, datasheet scaling.
from drivers_support import close, fresh, raises

import fakeparts
import machine

from sensormesh.device.sensors import SensorError, make

ACCEL = ((2, 16384, 0), (4, 8192, 1), (8, 4096, 2), (16, 2048, 3))
GYRO = ((250, 131.0, 0), (500, 65.5, 1), (1000, 32.8, 2), (2000, 16.4, 3))


def _setup(who=0x68):
    fresh()
    return machine.fake_i2c(0).attach(0x68, fakeparts.MPU6050(who_am_i=who))


def test_wakes_and_sets_full_scale_registers():
    for g_range, _, sel in ACCEL:
        for dps_range, _, gsel in GYRO:
            mpu = _setup()
            make({"kind": "gyro", "driver": "esp32", "accel_range": g_range, "gyro_range": dps_range})
            assert not mpu.asleep()
            assert mpu.regs[0x6B] == 0
            assert mpu.regs[0x1C] == sel << 3, (g_range, mpu.regs[0x1C])
            assert mpu.regs[0x1B] == gsel << 3, (dps_range, mpu.regs[0x1B])


def test_raw_registers_give_datasheet_units_at_every_range():
    for g_range, lsb_g, _ in ACCEL:
        for dps_range, lsb_dps, _ in GYRO:
            mpu = _setup()
            s = make({"kind": "gyro", "driver": "esp32", "accel_range": g_range, "gyro_range": dps_range})
            # one g on z, minus half a g on x; +-100 deg/s, full negative scale on gz
            mpu.set_raw((-lsb_g // 2, 0, lsb_g), 0, (int(round(100 * lsb_dps)), -int(round(100 * lsb_dps)), -32768))
            v = s.get()
            assert v["accel"] == [-0.5, 0.0, 1.0], (g_range, v)
            assert abs(v["gyro"][0] - 100) < 0.02 and abs(v["gyro"][1] + 100) < 0.02, (dps_range, v)
            # -32768 LSB is the full negative scale (a hair beyond it for 1000/2000 deg/s)
            assert abs(v["gyro"][2] + dps_range) < dps_range * 0.002, (dps_range, v)
            assert close(v["temp"], 36.53)


def test_temperature_formula():
    mpu = _setup()
    s = make({"kind": "gyro", "driver": "esp32"})
    mpu.set_raw((0, 0, 0), -3400, (0, 0, 0))
    assert close(s.get()["temp"], 26.53)
    mpu.set_raw((0, 0, 0), 340, (0, 0, 0))
    assert close(s.get()["temp"], 37.53)


def test_physical_values_round_trip():
    mpu = _setup()
    s = make({"kind": "gyro", "driver": "esp32", "accel_range": 8, "gyro_range": 500})
    mpu.set_physical((0.25, -1.5, 3.0), (12.5, -250.0, 0.5), 30.0)
    v = s.get()
    for got, want in zip(v["accel"], (0.25, -1.5, 3.0)):
        assert abs(got - want) <= 1 / 4096, v
    for got, want in zip(v["gyro"], (12.5, -250.0, 0.5)):
        assert abs(got - want) <= 1 / 65.5, v
    assert abs(v["temp"] - 30.0) <= 1 / 340


def test_value_is_plain_json_data():
    import json
    mpu = _setup()
    s = make({"kind": "gyro", "driver": "esp32"})
    mpu.set_raw((1, 2, 3), 4, (5, 6, 7))
    v = json.loads(json.dumps(s.get()))
    assert sorted(v) == ["accel", "gyro", "temp"]
    assert len(v["accel"]) == 3 and len(v["gyro"]) == 3


def test_missing_or_wrong_chip_is_a_clear_error():
    fresh()
    e = raises(SensorError, make, {"kind": "gyro", "driver": "esp32"})
    assert "0x68" in str(e) and "wiring" in str(e)
    _setup(who=0x70)
    e = raises(SensorError, make, {"kind": "gyro", "driver": "esp32"})
    assert "0x70" in str(e)
    _setup()
    e = raises(ValueError, make, {"kind": "gyro", "driver": "esp32", "accel_range": 3})
    assert str(e).startswith("sensor 'gyro': accel_range must be one of 2, 4, 8, 16"), str(e)   # the sensor named
    e = raises(SensorError, make, {"name": "imu", "kind": "gyro", "driver": "esp32", "address": 0x42})
    assert str(e).startswith("sensor 'imu': no MPU-6050 answers at I2C address 0x42"), str(e)
    raises(ValueError, make, {"kind": "gyro", "driver": "esp32", "gyro_range": 300})


def test_second_address_and_shared_bus():
    fresh()
    machine.fake_i2c(1).attach(0x69, fakeparts.MPU6050())
    bus = machine.I2C(1, scl=machine.Pin(19), sda=machine.Pin(23))
    s = make({"kind": "gyro", "driver": "esp32", "i2c": bus, "address": 0x69})
    assert s.get()["accel"] == [0.0, 0.0, 0.0]
