# What a source (runtime.Source) does rarely: starting, closing and its counts. Source finds these
# through __getattr__ (steps/__init__.py, Rarely): this module is loaded per call and forgotten
# after it on a board running .mpy files. Each function takes the source first; reading values
# on its schedule is runtime/__init__.py.


def flush(src):
    pass


def start(src):
    src.running = True
    src.t0 = src.rt.loop.now()
    src.taken = 0
    src._tick()


def close(src):
    src.running = False
    if src.timer:
        src.timer.cancel()
        src.timer = None


def stats(src):
    s = {"in": src.n_out + src.errors, "out": src.n_out, "errors": src.errors, "missed": src.missed}
    if src.last_error:
        s["last_error"] = src.last_error
    return s
