# User code shipped inside an assignment: loading it on the device and finding names in it.
#
# An assignment's "code" maps a module name to its Python source. The device runs each source
# once into a fresh namespace and steps refer to what it defines as "module:name". Namespaces
# are plain dicts, not module objects: MicroPython cannot construct a module on every port, and
# a dict is all exec() needs. Consequences, documented in docs/steps.md:
#   - shipped modules cannot import each other (they are not in sys.modules); each one may
#     import what the device itself has (math, json, time, ...);
#   - every module's __name__ is its shipped name, so classes report it as __module__.
# Errors name the module and, where the interpreter tells us, the line of the shipped source
# (shipped_errors.py, loaded only for such an error, and for a reference that names nothing).
# A deployment keeps this module loaded from running the code (its first stage) until its steps
# have found the shipped functions they call (resolve, Runtime.resolve), and forgets it after
# on a board running .mpy files (runtime/deploy.py).
from sensormesh.device.compat import forget


class ShippedError(ValueError):
    """Shipped source that does not compile or run, or a reference to a name it lacks (a bad
    assignment: a deployment refuses it, runtime/deploy.py)."""

try:
    import builtins
    _compile = getattr(builtins, "compile", None)
except ImportError:  # a port without the builtins module: fall back to exec on the source
    _compile = None


def _fail(module, exc, filename, what):
    """The ShippedError saying so (shipped_errors.py, loaded only for one and forgotten after)."""
    from sensormesh.device.runtime import shipped_errors
    try:
        return shipped_errors.failed(module, exc, filename, what)
    finally:
        forget("sensormesh.device.runtime.shipped_errors")


def load_module(name, source):
    """Run one shipped source into a fresh namespace dict and return it."""
    if type(name) is not str or not name or ":" in name:
        raise ShippedError("bad shipped module name %r" % (name,))
    if type(source) is not str:
        raise ShippedError("shipped module '%s': source must be a string, got %s"
                           % (name, type(source).__name__))
    # what tracebacks show for shipped code; also how shipped_errors.py finds the line in them
    filename = "<shipped %s>" % name
    namespace = {"__name__": name}
    code = source
    if _compile is not None:
        try:
            code = _compile(source, filename, "exec")
        except SyntaxError as e:
            raise _fail(name, e, filename, "does not compile")
    try:
        exec(code, namespace)
    except SyntaxError as e:  # only reached without compile()
        raise _fail(name, e, filename, "does not compile")
    except Exception as e:
        raise _fail(name, e, filename, "failed while loading")
    return namespace


def load_code(code):
    """An assignment's {"module": "source"} -> registry {"module": namespace dict}.

    Modules load in sorted name order, so a failure is reported the same way every time."""
    if code is None:
        return {}
    if type(code) is not dict:
        raise ShippedError("assignment code must map module names to sources, got %s"
                           % type(code).__name__)
    registry = {}
    for name in sorted(code):
        registry[name] = load_module(name, code[name])
    return registry


def run_code(rt, a):
    """A deployment's first stage (runtime/deploy.py): the assignment's code run (compiling it
    needs more free heap, and larger free blocks, than anything after it, so it runs before
    anything else of the deployment is loaded); the steps made later resolve their names in it
    (rt.code: Runtime.resolve). Returns it."""
    rt.code = load_code(a.get("code") if type(a) is dict else None)
    return rt.code


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
