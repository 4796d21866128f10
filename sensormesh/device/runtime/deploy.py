# Applying a deployment ({"deploy": ...}, on_deploy), in stages whose code a board loads one after
# the other, so that the running pipeline's modules (which stay loaded) never share the heap with
# the code of more than one stage, and the code they keep loaded while they run is loaded as late
# as it can be, each part once the stage before the one that needs it is forgotten:
#   building it (build below), each stage with its own module:
#     runtime/shipped.py     run its shipped code (compiling needs the most free heap: first);
#                            kept loaded until the steps found the functions they call
#     runtime/build.py       check the assignment; find its steps' families (steps/kinds.py)
#                            and its pipes' modules; make its sources
#     steps/make.py          make its steps, their families imported (build) once build.py is
#                            forgotten (with steps/more_params.py, when a family's setup needs it)
#     runtime/build_pipes.py make its pipes, their modules imported (build) once make.py is
#                            forgotten, and find the paths from them to its outputs
#     steps/wiring.py        connect them
#   stop.py      stop the running assignment, when one runs (the pipes of its edges carry over)
#   install.py   put the new one in its place: pipes, checkpoints, outlets
#   probe_plan.py its metrics probe (with metrics on), and the reply (finish; not in install.py,
#                which a board would have to load again for it when its heap is fullest, nor
#                here, which a board holds through every stage)
# Each stage's module is loaded for it and forgotten after it on a board running from precompiled
# .mpy files (Runtime.rare, steps.rare_call, compat.forget), and so is this one after the
# deployment. A bad assignment is refused naming the problem ("bad-assignment", short.py) and
# the running one goes on; one that runs out of heap raises MemoryError to Runtime.deploy, which
# refuses it ("out-of-memory", short.py).
from sensormesh.device.compat import collect, forget
from sensormesh.device.steps import rare_call

STEPS = "sensormesh.device.steps."    # the package of make.py, more_params.py and wiring.py


def on_deploy(rt, session, body):
    # the garbage of what came before is collected first (building needs free blocks)
    collect()
    old_code = rt.code
    try:
        built = build(rt, body)
        # the last stage of building, from this function: the assignment is gone with build's
        # frame (a stale reference left in it could have kept it for the garbage collector)
        rare_call(STEPS + "wiring", "connect_all", built)
    except MemoryError:
        rt.code = old_code      # the refused assignment's shipped code goes with it (short.py)
        raise
    except Exception as e:      # a check's ValueError or StepError, or what a spec no check
        rt.code = old_code      # foresaw made fail (short.bad says its type): refused, saying why
        rt.rare("short", "bad", session, e)
        return
    finally:
        collect()
    if rt.nodes:       # stop.py only when something runs (not for a board's first deployment)
        rt.rare("stop", "teardown", True)        # keep: the pipes carry over
    rt.rare("install", "install", built)
    rt.rare("probe_plan", "finish", session, body, built)


def build(rt, body):
    """The assignment of the deploy message's body checked and its nodes built, stage by stage
    (the module notes), but for the wiring: a dict of its shipped code ("code"), its nodes by id
    ("nodes"), their ids in order ("order"), their inputs ("inputs"), its edges ("edges", filled in
    by the wiring: upstream id, downstream id, port), its "pipeline" and "epoch". A bad one raises
    ValueError, or StepError for a step's spec, naming the step and the problem. The assignment
    leaves the body: once its steps are made nothing holds it but its pipes' specs (built), so
    the stages that follow (its pipes, the wiring) are without the specs of its other nodes."""
    a = body
    if type(body) is dict and "assignment" in body:
        a = body.pop("assignment")
    try:
        # shipped.py, kept loaded until the steps found the shipped functions they call
        # (Runtime.resolve): a module rt.rare finds loaded stays so
        __import__("sensormesh.device.runtime.shipped")
        code = rt.rare("shipped", "run_code", a)
        if type(a) is dict and "code" in a:
            a = dict(a)       # without its source, which the stages that follow do not need
            del a["code"]
        built = rt.rare("build", "check", a)
        built["code"] = code
        # its steps' families, imported once build.py is forgotten: the two never share the heap
        for name in built.pop("load"):
            __import__(name)
        rare_call(STEPS + "make", "make_steps", rt, a, built)
    finally:
        # shipped.py, and what only some families' setup loads while the steps are made
        forget("sensormesh.device.runtime.shipped")
        forget(STEPS + "more_params")
    built["pipeline"] = a.get("pipeline")
    built["epoch"] = a.get("epoch", 0)
    a = None    # its pipes' specs are in built: the specs of the nodes made are let go of
    # the code its pipes and deliveries keep loaded, imported once make.py is forgotten
    for name in built.pop("kept"):
        __import__(name)
    rt.rare("build_pipes", "make_pipes", built)
    return built
