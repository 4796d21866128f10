# The parameter checks that only some families' setup calls: a number (num_param: alarm, change,
# filters) and a key path into structured values (key_path: field, alarm); and the setups of
# throttle, changes and callback (SETUPS, which make.build takes for them: their running steps
# keep none of this code). Loaded by such a setup while a deployment makes its steps and forgotten
# after that stage on a board running .mpy files (runtime/deploy.py); make.py keeps the checks
# every deployment's common steps (map, filter, window) need, so theirs does not load this module.


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


def throttle_setup(step, params, n_inputs):
    """throttle (throttle.py): its interval, and its put for its mode."""
    from sensormesh.device.steps.make import choice_param, int_param
    step.interval = int_param(step, "interval", None, 1)
    step.mode = choice_param(step, "mode", "latest", ("first", "latest"))
    step.put = step._put_latest if step.mode == "latest" else step._put_first


def changes_setup(step, params, n_inputs):
    """changes (change.py): its tolerance, and the put that compares with it when it has one."""
    step.tolerance = num_param(step, "tolerance", 0, 0)
    if step.tolerance:
        step.put = step._put_tolerance


def callback_setup(step, params, n_inputs):
    """callback (callback.py): its name is the controller's (checked here, not kept); its values
    go to ctx.deliver (a runtime binds its Delivery's: runtime/install.py)."""
    from sensormesh.device.steps.make import str_param
    str_param(step, "name", step.id)
    step.deliver = step.ctx.deliver


SETUPS = {"throttle": throttle_setup, "changes": changes_setup, "callback": callback_setup}
