# The names shipped user code defines (shipped.py runs the code): resolve "module:name" in the
# registry an assignment's code became. A deployment loads this small module for each step that
# names a shipped function (Runtime.resolve), at its fullest moment, and forgets it after on a
# board running .mpy files; shipped.py, which compiles and runs the code, is not loaded then.
from sensormesh.device.compat import forget


class ShippedError(ValueError):
    """Shipped source that does not compile or run, or a reference to a name it lacks (a bad
    assignment: a deployment refuses it, runtime/deploy.py)."""


def resolve(registry, ref):
    """'module:name' -> the object the shipped module defines under that name (ShippedError
    saying what is wrong with the reference when it names nothing: shipped_errors.py)."""
    if type(ref) is str and ref.count(":") == 1:
        module, _, name = ref.partition(":")
        namespace = registry.get(module)
        if namespace is not None and name in namespace:
            return namespace[name]
    from sensormesh.device.runtime import shipped_errors   # for the error only
    e = shipped_errors.no_name(registry, ref)
    forget(shipped_errors)
    raise e
