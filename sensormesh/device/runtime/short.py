# A deployment refused. One that ran out of heap (Runtime.deploy): refused saying so
# ("out-of-memory") instead of leaving the controller waiting; the controller tries it again,
# alone. Loaded only then, once what the deployment loaded is gone (Rarely), so a deployment that
# fits never loads it. A bad assignment (deploy.py): refused naming the problem
# ("bad-assignment"), loaded for that only.
import sys

from sensormesh.device.compat import MICROPYTHON, collect, forget


def refuse(rt, session):
    """Refuse the deployment; the running assignment, if any, runs on. With nothing running, the
    step families and pipe modules the deployment loaded go too, so that this reply, and the
    controller's next try, find the heap the deployment found."""
    if rt.state == "empty":
        for name in list(sys.modules):
            if name.startswith("sensormesh.device.steps.") or name.startswith("sensormesh.device.runtime."):
                if name != "sensormesh.device.runtime.short":
                    forget(name)
    collect()
    free = ""
    if MICROPYTHON:
        import gc
        free = " (%d bytes free after collecting)" % gc.mem_free()
    text = "no memory free for its assignment%s; try again, or give it more heap or fewer steps" % free
    rt.log("deploy refused: " + text)
    session.conn.send({"error": {"code": "out-of-memory", "message": text}})


def bad(rt, session, e):
    """Refuse a bad assignment, `e` (a check's ValueError or StepError naming the problem, or
    another error building it raised, named by its type); the running assignment, if any, runs
    on."""
    text = str(e)
    if not isinstance(e, ValueError) and type(e).__name__ != "StepError":
        text = "the assignment could not be built: %s: %s" % (type(e).__name__, text)
    rt.log("deploy refused: " + text)
    session.conn.send({"error": {"code": "bad-assignment", "message": text}})
