# The error of shipped code that does not compile, or fails while it loads (shipped.py): it names
# the module and, where the interpreter tells, the line of the shipped source; and the error of a
# reference to a name the shipped code does not define (shipped.resolve). Loaded only for such
# an error, so a deployment whose code runs does not load it (nor intern its names).
import sys

from sensormesh.device.runtime.shipped import ShippedError


def line_of(exc, filename):
    """The line of `filename` an exception points at, or None when it cannot be told."""
    lineno = getattr(exc, "lineno", None)  # CPython SyntaxError
    if lineno and getattr(exc, "filename", filename) == filename:
        return lineno
    line = None
    tb = getattr(exc, "__traceback__", None)  # CPython: walk to the innermost shipped frame
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    if line is not None or not hasattr(sys, "print_exception"):
        return line
    # MicroPython keeps the traceback only in printable form: 'File "<shipped m>", line 3'.
    import io
    buf = io.StringIO()
    sys.print_exception(exc, buf)
    mark = 'File "%s", line ' % filename
    for text in buf.getvalue().split("\n"):
        i = text.find(mark)
        if i >= 0:
            digits = text[i + len(mark):].split(",")[0].strip()
            if digits.isdigit():
                line = int(digits)
    return line


def failed(module, exc, filename, what):
    """The ShippedError of shipped module `module` (compiled as `filename`) that raised exc while
    it compiled or loaded (`what`)."""
    line = line_of(exc, filename)
    where = "shipped module '%s'" % module
    if line is not None:
        where += ", line %d" % line
    return ShippedError("%s: %s: %s: %s" % (where, what, type(exc).__name__, exc))


def no_name(registry, ref):
    """The ShippedError of reference `ref` ('module:name'), which names nothing the shipped code
    (registry: module -> its names) defines."""
    if type(ref) is not str or ref.count(":") != 1:
        return ShippedError("bad reference %r: expected 'module:name'" % (ref,))
    module, _, name = ref.partition(":")
    if registry.get(module) is None:
        have = ", ".join(sorted(registry)) or "none"
        return ShippedError("no shipped module '%s' for '%s' (shipped: %s)" % (module, ref, have))
    return ShippedError("shipped module '%s' defines no '%s'" % (module, name))
