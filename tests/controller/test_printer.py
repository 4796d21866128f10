"""What `sensormesh up` prints for the values that reach callback sinks without a function."""
from sensormesh.controller.runner import Printer


def printed(values):
    lines = []
    p = Printer(echo=lines.append)
    p.deliver("pc", "temperature", values)
    return lines, p


def test_a_means_binary_rounding_is_not_printed_but_its_digits_are():
    lines, p = printed([48.14999999999999, 49.888999999999996, 48.29363636363637, 3, "x"])
    assert lines == ["temperature  48.15", "temperature  49.889", "temperature  48.2936363636",
                     "temperature  3", 'temperature  "x"']
    assert p.delivered == 5


def test_floats_inside_records_and_lists_are_shown_the_same_way_and_specials_stay():
    lines, _ = printed([{"alarm": True, "value": 48.313000000000002, "at": [0.1 + 0.2, 1e-300]},
                        float("nan"), float("inf")])
    assert lines == ['temperature  {"alarm":true,"value":48.313,"at":[0.3,1e-300]}',
                     "temperature  NaN", "temperature  Infinity"]


def test_the_values_a_callback_gets_are_not_changed():
    v = {"value": 48.14999999999999}
    printed([v])
    assert v == {"value": 48.14999999999999}
