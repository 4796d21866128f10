# Rotary encoder: quadrature decoding with bounce, both directions, IRQ and hardware counter.
from drivers_support import fresh, raises

import fakeparts
import machine

from sensormesh.device.sensors import make


def _irq_encoder(**params):
    spec = {"name": "r", "kind": "rotary", "driver": "esp32", "pin_a": 25, "pin_b": 26,
            "use_counter": False}
    for k in params:
        spec[k] = params[k]
    return make(spec)


def _run():
    machine.fake_clock.run_all()


def test_clean_turns_both_directions():
    fresh()
    knob = fakeparts.Quadrature(25, 26)
    r = _irq_encoder()
    assert r.hardware is False and r.get() == 0
    knob.turn(3)
    _run()
    assert r.get() == 3
    knob.turn(-5)
    _run()
    assert r.get() == -2
    assert r.errors == 0


def test_bounce_is_rejected():
    fresh()
    knob = fakeparts.Quadrature(25, 26)
    r = _irq_encoder()
    knob.turn(4, bounce=3)
    _run()
    assert r.get() == 4 and r.transitions() == 16
    knob.turn(-7, bounce=2)
    _run()
    assert r.get() == -3 and r.transitions() == -12
    assert r.errors == 0


def test_half_turn_then_back_does_not_count():
    fresh()
    a, b = machine.Pin(25), machine.Pin(26)
    a.fake_set(0)
    b.fake_set(0)
    r = _irq_encoder()
    for lvl_a, lvl_b in ((1, 0), (1, 1), (1, 0), (0, 0)):     # two transitions forward, back
        a.fake_set(lvl_a)
        b.fake_set(lvl_b)
    assert r.transitions() == 0 and r.get() == 0


def test_invalid_transition_is_counted_not_applied():
    fresh()
    machine.Pin(25).fake_set(0)
    machine.Pin(26).fake_set(0)
    r = _irq_encoder()
    # both inputs change before the (deferred) handler runs: a missed edge
    machine.Pin(25).fake_state().level = 1
    machine.Pin(26).fake_state().level = 1
    r._edge(machine.Pin(25))
    assert r.errors == 1 and r.transitions() == 0
    # decoding continues from the state it saw
    machine.Pin(25).fake_set(0)      # 11 -> 01: +1
    assert r.transitions() == 1


def test_steps_per_detent_and_reverse():
    fresh()
    knob = fakeparts.Quadrature(25, 26)
    r2 = _irq_encoder(transitions_per_step=2, reverse=True)
    knob.turn(3)
    _run()
    assert r2.get() == -6
    raises(ValueError, _irq_encoder, transitions_per_step=3)


def test_hardware_counter_used_when_firmware_has_it():
    fresh()
    knob = fakeparts.Quadrature(25, 26)
    r = make({"kind": "rotary", "driver": "esp32", "pin_a": 25, "pin_b": 26})
    assert r.hardware is True
    knob.turn(5, bounce=2)
    knob.turn(-2)
    _run()
    assert r.get() == 3
    r.close()


def test_irq_decoder_when_firmware_has_no_counter():
    fresh(encoder=False)
    knob = fakeparts.Quadrature(25, 26)
    r = make({"kind": "rotary", "driver": "esp32"})
    assert r.hardware is False
    knob.turn(-4, bounce=1)
    _run()
    assert r.get() == -4
