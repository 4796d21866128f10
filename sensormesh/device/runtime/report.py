# The counts of the running assignment (a "status" reply's, polled every few seconds while a
# controller watches, and a stopped pipeline's "stopped" reply's: the reply itself is
# device/status.py's send_stats), and the runtime's other rarely used methods: Runtime.RARE
# (runtime/__init__.py) names them, and Runtime finds them here through __getattr__
# (steps/__init__.py, Rarely), so this module is loaded per call and forgotten after it on a
# board running .mpy files, before the reply is sealed.


def status(rt):
    st = {"pipeline": rt.pipeline, "epoch": rt.epoch, "state": rt.state, "steps": {}}
    for i in rt.order:
        try:
            st["steps"][i] = rt.nodes[i].stats()
        except Exception as e:
            st["steps"][i] = {"error": str(e)}
    lost = rt.lost_deliveries
    for d in rt.deliveries.values():
        lost += d.tx.dropped
    if lost:
        st["lost_deliveries"] = lost
    return st


# -- the runtime's other rarely used methods, in the modules that hold their code -------------
def shutdown(rt):
    # the device stops (core.Device.close): its assignment stops as for a stop message
    rt.rare("stop", "teardown")


def deliver(rt, sid, value):
    # a callback step's values (deploy hands each callback its Delivery's deliver directly)
    from sensormesh.device.runtime.delivery import deliver
    deliver(rt, sid, value)
