# User functions -> source code shipped to devices inside an assignment.
#
# A `map` or `filter` step names its function as "module:name". When the user passes a Python
# function (or a class), the controller ships its *source*: devices may run MicroPython, so
# pickled code objects are no use. Extraction takes the definition with inspect.getsource,
# parses it with ast, and resolves every global name the code reads:
#   - a module (`import math`)            -> an import line in the shipped module
#   - a function imported from a library   -> `from math import sqrt`
#   - a literal constant (int, str, tuple of literals, ...)  -> `NAME = <literal>`
#   - another function/class of the same file -> shipped alongside, recursively
# Anything else (an object, a lambda, a closure over an object) cannot be rebuilt on a device
# and is a ShippingError that suggests a module-level `def`. Closures over literals are shipped
# as a small factory that rebuilds the closure with the same values.
#
# The same parse finds what the code needs from the interpreter: imports of modules that
# MicroPython lacks (numpy, statistics, typing...) or syntax it lacks (`match`) make a step
# CPython-only; MicroPython-only modules (machine, esp32...) make it MicroPython-only.
# Imports inside `try: ... except ImportError:` are optional and restrict nothing.
import ast
import builtins
import dis
import importlib.util
import inspect
import math
import os
import re
import sys
import sysconfig
import textwrap
import types

from sensormesh.controller.errors import ShippingError

INTERPRETERS = frozenset(("cpython", "micropython"))

# Modules both CPython and MicroPython have (MicroPython's names for its standard library).
PORTABLE_MODULES = frozenset((
    "array", "asyncio", "binascii", "builtins", "cmath", "collections", "errno", "gc",
    "hashlib", "heapq", "io", "json", "math", "os", "platform", "random", "re", "select",
    "socket", "ssl", "struct", "sys", "time", "sensormesh",
))

# Modules only MicroPython has: hardware, the ESP32 port, and the old u-prefixed names.
MICROPYTHON_ONLY_MODULES = frozenset((
    "machine", "micropython", "esp", "esp32", "network", "bluetooth", "dht", "onewire",
    "neopixel", "framebuf", "cryptolib", "deflate", "uctypes", "vfs", "espnow",
    "uarray", "uasyncio", "ubinascii", "ucollections", "uerrno", "uhashlib", "uheapq", "uio",
    "ujson", "uos", "urandom", "ure", "uselect", "usocket", "ussl", "ustruct", "usys", "utime",
))

# sensormesh's own CPython-only parts (the rest of the package runs on both).
CPYTHON_ONLY_PACKAGES = ("sensormesh.controller", "sensormesh.api", "sensormesh.cli")

# time functions that exist on one interpreter only (attribute use on the `time` module).
_TIME_ONLY = {
    "ticks_ms": "micropython", "ticks_us": "micropython", "ticks_cpu": "micropython",
    "ticks_add": "micropython", "ticks_diff": "micropython", "sleep_ms": "micropython",
    "sleep_us": "micropython",
    "monotonic": "cpython", "monotonic_ns": "cpython", "perf_counter": "cpython",
    "perf_counter_ns": "cpython", "process_time": "cpython", "strftime": "cpython",
}

_LITERAL_SCALARS = (type(None), bool, int, float, complex, str, bytes)


def interpreters_for_module(modname):
    """(interpreters that have `modname`, reason or None)."""
    for pkg in CPYTHON_ONLY_PACKAGES:
        if modname == pkg or modname.startswith(pkg + "."):
            return frozenset(("cpython",)), "imports %s (controller only)" % modname
    top = modname.split(".")[0]
    if top in PORTABLE_MODULES:
        return INTERPRETERS, None
    if top in MICROPYTHON_ONLY_MODULES:
        return frozenset(("micropython",)), "imports %s, which only MicroPython has" % top
    return frozenset(("cpython",)), "imports %s, which MicroPython lacks" % top


