# Tests of loading shipped user code (sensormesh/device/runtime/shipped.py), on CPython and MicroPython.
from sensormesh.device.runtime.shipped import ShippedError, load_code, load_module, resolve

USER_STEPS = """\
import math

FACTOR = 9 / 5


def fahrenheit(c):
    return c * FACTOR + 32


def magnitude(v):
    return math.sqrt(sum([x * x for x in v]))


class Smooth:
    def __init__(self):
        self.last = None

    def __call__(self, v):
        self.last = v if self.last is None else (self.last + v) / 2
        return self.last
"""


def error_of(fn):
    try:
        fn()
    except ShippedError as e:
        return str(e)
    raise AssertionError("no ShippedError")


def test_load_and_resolve_functions_and_classes():
    reg = load_code({"user_steps": USER_STEPS, "other": "def f(v):\n    return -v\n"})
    assert sorted(reg) == ["other", "user_steps"]
    f = resolve(reg, "user_steps:fahrenheit")
    assert f(100) == 212.0          # uses the module's own global FACTOR
    assert resolve(reg, "user_steps:magnitude")([3, 4]) == 5.0
    assert resolve(reg, "other:f")(2) == -2
    cls = resolve(reg, "user_steps:Smooth")
    assert isinstance(cls, type)
    s = cls()
    assert s(2) == 2 and s(4) == 3.0
    assert cls.__module__ == "user_steps" if hasattr(cls, "__module__") else True
    assert reg["user_steps"]["__name__"] == "user_steps"


def test_namespaces_are_separate():
    reg = load_code({"a": "X = 1\ndef get():\n    return X\n", "b": "X = 2\n"})
    assert resolve(reg, "a:get")() == 1 and resolve(reg, "b:X") == 2
    assert "X" not in globals()


def test_empty_code():
    assert load_code(None) == {} and load_code({}) == {}


def test_syntax_error_names_module_and_line():
    src = "def f(v):\n    return v\n\ndef g(v):\n    return v +\n"
    msg = error_of(lambda: load_code({"good": "x = 1\n", "broken": src}))
    assert "shipped module 'broken'" in msg, msg
    assert "line 5" in msg, msg
    assert "SyntaxError" in msg and "does not compile" in msg, msg


def test_runtime_error_while_loading_names_module_and_line():
    src = "A = 1\nB = 2\nC = A / (B - 2)\n"
    msg = error_of(lambda: load_module("calc", src))
    assert "shipped module 'calc', line 3" in msg, msg
    assert "ZeroDivisionError" in msg and "while loading" in msg, msg
    msg = error_of(lambda: load_module("imp", "import math\nimport no_such_module_here\n"))
    assert "line 2" in msg and "no_such_module_here" in msg, msg


def test_error_in_a_function_called_while_loading_points_into_the_module():
    src = "def f():\n    return {}['k']\n\nf()\n"
    msg = error_of(lambda: load_module("deep", src))
    assert "shipped module 'deep', line 2" in msg, msg
    assert "KeyError" in msg, msg


def test_errors_at_run_time_show_the_shipped_name_in_tracebacks():
    reg = load_code({"m": "def f(v):\n    return 1 / v\n"})
    f = resolve(reg, "m:f")
    try:
        f(0)
    except ZeroDivisionError as e:
        from sensormesh.device.runtime import shipped_errors
        assert shipped_errors.line_of(e, "<shipped m>") == 2
    else:
        raise AssertionError("no error")


def test_bad_references():
    reg = load_code({"m": "def f(v):\n    return v\n"})
    assert "expected 'module:name'" in error_of(lambda: resolve(reg, "m.f"))
    assert "expected 'module:name'" in error_of(lambda: resolve(reg, "a:b:c"))
    assert "expected 'module:name'" in error_of(lambda: resolve(reg, 3))
    msg = error_of(lambda: resolve(reg, "n:f"))
    assert "no shipped module 'n'" in msg and "shipped: m" in msg, msg
    msg = error_of(lambda: resolve(reg, "m:g"))
    assert msg == "shipped module 'm' defines no 'g'", msg


def test_bad_code_dict():
    assert "must map" in error_of(lambda: load_code(["x"]))
    assert "source must be a string" in error_of(lambda: load_code({"m": b"x = 1"}))
    assert "bad shipped module name" in error_of(lambda: load_code({"a:b": "x = 1"}))


def test_shipped_function_in_a_map_step():
    # the runtime's ctx.resolve is resolve() over the assignment's registry
    from sensormesh.device.steps.make import build
    reg = load_code({"user_steps": USER_STEPS})

    class Ctx:
        def resolve(self, ref):
            return resolve(reg, ref)

        def log(self, text):
            pass

    m = build({"id": "f", "type": "map", "params": {"fn": "user_steps:fahrenheit"},
               "inputs": ["t"]}, Ctx())
    s = build({"id": "s", "type": "map", "params": {"fn": "user_steps:Smooth"},
               "inputs": ["f"]}, Ctx())
    out = []
    m.connect(s)
    s.connect(out.append)
    m.push(0)
    m.push(100)
    assert out == [32.0, 122.0]
