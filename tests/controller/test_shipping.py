# Shipping user functions as source: extraction, rejection with advice, interpreter needs.
import shutil
import subprocess

import pytest

import shipping_samples as S
from sensormesh.controller.errors import PlacementError, ShippingError
from sensormesh.controller.shipping import CodeShipper, ModuleRef, pack
from sensormesh.api import Pipeline


def run(shipped, *args):
    """Execute the packed module source in a fresh namespace and call the function."""
    code = pack([shipped])
    ns = {}
    exec(compile(code[shipped.module], shipped.module, "exec"), ns)
    return ns[shipped.name](*args)


def test_function_with_constants_ships_and_runs():
    s = CodeShipper().ship(S.fahrenheit)
    assert s.ref == "user_shipping_samples:fahrenheit"
    src = pack([s])["user_shipping_samples"]
    assert "OFFSET = 32" in src and "RATIO = 1.8" in src
    assert "Celsius" not in src            # docstring stripped
    assert "float" not in src              # annotations stripped
    assert s.interpreters == {"cpython", "micropython"}
    assert run(s, 100) == S.fahrenheit(100)


def test_module_import_and_from_import():
    sh = CodeShipper()
    s = sh.ship(S.norm)
    assert "import math" in s.imports and run(s, [3, 4]) == 5
    s = sh.ship(S.uses_sqrt)
    assert s.imports == ["from math import sqrt"] and run(s, 9) == 3


def test_helper_function_is_shipped_alongside():
    s = CodeShipper().ship(S.uses_helper)
    assert [h.name for h in s.helpers] == ["helper"]
    assert run(s, 2) == 5


def test_recursive_function():
    assert run(CodeShipper().ship(S.countdown), 5) == 0


def test_literal_dict_constant():
    s = CodeShipper().ship(S.uses_limits)
    assert "LIMITS = " in pack([s])[s.module] and run(s, 31) is True


def test_lambda_rejected_with_advice():
    with pytest.raises(ShippingError, match="lambda.*module-level function"):
        CodeShipper().ship(S.square)


def test_global_object_rejected_names_it():
    with pytest.raises(ShippingError, match="'THING' \\(of type Thing\\).*not a literal"):
        CodeShipper().ship(S.uses_thing)


def test_closure_over_literals_becomes_factory():
    sh = CodeShipper()
    a, b = sh.ship(S.double), sh.ship(S.triple)
    assert a.name == "scale" and b.name == "scale_2"       # two closures, one source name
    assert run(a, 4) == 8 and run(b, 2) == 7.0
    both = pack([a, b])[a.module]
    ns = {}
    exec(both, ns)
    assert ns["scale"](1) == 2 and ns["scale_2"](1) == 3.5


def test_closure_over_object_rejected():
    with pytest.raises(ShippingError, match="closes over 't'.*literal"):
        CodeShipper().ship(S.make_bad_closure())


def test_same_object_same_ref():
    sh = CodeShipper()
    assert sh.ship(S.fahrenheit) is sh.ship(S.fahrenheit)


def test_class_ships():
    s = CodeShipper().ship(S.Smoother)
    src = pack([s])[s.module]
    assert "OFFSET = 32" in src
    ns = {}
    exec(src, ns)
    sm = ns["Smoother"]()
    assert sm(10) == 10 and sm(20) == 15.0


def test_builtin_and_library_functions_are_references():
    sh = CodeShipper()
    r = sh.ship(S.math.sqrt)
    assert isinstance(r, ModuleRef) and r.ref == "lib_math:sqrt" and r.interpreters == {"cpython", "micropython"}
    # devices resolve names in shipped code only: a one-line module imports it
    assert pack([r]) == {"lib_math": "from math import sqrt\n"}
    assert run(r, 16) == 4
    r = sh.ship(S.statistics.mean)
    assert r.ref == "lib_statistics:mean" and r.interpreters == {"cpython"}
    assert sh.ship("json:dumps").interpreters == {"cpython", "micropython"}


