# Simulated MPU-6050: a board lying flat (z = 1 g) with a gentle wobble, in g, deg/s and C.
from sensormesh.device.sensors.sim import Simulated, wave


class Gyro(Simulated):
    RATE_HZ = 100
    UNIT = '{"accel": [x, y, z] g, "gyro": [x, y, z] deg/s, "temp": degrees C}'
    MEASURES = {"accel": ("acceleration", "g"), "gyro": ("angular_velocity", "°/s"), "temp": ("temperature", "°C")}

    def value(self, n):
        g = self.gauss
        wob = wave(n, 300, 0.05)
        return {
            "accel": [round(wob + g() * 0.01, 4), round(g() * 0.01, 4), round(1.0 + g() * 0.01, 4)],
            "gyro": [round(wave(n, 300, 2.0) + g() * 0.1, 3), round(g() * 0.1, 3), round(g() * 0.1, 3)],
            "temp": round(27.0 + g() * 0.05, 2),
        }
