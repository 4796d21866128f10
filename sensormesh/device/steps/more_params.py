# The parameter checks that only some families' setup calls: a number (num_param: alarm, change,
# filters) and a key path into structured values (key_path: field, alarm). Loaded by such a setup
# while a deployment makes its steps and forgotten after that stage on a board running .mpy files
# (runtime/deploy.py); make.py keeps the checks every deployment's common steps (map, filter,
# window) need, so theirs does not load this module.


def num_param(step, name, default, least=None):
    v = step.params.get(name, default)
    if v is None:
        raise step.bad("%s needs parameter '%s'" % (step.TYPE, name))
    if (type(v) is not int and type(v) is not float) or v != v:
        raise step.bad("%s must be a number, got %r" % (name, v))
    if least is not None and v < least:
        raise step.bad("%s must be >= %s, got %r" % (name, least, v))
    return v


def key_path(step, key):
    """field/alarm key -> list of keys: "accel.0" -> ["accel", 0]; 3 -> [3]; ["a", 1] as is."""
    if type(key) is int:
        return [key]
    if type(key) is list and key:
        for k in key:
            if type(k) is not int and (type(k) is not str or not k):
                raise step.bad("key %r: list items must be names or indexes" % (key,))
        return key
    if type(key) is not str or not key:
        raise step.bad("key must be a name, an index or a dotted path, got %r" % (key,))
    out = []
    for part in key.split("."):
        if not part:
            raise step.bad("key %r has an empty part" % key)
        digits = part[1:] if part[0] == "-" else part
        out.append(int(part) if digits.isdigit() else part)
    return out