@pytest.mark.parametrize("fn, interps, why", [
    (S.uses_json, {"cpython", "micropython"}, None),
    (S.uses_statistics, {"cpython"}, "statistics, which MicroPython lacks"),
    (S.uses_numpy_inside, {"cpython"}, "numpy, which MicroPython lacks"),
    (S.optional_machine, {"cpython", "micropython"}, None),
    (S.uses_machine, {"micropython"}, "machine, which only MicroPython has"),
    (S.uses_match, {"cpython"}, "match"),
    (S.uses_ticks, {"micropython"}, "ticks_ms"),
])
def test_interpreter_detection(fn, interps, why):
    s = CodeShipper().ship(fn)
    assert s.interpreters == interps
    if why:
        assert any(why in r for r in s.reasons)


def test_file_reference(tmp_path):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "conv.py").write_text("K = 2\n\ndef twice(x):\n    return x * K\n\nsq = lambda x: x\n")
    sh = CodeShipper()
    s = sh.ship("lib/conv.py:twice", base_dir=str(tmp_path))
    assert s.ref == "user_conv:twice" and run(s, 4) == 8
    with pytest.raises(ShippingError, match="has no 'nope'.*twice"):
        sh.ship("lib/conv.py:nope", base_dir=str(tmp_path))
    with pytest.raises(ShippingError, match="not found"):
        sh.ship("missing.py:f", base_dir=str(tmp_path))
    with pytest.raises(ShippingError, match="lambda"):
        sh.ship("lib/conv.py:sq", base_dir=str(tmp_path))


def test_cpython_only_step_with_only_micropython_devices_is_a_planning_error():
    p = Pipeline("x")
    p.device("esp", interpreter="micropython", sensors=["temperature"], address="10.0.0.1:7000")
    p.source("temperature").map(S.uses_statistics).print(on="esp")
    with pytest.raises(PlacementError) as e:
        p.plan("edge")
    assert "uses_statistics" in str(e.value) and "statistics" in str(e.value) and "micropython" in str(e.value)


def test_step_that_can_run_nowhere_is_named():
    p = Pipeline("x")
    p.device("pc", sensors=["temperature"], address="10.0.0.1:7000")
    p.source("temperature").map(S.uses_machine, id="hw", requires="cpython").print()
    with pytest.raises(PlacementError, match="step 'hw'.*can run nowhere.*machine"):
        p.plan()


def test_requires_cpython_keeps_step_off_micropython():
    p = Pipeline("x")
    p.device("esp", interpreter="micropython", sensors=["temperature"], address="10.0.0.1:7000")
    p.device("pc", address="10.0.0.2:7000")
    p.source("temperature").map(S.fahrenheit, id="f", requires="cpython").print(on="esp")
    pl = p.plan("edge")
    assert pl.device_of["f"] == "pc"


@pytest.mark.micropython
@pytest.mark.skipif(shutil.which("micropython") is None, reason="needs the micropython unix port")
def test_shipped_code_runs_on_micropython(tmp_path):
    sh = CodeShipper()
    parts = [sh.ship(f) for f in (S.fahrenheit, S.norm, S.uses_helper, S.double, S.triple, S.Smoother,
                                  S.uses_limits, S.optional_machine)]
    for name, src in pack(parts).items():
        (tmp_path / (name + ".py")).write_text(src)
    script = ("import user_shipping_samples as m\n"
              "sm = m.Smoother(); sm(10)\n"
              "print(m.fahrenheit(100), m.norm([3, 4]), m.uses_helper(2), m.scale(4), m.scale_2(2), sm(20),"
              " m.uses_limits(31), hasattr(m, 'optional_machine'))\n")
    out = subprocess.run(["micropython", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["212.0", "5.0", "5", "8", "7.0", "15.0", "True", "True"]
