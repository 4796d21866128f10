# MPU-6050 / MPU-6000 accelerometer + gyroscope + temperature over I2C (datasheet: InvenSense
# MPU-6000/6050 product specification and register map).
#
# bus: I2C peripheral 0 or 1 (default 0), scl/sda: GPIOs (default 22/21), freq: bus clock,
# address: 0x68 (AD0 low, default) or 0x69 (AD0 high), i2c: an I2C object to share a bus.
# accel_range: +-2, 4, 8 or 16 g; gyro_range: +-250, 500, 1000 or 2000 deg/s.
# The constructor checks WHO_AM_I, wakes the chip and sets both full-scale ranges; get()
# reads the 14 data bytes in one transfer into a preallocated buffer.
# Value: {"accel": [x, y, z] in g, "gyro": [x, y, z] in deg/s, "temp": degrees C}.
import struct

import machine

from sensormesh.device.sensors import SensorError
from sensormesh.device.sensors.esp32 import pin as make_pin

WHO_AM_I = 0x75
PWR_MGMT_1 = 0x6B
GYRO_CONFIG = 0x1B
ACCEL_CONFIG = 0x1C
ACCEL_XOUT_H = 0x3B

ACCEL_RANGES = (2, 4, 8, 16)
ACCEL_LSB_PER_G = (16384, 8192, 4096, 2048)
GYRO_RANGES = (250, 500, 1000, 2000)
GYRO_LSB_PER_DPS = (131.0, 65.5, 32.8, 16.4)


class Gyro:
    RATE_HZ = 100
    UNIT = '{"accel": [x, y, z] g, "gyro": [x, y, z] deg/s, "temp": degrees C}'
    MEASURES = {"accel": ("acceleration", "g"), "gyro": ("angular_velocity", "°/s"), "temp": ("temperature", "°C")}

    def __init__(self, bus=0, scl=22, sda=21, freq=400000, address=0x68,
                 accel_range=2, gyro_range=250, i2c=None):
        if accel_range not in ACCEL_RANGES:
            raise ValueError("accel_range must be one of 2, 4, 8, 16 (g), not %r" % (accel_range,))
        if gyro_range not in GYRO_RANGES:
            raise ValueError("gyro_range must be one of 250, 500, 1000, 2000 (deg/s), not %r"
                             % (gyro_range,))
        if i2c is None:
            i2c = machine.I2C(bus, scl=make_pin(scl), sda=make_pin(sda), freq=freq)
        self._i2c = i2c
        self._addr = address
        try:
            who = i2c.readfrom_mem(address, WHO_AM_I, 1)[0]
        except OSError as e:
            raise SensorError("no MPU-6050 answers at I2C address 0x%02x (bus %r, scl %r, sda %r): "
                              "%r; check wiring and pull-ups" % (address, bus, scl, sda, e))
        if who != 0x68:
            raise SensorError("device at I2C address 0x%02x has WHO_AM_I 0x%02x, not the "
                              "MPU-6050's 0x68" % (address, who))
        asel = ACCEL_RANGES.index(accel_range)
        gsel = GYRO_RANGES.index(gyro_range)
        i2c.writeto_mem(address, PWR_MGMT_1, b"\x00")
        i2c.writeto_mem(address, ACCEL_CONFIG, bytes((asel << 3,)))
        i2c.writeto_mem(address, GYRO_CONFIG, bytes((gsel << 3,)))
        self._alsb = ACCEL_LSB_PER_G[asel]
        self._glsb = GYRO_LSB_PER_DPS[gsel]
        self._buf = bytearray(14)

    def get(self):
        self._i2c.readfrom_mem_into(self._addr, ACCEL_XOUT_H, self._buf)
        ax, ay, az, t, gx, gy, gz = struct.unpack(">7h", self._buf)
        a = self._alsb
        g = self._glsb
        return {"accel": [ax / a, ay / a, az / a],
                "gyro": [gx / g, gy / g, gz / g],
                "temp": t / 340 + 36.53}
