# Validation of the data request, on both interpreters.
from sensormesh.device.datarequest import RequestError, parse

SENSORS = ["co2", "dht11", "temperature"]


def refused(body, code, words):
    try:
        parse(body, SENSORS)
    except RequestError as e:
        assert e.code == code, (e.code, code)
        assert words in e.message, (words, e.message)
        return e
    raise AssertionError("accepted %r" % (body,))


def test_defaults():
    assert parse({"sensor": "dht11"}, SENSORS) == ("dht11", 0, 0, 0)
    assert parse({"sensor": "co2", "time-frame": 100, "values-per-time-frame": 5}, SENSORS) == ("co2", 100, 5, 0)


def test_unknown_sensor_names_the_ones_we_have():
    e = refused({"sensor": "gyro"}, "unknown-sensor", "'gyro'")
    assert "co2, dht11, temperature" in e.message
    assert e.to_message()["error"]["sensors"] == SENSORS


def test_bad_types_and_negative_numbers():
    refused({"sensor": 5}, "bad-field", "sensor must be a string")
    refused({"sensor": "co2", "time-frame": "10"}, "bad-field", "time-frame must be a non-negative integer")
    refused({"sensor": "co2", "time-frame": -1}, "bad-field", "must not be negative")
    refused({"sensor": "co2", "values-per-time-frame": True}, "bad-field", "values-per-time-frame")
    refused({"sensor": "co2", "values-per-time-frame": 2.5}, "bad-field", "values-per-time-frame")
    refused({"sensor": "co2", "colour": 1}, "bad-field", "unknown field 'colour'")
    refused([1], "bad-request", "must be a JSON object")
    refused({}, "bad-request", "no sensor")


def test_infinite_and_nan_numbers_are_bad_fields():
    # 1e400 is valid JSON and reads as infinity on both interpreters
    import json
    inf = json.loads("1e400")
    for key in ("time-frame", "values-per-time-frame", "max-frame"):
        for v in (inf, -inf, inf - inf):
            e = refused({"sensor": "co2", key: v}, "bad-field", key + " must be a non-negative integer")
            assert e.to_message()["error"]["code"] == "bad-field"
    assert parse({"sensor": "co2", "time-frame": 1e3}, SENSORS) == ("co2", 1000, 0, 0)
