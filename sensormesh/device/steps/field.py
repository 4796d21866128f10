# Steps: field: one value out of a structured one, by key, index or dotted path.
# Loaded when an assignment first names one of them (kinds.FAMILIES); the step
# protocol and the MicroPython notes on hot methods are in steps/__init__.py.
from sensormesh.device.steps import Step


def dig(value, path):
    # An int part also finds a dict's string key ("0"): JSON objects only have string keys.
    for k in path:
        try:
            value = value[k]
        except Exception:
            if type(k) is not int or type(value) is not dict:
                raise
            value = value[str(k)]
    return value


class Field(Step):
    TYPE = "field"
    ARGS = ["key"]
    THROUGH = True    # its out count: every value in but those dropped (report.out_count)

    def setup(self, params, n_inputs):
        from sensormesh.device.steps.more_params import key_path
        self.path = key_path(self, params.get("key"))
        self.what = "no field %r" % (params.get("key"),)
        if len(self.path) == 1 and type(self.path[0]) is not int:
            self.key = self.path[0]
            self.put = self._put_key

    def _put_key(self, value):
        self.n_in += 1
        try:
            value = value[self.key]
        except Exception:
            self.failed(value)
            return
        self.emit(value)

    def put(self, value):
        self.n_in += 1
        try:
            value = dig(value, self.path)
        except Exception:
            self.failed(value)
            return
        self.emit(value)



# type name -> class, read by kinds.step_class()
CLASSES = {"field": Field}
