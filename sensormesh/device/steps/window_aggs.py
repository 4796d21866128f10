# Step: window with an aggregate other than sum and mean (min, max, count, list): the class with
# their puts. make.build takes it instead of windows.Window for such a window, so a board running
# a sum or mean window (the usual one) does not load this code. The step protocol and the
# MicroPython notes on hot methods are in steps/__init__.py.
from sensormesh.device.steps.windows import Window


class OtherAggWindow(Window):
    """A window aggregating by min, max, count or list (make.window_setup picks the put)."""

    def _put_min(self, value):
        try:
            if self.k == 0:
                self.acc = value + 0  # numbers only, as for sum
            elif value < self.acc:
                self.acc = value
        except Exception:
            self.failed(value)
            return
        k = self.k = self.k + 1
        if k == 1 or k == self.edge:
            self._edge(k)

    def _put_max(self, value):
        try:
            if self.k == 0:
                self.acc = value + 0
            elif value > self.acc:
                self.acc = value
        except Exception:
            self.failed(value)
            return
        k = self.k = self.k + 1
        if k == 1 or k == self.edge:
            self._edge(k)

    def _put_list(self, value):
        self.acc.append(value)
        k = self.k = self.k + 1
        if k == 1 or k == self.edge:
            self._edge(k)

    def _put_count(self, value):
        k = self.k = self.k + 1
        if k == 1 or k == self.edge:
            self._edge(k)


# type name -> class, read by kinds.step_class() for a window with one of these aggregates
CLASSES = {"window": OtherAggWindow}
