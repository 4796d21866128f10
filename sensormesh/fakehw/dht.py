# Simulated `dht` module (see sensormesh/fakehw/__init__.py), with the firmware's interface:
# DHT11(pin).measure() then .temperature() / .humidity(). Like the real part it answers at
# most once a second: a measure() less than 1 s (simulated time) after the previous one
# times out, as does a sensor set to fail="timeout"; fail="checksum" raises the firmware's
# Exception("checksum error").
#   fake_sensor(gpio) -> the part on that pin: .temperature, .humidity, .fail, .measures
import machine

ETIMEDOUT = 110
MIN_INTERVAL_US = 1000000


class Part:
    def __init__(self):
        self.temperature = 21
        self.humidity = 45
        self.fail = None
        self.measures = 0
        self.last_us = None


_parts = {}


def fake_sensor(gpio):
    p = _parts.get(gpio)
    if p is None:
        p = Part()
        _parts[gpio] = p
    return p


class DHTBase:
    def __init__(self, pin):
        self.pin = pin
        self._part = fake_sensor(pin.fake_state().id)
        self._t = None
        self._h = None

    def measure(self):
        p = self._part
        now = machine.fake_clock.now
        too_soon = p.last_us is not None and now - p.last_us < MIN_INTERVAL_US
        p.measures += 1
        p.last_us = now
        if too_soon or p.fail == "timeout":
            raise OSError(ETIMEDOUT)
        if p.fail == "checksum":
            raise Exception("checksum error")
        self._t = p.temperature
        self._h = p.humidity

    def temperature(self):
        return self._t

    def humidity(self):
        return self._h


class DHT11(DHTBase):
    pass


class DHT22(DHTBase):
    pass


def _reset():
    _parts.clear()


machine.fake_on_reset(_reset)