class Shipped:
    """One shipped function or class: its definition and what it needs."""

    def __init__(self, module, name, source, origin):
        self.module = module        # module name in the assignment's "code"
        self.name = name            # name inside that module
        self.source = source        # the definition (a def, a class, or a closure factory)
        self.origin = origin        # "file.py:12", for messages
        self.imports = []           # module-level import lines it needs
        self.constants = {}         # NAME -> literal source
        self.helpers = []           # other Shipped of the same module it calls
        self.interpreters = INTERPRETERS
        self.reasons = []           # why it is restricted to fewer interpreters

    @property
    def ref(self):
        return "%s:%s" % (self.module, self.name)

    def restrict(self, interps, reason):
        new = self.interpreters & interps
        if new != self.interpreters and reason:
            self.reasons.append(reason)
        self.interpreters = new

    def closure(self):
        """This function and every helper it needs, helpers first."""
        out, seen = [], set()

        def visit(s):
            if id(s) in seen:
                return
            seen.add(id(s))
            for h in s.helpers:
                visit(h)
            out.append(s)
        visit(self)
        return out

    def size(self):
        return sum(len(s.source) for s in self.closure())

    def __repr__(self):
        return "Shipped(%s, %s)" % (self.ref, "|".join(sorted(self.interpreters)))


class ModuleRef(Shipped):
    """A function the device already has (math:sqrt, statistics:mean, a library's function).

    Devices resolve "module:name" in shipped code only, so this ships a one-line module that
    imports it: {"lib_math": "from math import sqrt"} and the step refers to "lib_math:sqrt"."""

    def __init__(self, module, name):
        Shipped.__init__(self, "lib_" + module.replace(".", "_"), name, "", "%s:%s" % (module, name))
        self.target = "%s:%s" % (module, name)
        self.imports = ["from %s import %s" % (module, name)]
        interps, reason = interpreters_for_module(module)
        self.restrict(interps, reason)

    def size(self):
        return len(self.imports[0])

    def __repr__(self):
        return "ModuleRef(%s)" % self.target


def pack(shipped):
    """{module: source} for a collection of Shipped (ModuleRef included: a one-line import).

    Each module holds only what these functions need: the import lines, the constants, the
    definitions (helpers before the code that uses them, in case a class derives from one)."""
    modules = {}
    for s in shipped:
        for part in s.closure():
            m = modules.setdefault(part.module, {"imports": [], "constants": {}, "defs": [], "names": set()})
            for line in part.imports:
                if line not in m["imports"]:
                    m["imports"].append(line)
            m["constants"].update(part.constants)
            if part.name not in m["names"]:
                m["names"].add(part.name)
                m["defs"].append(part)
    out = {}
    for name in sorted(modules):
        m = modules[name]
        chunks = []
        if m["imports"]:
            chunks.append("\n".join(sorted(m["imports"])))
        if m["constants"]:
            chunks.append("\n".join("%s = %s" % kv for kv in sorted(m["constants"].items())))
        for d in m["defs"]:
            if d.source:
                chunks.append("# %s\n%s" % (d.origin, d.source))
        out[name] = "\n\n".join(chunks) + "\n"
    return out


# -- literals --------------------------------------------------------------------------------

def is_literal(value, _depth=0):
    """True for values that can be rebuilt from their source text on any interpreter."""
    if _depth > 20:
        return False
    if isinstance(value, _LITERAL_SCALARS) and type(value) in _LITERAL_SCALARS:
        return True
    if type(value) in (tuple, list, set, frozenset):
        return all(is_literal(v, _depth + 1) for v in value)
    if type(value) is dict:
        return all(is_literal(k, _depth + 1) and is_literal(v, _depth + 1) for k, v in value.items())
    return False


def literal_source(value):
    """Source text that evaluates to `value` (is_literal(value) must hold)."""
    if type(value) is float:
        if math.isnan(value):
            return "float('nan')"
        if math.isinf(value):
            return "float('inf')" if value > 0 else "float('-inf')"
        return repr(value)
    if type(value) is tuple:
        inner = ", ".join(literal_source(v) for v in value)
        return "(%s,)" % inner if len(value) == 1 else "(%s)" % inner
    if type(value) is list:
        return "[%s]" % ", ".join(literal_source(v) for v in value)
    if type(value) in (set, frozenset):
        body = "{%s}" % ", ".join(literal_source(v) for v in sorted(value, key=repr)) if value else "set()"
        return "frozenset(%s)" % body if type(value) is frozenset else body
    if type(value) is dict:
        return "{%s}" % ", ".join("%s: %s" % (literal_source(k), literal_source(v)) for k, v in value.items())
    return repr(value)


# -- where code comes from ---------------------------------------------------------------------

def _library_dirs():
    dirs = set()
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        p = sysconfig.get_paths().get(key)
        if p:
            dirs.add(os.path.realpath(p))
    return tuple(sorted(dirs))


