# DHT11 temperature + humidity on one data pin, through the firmware's `dht` module.
#
# pin: any GPIO (default 27); the module boards have the data pull-up on board, a bare
# sensor needs 4.7-10 kOhm to 3V3. The DHT11 answers at most once a second: get() measures
# only when the last attempt is at least MIN_INTERVAL_MS old and otherwise returns the last
# good value. A failed measurement keeps the last good value (None before the first one),
# counts in `failures` / `consecutive_failures` and says what happened in `last_error`.
# Value: {"temperature": degrees C, "humidity": % RH}, ints (the DHT11 resolves 1 C / 1 %).
import dht
import machine

from sensormesh.device.sensors.esp32 import pin as make_pin, ticks_diff, ticks_ms


class Dht11:
    RATE_HZ = 1
    UNIT = '{"temperature": degrees C (int), "humidity": % RH (int)}'
    MEASURES = {"temperature": ("temperature", "°C"), "humidity": ("humidity", "%")}
    MIN_INTERVAL_MS = 1000

    def __init__(self, pin=27):
        self._dev = dht.DHT11(make_pin(pin, machine.Pin.IN))
        self._value = None
        self._last_ms = None
        self.measures = 0
        self.failures = 0
        self.consecutive_failures = 0
        self.last_error = None

    def get(self):
        now = ticks_ms()
        if self._last_ms is not None and ticks_diff(now, self._last_ms) < self.MIN_INTERVAL_MS:
            return self._value
        self._last_ms = now
        self.measures += 1
        try:
            self._dev.measure()
        except OSError as e:
            self._failed("DHT11 did not answer (errno %r): check wiring and pull-up"
                         % (e.args[0] if e.args else None,))
            return self._value
        except Exception as e:
            self._failed("DHT11 read failed: %s" % (e,))
            return self._value
        self.consecutive_failures = 0
        self.last_error = None
        # humidity first, as MicroPython's dict orders the two keys (and sim/dht11.py writes them)
        self._value = {"humidity": int(round(self._dev.humidity())),
                       "temperature": int(round(self._dev.temperature()))}
        return self._value

    def _failed(self, why):
        self.failures += 1
        self.consecutive_failures += 1
        self.last_error = why
