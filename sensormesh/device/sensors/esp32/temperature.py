# The ESP32's internal temperature sensor (die temperature, not the room's).
#
# S2/S3/C3/C6 firmware has esp32.mcu_temperature() in degrees C. The classic ESP32 has
# esp32.raw_temperature(), an uncalibrated reading in about degrees F; it is converted to C.
# `offset` (degrees C) is added to every reading, for a calibration against a thermometer.
import esp32

from sensormesh.device.sensors import SensorError


class Temperature:
    RATE_HZ = 10
    UNIT = "degrees C (float), chip temperature"
    MEASURES = ("temperature", "°C")

    def __init__(self, offset=0.0):
        self.offset = offset
        if hasattr(esp32, "mcu_temperature"):
            self.source = "mcu_temperature"
            self._fahrenheit = False
            self._read = esp32.mcu_temperature
        elif hasattr(esp32, "raw_temperature"):
            self.source = "raw_temperature"
            self._fahrenheit = True
            self._read = esp32.raw_temperature
        else:
            raise SensorError("this firmware has neither esp32.mcu_temperature() nor "
                              "esp32.raw_temperature(): no internal temperature sensor")

    def get(self):
        v = self._read()
        if self._fahrenheit:
            v = (v - 32) / 1.8
        return v + self.offset
