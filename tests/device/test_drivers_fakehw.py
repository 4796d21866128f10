# The simulated hardware itself: clock, scheduled pin changes, IRQs, time_pulse_us, I2C.
from drivers_support import fresh, raises

import machine


def test_clock_runs_events_in_time_order():
    fresh()
    seen = []
    c = machine.fake_clock
    c.at(300, seen.append, "c")
    c.at(100, seen.append, "a")
    c.at(200, seen.append, "b")
    c.at(200, seen.append, "b2")
    c.advance(150)
    assert seen == ["a"] and c.now == 150
    c.run_until(1000)
    assert seen == ["a", "b", "b2", "c"] and c.now == 1000
    raises(ValueError, c.at, 999, seen.append, "past")


def test_ticks_wrap_like_the_esp32():
    fresh(start_us=machine.TICKS_PERIOD - 100)
    t0 = machine.ticks_us()
    assert t0 == machine.TICKS_PERIOD - 100
    machine.sleep_us(250)
    t1 = machine.ticks_us()
    assert t1 == 150
    assert machine.ticks_diff(t1, t0) == 250
    assert machine.ticks_diff(t0, t1) == -250
    assert machine.ticks_add(t0, 250) == t1


def test_pins_share_state_and_fire_irqs_on_edges():
    fresh()
    p = machine.Pin(4, machine.Pin.IN)
    same = machine.Pin(4)
    edges = []
    p.irq(handler=lambda pin: edges.append((machine.ticks_us(), pin.value())),
          trigger=machine.Pin.IRQ_RISING)
    same.fake_after(10, 1)
    same.fake_after(20, 0)
    same.fake_after(30, 1)
    machine.fake_clock.advance(100)
    assert edges == [(10, 1), (30, 1)]
    p.irq(handler=None)
    same.fake_set(0)
    same.fake_set(1)
    assert len(edges) == 2


def test_pull_up_sets_idle_level_and_input_only_pins():
    fresh()
    assert machine.Pin(25, machine.Pin.IN, machine.Pin.PULL_UP).value() == 1
    raises(ValueError, machine.Pin, 34, machine.Pin.OUT)
    raises(ValueError, machine.Pin, 20)
    out = machine.Pin(5, machine.Pin.OUT)
    machine.sleep_us(7)
    out.value(1)
    out.off()
    assert out.fake_writes() == [(7, 1), (7, 0)]


def test_time_pulse_us_measures_and_times_out():
    fresh()
    echo = machine.Pin(18, machine.Pin.IN)
    echo.fake_at(500, 1)
    echo.fake_at(1080, 0)
    assert machine.time_pulse_us(echo, 1, 30000) == 580
    assert machine.fake_clock.now == 1080
    # no pulse start
    assert machine.time_pulse_us(echo, 1, 1000) == -2
    assert machine.fake_clock.now == 2080
    # pulse too long
    echo.fake_after(10, 1)
    echo.fake_after(5000, 0)
    assert machine.time_pulse_us(echo, 1, 1000) == -1


def test_i2c_bus_without_part_raises_enodev():
    fresh()
    bus = machine.I2C(0, scl=machine.Pin(22), sda=machine.Pin(21))
    assert bus.scan() == []
    e = raises(OSError, bus.readfrom_mem, 0x68, 0x75, 1)
    assert e.args[0] == machine.ENODEV


def test_mpu6050_model_registers():
    import fakeparts
    fresh()
    mpu = machine.fake_i2c(0).attach(0x68, fakeparts.MPU6050())
    bus = machine.I2C(0)
    assert bus.scan() == [0x68]
    assert bus.readfrom_mem(0x68, 0x75, 1) == b"\x68"
    mpu.set_raw((1, -2, 3), 340, (-4, 5, -32768))
    # asleep after reset: data reads as zeros
    assert bus.readfrom_mem(0x68, 0x3B, 14) == bytes(14)
    bus.writeto_mem(0x68, 0x6B, b"\x00")
    assert bus.readfrom_mem(0x68, 0x3B, 4) == b"\x00\x01\xff\xfe"
    assert bus.readfrom_mem(0x68, 0x47, 2) == b"\x80\x00"
    bus.writeto_mem(0x68, 0x75, b"\x12")
    assert bus.readfrom_mem(0x68, 0x75, 1) == b"\x68"


def test_adc_and_touchpad_read_scripted_values():
    fresh()
    machine.Pin(34).fake_analog(40000)
    adc = machine.ADC(machine.Pin(34), atten=machine.ADC.ATTN_11DB)
    assert adc.read_u16() == 40000 and adc.read() == 2500
    raises(ValueError, machine.ADC, machine.Pin(5))
    machine.Pin(4).fake_touch(123)
    assert machine.TouchPad(machine.Pin(4)).read() == 123
    raises(ValueError, machine.TouchPad, machine.Pin(5))


def test_encoder_can_be_hidden_like_old_firmware():
    fresh(encoder=False)
    assert not hasattr(machine, "Encoder")
    fresh()
    assert hasattr(machine, "Encoder")


def test_esp32_chip_variants():
    import esp32
    fresh()
    assert hasattr(esp32, "hall_sensor") and hasattr(esp32, "raw_temperature")
    esp32.fake_chip("esp32s3")
    assert not hasattr(esp32, "hall_sensor") and not hasattr(esp32, "raw_temperature")
    assert hasattr(esp32, "mcu_temperature")
    fresh()
    assert hasattr(esp32, "hall_sensor")
