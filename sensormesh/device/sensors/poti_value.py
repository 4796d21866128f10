# The value of a potentiometer reading, shared by the board driver (esp32/poti.py) and the
# simulated one (sim/poti.py): {"raw": 0..65535, "fraction": raw / 65535 rounded to 4 places}.
from sensormesh.device.compat import MICROPYTHON


def value(raw):
    """{"raw": .., "fraction": ..} serialized in that key order on both interpreters. MicroPython
    iterates this two-key dict in the reverse of the order it was written (hash order), so there
    it is written the other way round."""
    fraction = round(raw / 65535, 4)
    if MICROPYTHON:
        return {"fraction": fraction, "raw": raw}
    return {"raw": raw, "fraction": fraction}