_LIBRARY_DIRS = _library_dirs()
_SENSORMESH_DIR = os.path.realpath(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def is_library_module(modname):
    """True if `modname` is installed code (stdlib, site-packages, sensormesh), not the user's."""
    if modname in sys.builtin_module_names or modname.split(".")[0] in ("sensormesh",):
        return True
    mod = sys.modules.get(modname)
    f = getattr(mod, "__file__", None) if mod is not None else None
    if f is None:
        return mod is not None and modname != "__main__"
    f = os.path.realpath(f)
    return f.startswith(_LIBRARY_DIRS) or f.startswith(_SENSORMESH_DIR + os.sep)


def _short_origin(path, line):
    return "%s:%s" % (os.path.basename(path), line)


def _sanitize(stem):
    s = re.sub(r"[^A-Za-z0-9_]", "_", stem)
    if not s or s[0].isdigit():
        s = "_" + s
    return s


# -- the shipper ---------------------------------------------------------------------------------

class CodeShipper:
    """Ships user functions for one pipeline; the same object always gets the same ref.

    Module names: one shipped module per user source file, "user_<file stem>"."""

    def __init__(self):
        self._by_obj = {}           # id(obj) -> (obj, Shipped)
        self._modules = {}          # real source path -> module name
        self._names = {}            # module name -> {name: obj}
        self._file_modules = {}     # real path of a loaded file -> python module

    # public -------------------------------------------------------------------------------

    def ship(self, fn, where="", base_dir=None):
        """Shipped or ModuleRef for `fn`: a function, a class, "module:name" or "path.py:name"."""
        if isinstance(fn, str):
            return self.ship_ref(fn, where, base_dir)
        if isinstance(fn, (types.BuiltinFunctionType, types.BuiltinMethodType)):
            mod = getattr(fn, "__module__", None)
            if mod and getattr(sys.modules.get(mod), fn.__name__, None) is fn:
                return ModuleRef(mod, fn.__name__)
            raise ShippingError("%s%r is a built-in without a module to import it from on a device"
                                % (where, fn))
        if isinstance(fn, types.FunctionType) and fn.__name__ == "<lambda>":
            raise ShippingError(
                "%sa lambda cannot be shipped to a device (its source is not a separate definition); "
                "write a module-level function instead, e.g. `def my_step(x): return ...`" % where)
        if not (isinstance(fn, types.FunctionType) or inspect.isclass(fn)):
            raise ShippingError("%s%r cannot be shipped: pass a module-level function or class "
                                "(defined with def/class in a .py file)" % (where, fn))
        modname = getattr(fn, "__module__", None)
        if modname and modname != "__main__" and is_library_module(modname) \
                and getattr(sys.modules.get(modname), fn.__name__, None) is fn:
            return ModuleRef(modname, fn.__name__)
        return self._ship_object(fn, where)

    def ship_ref(self, text, where="", base_dir=None):
        """"module:name" -> ModuleRef; "path/to/file.py:name" -> the function from that file."""
        path, sep, name = text.rpartition(":")
        if not sep or not path or not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", name):
            raise ShippingError("%s%r is not a function reference: use \"module:name\" or "
                                "\"path/to/file.py:name\"" % (where, text))
        if path.endswith(".py"):
            fn = self.load_from_file(path, name, where, base_dir)
            return self._ship_object(fn, where)
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_.]*$", path):
            raise ShippingError("%s%r: %r is not a module name" % (where, text, path))
        return ModuleRef(path, name)

    def load_from_file(self, path, name, where="", base_dir=None):
        """Import the user's file (once) and return its attribute `name`."""
        full = path if os.path.isabs(path) else os.path.join(base_dir or os.getcwd(), path)
        real = os.path.realpath(full)
        if not os.path.isfile(real):
            raise ShippingError("%sfile %s not found (looked at %s)" % (where, path, real))
        mod = self._file_modules.get(real)
        if mod is None:
            stem = _sanitize(os.path.splitext(os.path.basename(real))[0])
            pyname = "_sensormesh_user_%s_%x" % (stem, abs(hash(real)))
            spec = importlib.util.spec_from_file_location(pyname, real)
            mod = importlib.util.module_from_spec(spec)
            sys.modules[pyname] = mod   # inspect.getsource needs the module to find classes
            try:
                spec.loader.exec_module(mod)
            except SyntaxError as e:
                del sys.modules[pyname]
                raise ShippingError("%s%s line %s: syntax error: %s" % (where, path, e.lineno, e.msg))
            except Exception as e:
                del sys.modules[pyname]
                raise ShippingError("%simporting %s failed: %s: %s" % (where, path, type(e).__name__, e))
            except SystemExit as e:
                # a script's main() run at import (argparse, sys.exit): it must not end the
                # controller's command silently with the script's exit status
                del sys.modules[pyname]
                raise ShippingError("%simporting %s ran code that ended the program (sys.exit(%r)); keep a "
                                    "script's own code under `if __name__ == \"__main__\":`"
                                    % (where, path, e.code)) from None
            self._file_modules[real] = mod
        if not hasattr(mod, name):
            names = sorted(n for n, v in vars(mod).items()
                           if not n.startswith("_") and (inspect.isfunction(v) or inspect.isclass(v))
                           and getattr(v, "__module__", None) == mod.__name__)
            raise ShippingError("%s%s has no %r (its functions and classes: %s)"
                                % (where, path, name, ", ".join(names) or "none"))
        found = getattr(mod, name)
        if not callable(found):
            raise ShippingError("%s%s in %s is %s (of type %s), not a function or class"
                                % (where, name, path, _short_repr(found), type(found).__name__))
        return found

    # internals -----------------------------------------------------------------------------

    def _module_for(self, obj):
        src = inspect.getsourcefile(obj) or getattr(getattr(obj, "__code__", None), "co_filename", "?")
        real = os.path.realpath(src)
        m = self._modules.get(real)
        if m is None:
            stem = _sanitize(os.path.splitext(os.path.basename(real))[0])
            # a prefix keeps user files from shadowing device modules (main, boot, json...)
            base = stem if stem.startswith("user_") else "user_" + stem
            m, n = base, 2
            while m in self._modules.values():
                m, n = "%s_%d" % (base, n), n + 1
            self._modules[real] = m
            self._names[m] = {}
        return m

    def _unique_name(self, module, name, obj):
        taken = self._names[module]
        if name not in taken or taken[name] is obj:
            taken[name] = obj
            return name
        n = 2
        while "%s_%d" % (name, n) in taken:
            n += 1
        taken["%s_%d" % (name, n)] = obj
        return "%s_%d" % (name, n)

    def _ship_object(self, obj, where, _stack=()):
        hit = self._by_obj.get(id(obj))
        if hit is not None and hit[0] is obj:
            return hit[1]
        label = getattr(obj, "__qualname__", getattr(obj, "__name__", repr(obj)))
        if obj in _stack:
            raise ShippingError("%s%s: recursive definitions are not supported" % (where, label))
        try:
            lines, first = inspect.getsourcelines(obj)
            path = inspect.getsourcefile(obj) or "?"
        except (OSError, TypeError):
            raise ShippingError(
                "%sthe source of %s is not available (defined in an interactive session or with "
                "exec?); define it in a .py file" % (where, label))
        text = textwrap.dedent("".join(lines))
        origin = _short_origin(path, first)
        try:
            tree = ast.parse(text)
        except SyntaxError:
            raise ShippingError("%s%s (%s): its source could not be parsed on its own; "
                                "define it at module level" % (where, label, origin))
        node = tree.body[0] if tree.body else None
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            raise ShippingError("%s%s (%s) is not a def or class statement (a lambda assigned to a "
                                "name?); write a module-level def" % (where, label, origin))
        if isinstance(node, ast.AsyncFunctionDef):
            raise ShippingError("%s%s (%s): async functions cannot be steps; steps are called "
                                "once per value" % (where, label, origin))
        if node.decorator_list:
            raise ShippingError("%s%s (%s) is decorated; decorators are not shipped, ship the "
                                "undecorated function" % (where, label, origin))
        if isinstance(node, ast.ClassDef) and (
                node.keywords or not all(isinstance(b, ast.Name) for b in node.bases)):
            raise ShippingError("%s%s (%s): only plain classes (bases by name, no metaclass) can "
                                "be shipped" % (where, label, origin))

        module = self._module_for(obj)
        name = self._unique_name(module, obj.__name__, obj)
        shipped = Shipped(module, name, "", origin)
        self._by_obj[id(obj)] = (obj, shipped)
        try:
            self._analyse(obj, node, shipped, where, _stack + (obj,))
        except ShippingError:
            del self._by_obj[id(obj)]
            raise
        return shipped

    def _analyse(self, obj, node, shipped, where, stack):
        label = "%s (%s)" % (obj.__qualname__, shipped.origin)
        _strip(node)
        node.name = shipped.name if not getattr(obj, "__closure__", None) else obj.__name__
        globals_ = getattr(obj, "__globals__", None)
        if globals_ is None:   # a class: its methods share their module's globals
            globals_ = vars(sys.modules.get(obj.__module__, types.ModuleType("?")))

        # what the code needs from the interpreter
        for modname, optional in _imports_in(node):
            if not optional:
                interps, reason = interpreters_for_module(modname)
                shipped.restrict(interps, reason)
        for interp, reason in _syntax_needs(node):
            shipped.restrict(frozenset((interp,)), reason)

        # the global names the code reads
        for gname in sorted(_global_names(obj, node)):
            if gname in globals_:
                self._resolve_global(gname, globals_[gname], obj, shipped, where, label, stack)
            elif hasattr(builtins, gname):
                continue
            else:
                raise ShippingError("%s%s uses %r, which is not defined in its module" % (where, label, gname))

        # closures: rebuild with the captured literal values
        cells = getattr(obj, "__closure__", None)
        if cells:
            values = {}
            for var, cell in zip(obj.__code__.co_freevars, cells):
                try:
                    v = cell.cell_contents
                except ValueError:
                    raise ShippingError("%s%s closes over %r, which has no value yet" % (where, label, var))
                if not is_literal(v):
                    raise ShippingError(
                        "%s%s closes over %r (of type %s); only closures over literal values can be "
                        "shipped. Make it a module-level def that takes what it needs from "
                        "module-level constants" % (where, label, var, type(v).__name__))
                values[var] = v
            body = "".join("    %s = %s\n" % (k, literal_source(v)) for k, v in sorted(values.items()))
            inner = textwrap.indent(ast.unparse(node), "    ")
            factory = "_make_" + shipped.name
            shipped.source = "def %s():\n%s%s\n    return %s\n\n%s = %s()" % (
                factory, body, inner, obj.__name__, shipped.name, factory)
        else:
            shipped.source = ast.unparse(node)

    def _resolve_global(self, gname, value, obj, shipped, where, label, stack):
        if isinstance(value, types.ModuleType):
            modname = value.__name__
            if not is_library_module(modname):
                raise ShippingError(
                    "%s%s uses module %r, which is the user's own and does not exist on devices; "
                    "put the code it needs in the same file" % (where, label, gname))
            line = "import %s" % modname if modname == gname else "import %s as %s" % (modname, gname)
            shipped.imports.append(line)
            shipped.restrict(*interpreters_for_module(modname))
            return
        if is_literal(value):
            shipped.constants[gname] = literal_source(value)
            return
        if value is obj:
            return      # a recursive function or a class naming itself
        if isinstance(value, (types.FunctionType, type, types.BuiltinFunctionType)):
            vmod = getattr(value, "__module__", None)
            vname = getattr(value, "__name__", gname)
            if vmod == getattr(obj, "__module__", None) and not is_library_module(vmod or "__main__"):
                if isinstance(value, types.FunctionType) and value.__name__ == "<lambda>":
                    raise ShippingError("%s%s calls %r, a lambda; make it a def" % (where, label, gname))
                helper = self._ship_object(value, where, stack)
                if helper.name != gname:
                    raise ShippingError("%s%s refers to %s as %r; use its own name"
                                        % (where, label, helper.name, gname))
                shipped.helpers.append(helper)
                shipped.restrict(helper.interpreters, "; ".join(helper.reasons) or None)
                return
            if vmod and is_library_module(vmod) and getattr(sys.modules.get(vmod), vname, None) is value:
                line = ("from %s import %s" % (vmod, vname) if vname == gname
                        else "from %s import %s as %s" % (vmod, vname, gname))
                shipped.imports.append(line)
                shipped.restrict(*interpreters_for_module(vmod))
                return
            raise ShippingError(
                "%s%s uses %r from %s, another file of the user's; devices only get the "
                "functions of one file per module: move it into the same file" % (where, label, gname, vmod))
        raise ShippingError(
            "%s%s uses the global %r (of type %s), which is not a literal constant, a module or a "
            "function of the same file, so it cannot be rebuilt on a device. Make it a literal "
            "or compute it inside a module-level def" % (where, label, gname, type(value).__name__))


