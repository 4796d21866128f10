# The device runtime serves board drivers like simulated sensors: a configuration names them
# with "driver": "esp32" and their pins, sensors.make() builds them, data requests stream
# their values. Runs on simulated hardware, on CPython and on the MicroPython unix port.
from drivers_support import fresh

import fakeparts
import machine

from sensormesh.device import control, transport
from sensormesh.device.core import Device

from loopkit import Collector, listen

BOARD = [
    {"name": "t", "kind": "co2", "driver": "esp32", "pin": 4},
    {"name": "p", "kind": "poti", "driver": "esp32", "pin": 34},
    {"name": "g", "kind": "gyro", "driver": "esp32", "scl": 22, "sda": 21, "accel_range": 4},
    {"name": "k", "kind": "rotary", "driver": "esp32", "pin_a": 25, "pin_b": 26, "rate": 10},
]


def _board():
    fresh()
    mpu = machine.fake_i2c(0).attach(0x68, fakeparts.MPU6050())
    fakeparts.MHZ19B(4, ppm=950, range_ppm=5000).schedule(2)
    machine.Pin(34).fake_analog(49151)
    return mpu


def _values(dev, addr, body, n):
    c = Collector()
    conn = transport.dial(dev.loop, addr, c)
    conn.send({"data-request": body})
    ok = dev.loop.run_until(lambda: sum(len(m) for m in c.messages if type(m) is list) >= n, 5000)
    conn.close()
    assert ok, c.messages
    out = []
    for m in c.messages:
        out += m
    return out


def test_device_info_lists_board_sensors():
    _board()
    dev = Device("board", BOARD)
    try:
        info = control.info(dev)["sensors"]
        assert sorted(info) == ["g", "k", "p", "t"]
        assert info["t"]["kind"] == "co2" and info["t"]["rate"] == 1 and "ppm" in info["t"]["unit"]
        assert info["g"]["rate"] == 100
        assert info["k"]["rate"] == 10          # the spec's rate overrides RATE_HZ
    finally:
        dev.close()


def test_device_streams_board_sensor_values():
    mpu = _board()
    dev = Device("board", BOARD)
    mpu.set_physical((0.0, 0.0, 1.0), (0.0, 90.0, 0.0), 24.0)   # at the ranges the driver set
    machine.fake_clock.run_all()            # two PWM cycles reach the CO2 driver's IRQ
    try:
        addr = listen(dev)
        co2 = _values(dev, addr, {"sensor": "t"}, 1)
        assert co2[0] == 950
        poti = _values(dev, addr, {"sensor": "p", "time-frame": 50}, 3)
        assert poti[0]["raw"] == 49151 and abs(poti[0]["fraction"] - 0.75) < 0.001
        gyro = _values(dev, addr, {"sensor": "g", "time-frame": 50}, 2)
        assert gyro[0]["accel"][2] == 1.0 and abs(gyro[0]["gyro"][1] - 90.0) < 0.02
        assert abs(gyro[0]["temp"] - 24.0) < 0.01
    finally:
        dev.close()


def test_an_unplugged_gyro_is_counted_and_named_and_streams_again_once_plugged_back():
    # The MPU-6050 leaves the bus while a client streams it: each read fails (ENODEV), is counted
    # in the stream's status and logged with the sensor's name; the poti's stream goes on; the
    # gyro's values come again once it is back. Before: the first failed read ended the stream
    # silently and left its connection open.
    mpu = _board()
    dev = Device("board", BOARD)
    lines = []
    dev.log = lines.append
    addr = listen(dev)
    try:
        g = Collector()
        gconn = transport.dial(dev.loop, addr, g)
        gconn.send({"data-request": {"sensor": "g"}})
        p = Collector()
        pconn = transport.dial(dev.loop, addr, p)
        pconn.send({"data-request": {"sensor": "p"}})

        def got(c):
            return sum(len(m) for m in c.messages if type(m) is list)
        assert dev.loop.run_until(lambda: got(g) >= 3, 5000)
        del machine.fake_i2c(0).parts[0x68]            # unplugged
        stream = [s for s in dev.streams if s.name == "g"][0]
        assert dev.loop.run_until(lambda: stream.failed >= 3, 5000)
        n, k = got(g), got(p)
        assert dev.loop.run_until(lambda: got(p) >= k + 5, 5000)   # the other sensor goes on
        assert stream.stats()["failed"] >= 3 and "OSError" in stream.stats()["last_error"], stream.stats()
        assert [ln for ln in lines if ln.startswith("sensor g: read failed: OSError")], lines
        machine.fake_i2c(0).attach(0x68, mpu)          # plugged back in
        assert dev.loop.run_until(lambda: got(g) >= n + 3, 5000)
        assert g.closed is None and p.closed is None and dev.errors == 0
        gconn.close()
        pconn.close()
    finally:
        dev.close()
