# The names shipped user code defines (shipped.py runs the code): resolve "module:name" in the
# registry an assignment's code became. A deployment loads this small module for each step that
# names a shipped function (Runtime.resolve), at its fullest moment, and forgets it after on a
# board running .mpy files; shipped.py, which compiles and runs the code, is not loaded then.


class ShippedError(ValueError):
    """Shipped source that does not compile or run, or a reference to a name it lacks (a bad
    assignment: a deployment refuses it, runtime/deploy.py)."""


def resolve(registry, ref):
    """'module:name' -> the object the shipped module defines under that name."""
    if type(ref) is not str or ref.count(":") != 1:
        raise ShippedError("bad reference %r: expected 'module:name'" % (ref,))
    module, _, name = ref.partition(":")
    namespace = registry.get(module)
    if namespace is None:
        have = ", ".join(sorted(registry)) or "none"
        raise ShippedError("no shipped module '%s' for '%s' (shipped: %s)" % (module, ref, have))
    try:
        return namespace[name]
    except KeyError:
        raise ShippedError("shipped module '%s' defines no '%s'" % (module, name))
