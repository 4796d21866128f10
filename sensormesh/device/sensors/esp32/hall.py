# The classic ESP32's internal hall-effect sensor: a raw signed reading that moves when a
# magnet comes near the chip. esp32.hall_sensor() was removed in MicroPython 1.21 (ESP-IDF 5)
# and never existed on S2/S3/C3/C6: there the constructor raises a SensorError saying so.
import esp32

from sensormesh.device.sensors import SensorError


class Hall:
    RATE_HZ = 100
    UNIT = "raw reading (int)"
    MEASURES = ("magnetic_field", None)

    def __init__(self):
        if not hasattr(esp32, "hall_sensor"):
            raise SensorError("esp32.hall_sensor() is not in this firmware: it was removed in "
                              "MicroPython 1.21 (ESP-IDF 5) and exists only on the classic "
                              "ESP32; flash MicroPython 1.20 or older to use the hall sensor")
        self._read = esp32.hall_sensor

    def get(self):
        return self._read()