def _strip(node):
    """Remove docstrings and annotations in place: they cost heap on MicroPython and
    annotations would be evaluated on CPython devices that may lack the names they use."""
    for n in ast.walk(node):
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)):
            n.returns = None
            for a in n.args.posonlyargs + n.args.args + n.args.kwonlyargs:
                a.annotation = None
            for a in (n.args.vararg, n.args.kwarg):
                if a is not None:
                    a.annotation = None
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            body = n.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                body.pop(0)
            new = []
            for st in body:
                if isinstance(st, ast.AnnAssign):
                    if st.value is None:
                        continue
                    st = ast.Assign(targets=[st.target], value=st.value, lineno=st.lineno)
                new.append(st)
            n.body = new or [ast.Pass()]


def _imports_in(node):
    """[(module name, optional)] for every import statement inside the definition."""
    out = []

    def visit(n, optional):
        if isinstance(n, ast.Try):
            catches = any(h.type is None or _names_import_error(h.type) for h in n.handlers)
            for st in n.body:
                visit(st, optional or catches)
            for part in n.handlers + n.orelse + n.finalbody:
                visit(part, optional)
            return
        if isinstance(n, ast.Import):
            for a in n.names:
                out.append((a.name, optional))
        elif isinstance(n, ast.ImportFrom):
            if n.level == 0 and n.module:
                out.append((n.module, optional))
        for child in ast.iter_child_nodes(n):
            visit(child, optional)
    visit(node, False)
    return out


