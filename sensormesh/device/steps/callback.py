# Step: callback, the end of a chain whose values go to the controller (runtime deliveries).
# A family of its own, as the most common sink, so a board with a callback sink loads only this
# (kinds.FAMILIES); its parameter is checked by more_params.callback_setup (build time); the step
# protocol is in steps/__init__.py.
from sensormesh.device.steps import Step


class Callback(Step):
    """Hands every value to ctx.deliver(step_id, value); the runtime batches them to the
    controller, which calls the user's callback registered under `name`."""
    TYPE = "callback"
    ARGS = ["name"]
    SINK = True
    THROUGH = True    # its out count: every value in (report.out_count)

    def put(self, value):
        self.deliver(self.id, value)
        self.n_in += 1       # after: a value with no heap free to keep it comes again (PipeIn.untaken)


# type name -> class, read by kinds.step_class()
CLASSES = {"callback": Callback}
