# User steps for rotary_alarm.yaml, shipped to the board that runs them as source code.

BASE = 48.0      # degrees C at encoder position 0
PER_STEP = 0.25  # degrees C per encoder step


def degrees(position):
    """Encoder position (steps) -> alarm threshold in degrees C."""
    return BASE + position * PER_STEP