def _names_import_error(t):
    names = [t] if not isinstance(t, ast.Tuple) else t.elts
    return any(isinstance(x, ast.Name) and x.id in ("ImportError", "ModuleNotFoundError", "Exception",
                                                   "BaseException") for x in names)


def _syntax_needs(node):
    out = []
    for n in ast.walk(node):
        if isinstance(n, ast.Match):
            out.append(("cpython", "uses match, which MicroPython lacks"))
        elif isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id in ("time", "utime"):
            need = _TIME_ONLY.get(n.attr)
            if need:
                out.append((need, "uses time.%s, which only %s has (sensormesh.device.compat has both)"
                            % (n.attr, "MicroPython" if need == "micropython" else "CPython")))
    return out


def _code_objects(code):
    yield code
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            yield from _code_objects(c)


def _global_names(obj, node):
    """Global names the definition reads: from the bytecode of its functions, plus names in
    default values and class-level statements (evaluated when the definition runs)."""
    names = set()
    funcs = []
    if isinstance(obj, types.FunctionType):
        funcs.append(obj)
    else:
        for v in vars(obj).values():
            if isinstance(v, (staticmethod, classmethod)):
                v = v.__func__
            elif isinstance(v, property):
                funcs.extend(f for f in (v.fget, v.fset, v.fdel) if f is not None)
                continue
            if isinstance(v, types.FunctionType):
                funcs.append(v)
    for f in funcs:
        for code in _code_objects(f.__code__):
            for ins in dis.get_instructions(code):
                if ins.opname in ("LOAD_GLOBAL", "LOAD_NAME", "STORE_GLOBAL", "DELETE_GLOBAL"):
                    names.add(ins.argval)
    # evaluated at definition time: defaults, base classes, class body statements
    exprs = []
    for n in ast.walk(node):
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            exprs.extend(n.args.defaults)
            exprs.extend(d for d in n.args.kw_defaults if d is not None)
    if isinstance(node, ast.ClassDef):
        exprs.extend(node.bases)
        for st in node.body:
            if not isinstance(st, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                exprs.append(st)
    local = set()
    if isinstance(node, ast.ClassDef):
        for st in node.body:
            for t in ast.walk(st):
                if isinstance(t, ast.Name) and isinstance(t.ctx, ast.Store):
                    local.add(t.id)
                elif isinstance(t, (ast.FunctionDef, ast.ClassDef)):
                    local.add(t.name)
    for e in exprs:
        for t in ast.walk(e):
            if isinstance(t, ast.Name) and isinstance(t.ctx, ast.Load) and t.id not in local:
                names.add(t.id)
    if isinstance(obj, type):
        names.discard(obj.__name__)
    return names


def _short_repr(v):
    r = repr(v)
    return r if len(r) <= 40 else r[:37] + "..."
