# HC-SR04 ultrasonic ranger (datasheet: 10 us trigger pulse; echo high for the round trip,
# 58 us per cm; about 38 ms high when nothing is in range).
#
# trigger, echo: GPIOs (default 5 and 18). The HC-SR04 runs on 5 V and its echo is 5 V: put
# a divider (e.g. 1 kOhm / 2 kOhm) between echo and the ESP32 pin. timeout_us bounds each
# half of the wait (default 30000 us, about 5 m); get() blocks for at most twice that.
# Value: distance in cm (float), or None when there was no echo; `last_error` says why.
import machine

from sensormesh.device.sensors.esp32 import pin as make_pin, sleep_us

US_PER_CM = 58


class Ultrasonic:
    RATE_HZ = 20
    UNIT = "cm (float), None when there was no echo"
    MEASURES = ("distance", "cm")

    def __init__(self, trigger=5, echo=18, timeout_us=30000):
        self._trig = make_pin(trigger, machine.Pin.OUT)
        self._echo = make_pin(echo, machine.Pin.IN)
        self._trig.value(0)
        self.timeout_us = timeout_us
        self.last_error = None
        self.last_echo_us = None

    def get(self):
        if self._echo.value():
            self.last_error = "echo still high from the previous ping (reading too often?)"
            return None
        t = self._trig
        t.value(0)
        sleep_us(2)
        t.value(1)
        sleep_us(10)
        t.value(0)
        us = machine.time_pulse_us(self._echo, 1, self.timeout_us)
        self.last_echo_us = us
        if us == -2:
            self.last_error = "no echo pulse started within %d us: check wiring and 5 V supply" % self.timeout_us
            return None
        if us < 0:
            self.last_error = "echo longer than %d us: nothing in range" % self.timeout_us
            return None
        self.last_error = None
        return us / US_PER_CM
