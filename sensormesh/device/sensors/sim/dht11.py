# Simulated DHT11: whole degrees C and whole percent relative humidity, as the sensor reports.
from sensormesh.device.sensors.sim import Simulated, wave


class Dht11(Simulated):
    RATE_HZ = 1
    UNIT = '{"temperature": degrees C (int), "humidity": % RH (int)}'
    MEASURES = {"temperature": ("temperature", "°C"), "humidity": ("humidity", "%")}

    def value(self, n):
        t = 22 + wave(n, 3600, 4.0) + self.gauss() * 0.4
        h = 45 - wave(n, 3600, 8.0) + self.gauss() * 1.0
        # humidity first: the order MicroPython's dict keeps these two keys in, so the JSON is
        # the same on both interpreters (tests/test_sensor_json_order.py)
        return {"humidity": int(round(h)), "temperature": int(round(t))}
