# Step: alarm, a threshold with hysteresis. A family of its own (kinds.FAMILIES), so a
# board that runs throttle or changes does not load it; the step protocol is in steps/__init__.py.
from sensormesh.device.steps import NONE, Step
from sensormesh.device.steps.field import dig


class Alarm(Step):
    """Threshold with hysteresis; emits {"alarm", "value", "threshold"} on state changes only.

    One input: fires when value > high, clears when value < low.
    Two inputs: port 1 sets the threshold t; fires when value > t, clears when
    value < t - hysteresis."""
    TYPE = "alarm"
    ARGS = ["high", "low", "hysteresis", "key"]
    INPUTS = (1, 2)

    def setup(self, params, n_inputs):
        from sensormesh.device.steps.more_params import key_path, num_param
        self.dynamic = n_inputs == 2
        if self.dynamic:
            for name in ("high", "low"):
                if name in params:
                    raise self.bad("alarm with 2 inputs takes its threshold from port 1, "
                                   "not '%s' (use hysteresis)" % name)
            self.hysteresis = num_param(self, "hysteresis", 0, 0)
            self.hi = self.lo = None
        else:
            if "hysteresis" in params:
                raise self.bad("alarm with 1 input takes high and low, not 'hysteresis'")
            self.hi = num_param(self, "high", None)
            self.lo = num_param(self, "low", self.hi)
            if self.lo > self.hi:
                raise self.bad("alarm low (%r) must be <= high (%r)" % (self.lo, self.hi))
        key = params.get("key")
        self.path = None if key is None else key_path(self, key)
        self.what = "alarm needs a number"
        self.unarmed = 0   # values dropped before the first threshold
        self.on = None     # unknown until the first value
        self.x = NONE     # the last value compared

    def inlet(self, port):
        fn = self.base_inlet(port)
        if port and not self.dynamic:
            raise self.bad("alarm with high/low has one input")
        return fn

    def put(self, value):
        self.n_in += 1
        try:
            x = value if self.path is None else dig(value, self.path)
            x + 0
        except Exception:
            self.failed(value)
            return
        if self.hi is None:
            # no threshold yet: counted, logged once, not an error
            self.dropped += 1
            self.unarmed += 1
            if self.unarmed == 1:
                self.ctx.log("step '%s': alarm has no threshold yet (port 1), dropping values"
                             % self.id)
            return
        self.x = x
        self._check(x)

    def put1(self, t):
        self.n_in += 1
        try:
            t + 0
        except Exception:
            self._bad_threshold(t)
            return
        self.hi = t
        self.lo = t - self.hysteresis
        if self.x is not NONE:
            self._check(self.x)

    def _bad_threshold(self, t):
        self.failed(t, "alarm threshold needs a number")

    def _check(self, x):
        on = self.on
        if on:
            if x < self.lo:
                self._set(False, x, self.lo)
        elif on is None:
            self.on = x > self.hi
            if self.on:
                self._set(True, x, self.hi)
        elif x > self.hi:
            self._set(True, x, self.hi)

    def _set(self, on, x, t):
        self.on = on
        self.n_out += 1
        self.emit({"alarm": on, "value": x, "threshold": t})

    def stats(self):
        s = self.base_stats()
        s["alarm"] = self.on
        return s


# type name -> class, read by kinds.step_class()
CLASSES = {"alarm": Alarm}
