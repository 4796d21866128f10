# Drivers that time signals: HC-SR04 (trigger/echo), MH-Z19B (PWM via IRQ), DHT11 (interval).
from drivers_support import fresh, raises

import dht
import fakeparts
import machine

from sensormesh.device.sensors import make
from sensormesh.device.sensors.esp32.co2 import ppm_of


# -- HC-SR04 -----------------------------------------------------------------------------

def test_580_us_echo_is_10_cm():
    fresh()
    part = fakeparts.HCSR04(5, 18, echo_us=580)
    s = make({"name": "d", "kind": "ultrasonic", "driver": "esp32", "trigger": 5, "echo": 18})
    v = s.get()
    assert type(v) is float and v == 10.0, v
    assert s.last_error is None and s.last_echo_us == 580 and part.pings == 1
    # a trigger pulse of at least 10 us went out on the trigger pin
    w = machine.Pin(5).fake_writes()
    rise = [t for t, lvl in w if lvl == 1][-1]
    fall = [t for t, lvl in w if lvl == 0][-1]
    assert fall - rise >= 10


def test_distances_follow_58_us_per_cm():
    fresh()
    part = fakeparts.HCSR04(5, 18, distance_cm=1.0)
    s = make({"kind": "ultrasonic", "driver": "esp32"})
    for cm in (2.0, 33.5, 150.0, 400.0):
        part.distance_cm = cm
        machine.fake_clock.advance(50000)
        v = s.get()
        assert abs(v - cm) < 1 / 58.0, (cm, v)


def test_nothing_in_range_gives_none_with_reason():
    fresh()
    part = fakeparts.HCSR04(5, 18, distance_cm=None)
    s = make({"kind": "ultrasonic", "driver": "esp32"})
    assert s.get() is None
    assert "nothing in range" in s.last_error and s.last_echo_us == -1
    # reading again while the 38 ms echo is still high is refused, not mismeasured
    assert s.get() is None and "still high" in s.last_error
    machine.fake_clock.advance(20000)
    part.distance_cm = 20.0
    assert abs(s.get() - 20.0) < 0.02 and s.last_error is None


def test_unplugged_sensor_gives_none_with_reason():
    fresh()
    fakeparts.HCSR04(5, 18, dead=True)
    s = make({"kind": "ultrasonic", "driver": "esp32", "timeout_us": 25000})
    assert s.get() is None
    assert "no echo pulse started" in s.last_error and s.last_echo_us == -2


# -- MH-Z19B -----------------------------------------------------------------------------

def test_datasheet_formula():
    # cycle 1004 ms: Th = 2 ms + 1000 ms * ppm / range
    assert ppm_of(502000, 502000, 2000) == 1000
    assert ppm_of(202000, 802000, 5000) == 1000
    assert ppm_of(2000, 1002000, 2000) == 0
    assert ppm_of(1002000, 2000, 5000) == 5000
    assert ppm_of(82000, 922000, 5000) == 400
    assert ppm_of(202000, 802000, 2000) == 400
    assert ppm_of(1500, 1002500, 5000) == 0          # clamped, not negative


def test_pwm_cycles_give_datasheet_ppm_for_both_ranges():
    for rng, ppm in ((2000, 400), (2000, 1000), (2000, 1999), (5000, 400), (5000, 2500), (5000, 4800)):
        fresh()
        part = fakeparts.MHZ19B(35, ppm=ppm, range_ppm=rng)
        s = make({"name": "c", "kind": "co2", "driver": "esp32", "pin": 35, "range_ppm": rng})
        assert s.get() is None                      # nothing measured yet
        part.schedule(3)
        machine.fake_clock.run_until(part.next_us - 1000)
        v = s.get()
        assert v == ppm and type(v) is int, (rng, ppm, v)
        assert s.last_error is None


def test_co2_follows_changes_and_survives_tick_wrap():
    fresh(start_us=machine.TICKS_PERIOD - 1500000)   # the tick counter wraps mid-cycle
    part = fakeparts.MHZ19B(35, ppm=800, range_ppm=5000)
    s = make({"kind": "co2", "driver": "esp32", "pin": 35})
    part.schedule(2)
    part.schedule(2, ppm=1234)
    machine.fake_clock.run_until(part.next_us - 500000)
    assert s.get() == 1234


def test_co2_rejects_a_signal_that_is_not_the_sensor():
    fresh()
    part = fakeparts.MHZ19B(35, ppm=600)
    s = make({"kind": "co2", "driver": "esp32", "pin": 35})
    part.schedule(2)
    machine.fake_clock.run_until(part.next_us)
    assert s.get() == 600
    part.schedule(3, th_us=100000, tl_us=100000)     # 200 ms cycles: not an MH-Z19B
    machine.fake_clock.run_until(part.next_us)
    assert s.get() == 600                            # last good value kept
    assert "not the MH-Z19B" in s.last_error


def test_co2_silence_is_reported():
    fresh()
    part = fakeparts.MHZ19B(35, ppm=700)
    s = make({"kind": "co2", "driver": "esp32", "pin": 35})
    part.schedule(2)
    machine.fake_clock.run_until(part.next_us)
    assert s.get() == 700
    machine.fake_clock.advance(3000000)
    assert s.get() is None and "no PWM edge" in s.last_error
    part.schedule(2, ppm=650)
    machine.fake_clock.run_until(part.next_us)
    assert s.get() == 650


def test_co2_range_is_checked():
    fresh()
    raises(ValueError, make, {"kind": "co2", "driver": "esp32", "range_ppm": 3000})


# -- DHT11 -------------------------------------------------------------------------------

def test_dht11_measures_at_most_once_a_second():
    fresh()
    part = dht.fake_sensor(27)
    part.temperature, part.humidity = 23, 41
    s = make({"name": "h", "kind": "dht11", "driver": "esp32", "pin": 27})
    v = s.get()
    assert v == {"temperature": 23, "humidity": 41} and type(v["temperature"]) is int
    part.temperature = 24
    for _ in range(10):
        machine.fake_clock.advance(50000)
        assert s.get()["temperature"] == 23         # cached: no new measure
    assert part.measures == 1
    machine.fake_clock.advance(500000)              # 1.0 s after the first
    assert s.get()["temperature"] == 24
    assert part.measures == 2 and s.failures == 0


def test_dht11_failure_keeps_last_good_value_and_reports():
    fresh()
    part = dht.fake_sensor(27)
    s = make({"kind": "dht11", "driver": "esp32", "pin": 27})
    good = s.get()
    assert good == {"temperature": 21, "humidity": 45}
    part.fail = "timeout"
    machine.fake_clock.advance(1000000)
    assert s.get() == good
    assert s.failures == 1 and "did not answer" in s.last_error and "110" in s.last_error
    part.fail = "checksum"
    machine.fake_clock.advance(1000000)
    assert s.get() == good
    assert s.failures == 2 and s.consecutive_failures == 2 and "checksum" in s.last_error
    part.fail = None
    part.humidity = 60
    machine.fake_clock.advance(1000000)
    assert s.get()["humidity"] == 60
    assert s.last_error is None and s.consecutive_failures == 0 and s.failures == 2


def test_dht11_before_first_good_value_is_none():
    fresh()
    dht.fake_sensor(27).fail = "timeout"
    s = make({"kind": "dht11", "driver": "esp32", "pin": 27})
    assert s.get() is None and s.failures == 1
