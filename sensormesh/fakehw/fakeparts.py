# Models of the parts wired to a simulated ESP32 (see sensormesh/fakehw/__init__.py): what a
# test puts on the pins and buses of the fake `machine`. Timings and register maps follow the
# datasheets (MPU-6000/6050, HC-SR04, MH-Z19B).
import struct


class MPU6050:
    """Register model of an MPU-6050/6000 on I2C: 128 registers, auto-incrementing reads.

    Resets asleep (PWR_MGMT_1 = 0x40); while asleep the data registers read as zero.
    `regs` is writable from tests; set_raw() and set_physical() fill the data registers."""

    WHO_AM_I = 0x75
    PWR_MGMT_1 = 0x6B
    GYRO_CONFIG = 0x1B
    ACCEL_CONFIG = 0x1C
    DATA = 0x3B
    ACCEL_LSB = (16384, 8192, 4096, 2048)
    GYRO_LSB = (131.0, 65.5, 32.8, 16.4)

    def __init__(self, who_am_i=0x68):
        self.regs = bytearray(128)
        self.regs[self.WHO_AM_I] = who_am_i
        self.regs[self.PWR_MGMT_1] = 0x40
        self.writes = []

    def asleep(self):
        return bool(self.regs[self.PWR_MGMT_1] & 0x40)

    def read(self, reg, n):
        out = bytearray(n)
        for i in range(n):
            r = (reg + i) & 0x7F
            if self.asleep() and self.DATA <= r < self.DATA + 14:
                out[i] = 0
            else:
                out[i] = self.regs[r]
        return out

    def write(self, reg, data):
        for i in range(len(data)):
            r = (reg + i) & 0x7F
            self.writes.append((r, data[i]))
            if r != self.WHO_AM_I:
                self.regs[r] = data[i]

    def set_raw(self, accel=(0, 0, 0), temp=0, gyro=(0, 0, 0)):
        raw = struct.pack(">7h", accel[0], accel[1], accel[2], temp, gyro[0], gyro[1], gyro[2])
        for i in range(14):
            self.regs[self.DATA + i] = raw[i]

    def accel_lsb(self):
        return self.ACCEL_LSB[(self.regs[self.ACCEL_CONFIG] >> 3) & 3]

    def gyro_lsb(self):
        return self.GYRO_LSB[(self.regs[self.GYRO_CONFIG] >> 3) & 3]

    def set_physical(self, accel_g=(0.0, 0.0, 1.0), gyro_dps=(0.0, 0.0, 0.0), temp_c=25.0):
        """Data registers for these readings at the configured full-scale ranges."""
        a = self.accel_lsb()
        g = self.gyro_lsb()
        self.set_raw([_clamp16(round(v * a)) for v in accel_g],
                     _clamp16(round((temp_c - 36.53) * 340)),
                     [_clamp16(round(v * g)) for v in gyro_dps])


def _clamp16(v):
    return -32768 if v < -32768 else 32767 if v > 32767 else v


# The parts on plain pins (HC-SR04, MH-Z19B, rotary encoder) are in fakeparts_pins.py, loaded
# on first use (module __getattr__), so a test of an I2C part does not pay the heap for them.
_PINS = ("HCSR04", "MHZ19B", "Quadrature")


def __getattr__(name):
    if name in _PINS:
        import fakeparts_pins
        return getattr(fakeparts_pins, name)
    raise AttributeError(name)
