# Making a deployment's pipe_in (runtime/build_pipes.py's stage): its parameters checked and its
# state set up (pipe_in.PipeIn has no __init__). Loaded only by an assignment that has a pipe_in,
# while build_pipes.py makes its pipes, and forgotten after on a board running .mpy files, so a
# board that only sends never loads this code nor interns its names.
from sensormesh.device.runtime.build_pipes import pipe_setup
from sensormesh.device.runtime.pipe_in import PipeIn
from sensormesh.device.runtime.receiver import ACK_EVERY, Receiver
from sensormesh.device.steps import nowhere


def pipe_in(rt, sid, params):
    """A pipe_in (pipe_in.PipeIn), its parameters checked and its state set up."""
    p = PipeIn()
    pipe_in_setup(p, rt, sid, params)
    return p


def pipe_in_setup(p, runtime, sid, params):
    """Check a pipe_in's parameters and set up its state (pipe_in.PipeIn)."""
    p.frm = pipe_setup(p, runtime, sid, params, "from")
    p.emit = nowhere
    p.outputs = []
    p.rx = Receiver()
    p.feeds = []        # the pipe_outs of this device this pipe's values reach (runtime)
    p.root = 0          # this pipe's number among the device's pipe_ins (lineage tags)
    p.tagged = False    # the sender tags each value with its lineage: [tag, value]
    p.announced = False # the sender said where its numbering stands since this process started
    p.parked = []       # arrays held until every input of a joined device has announced
    p.skip_below = 0    # replayed values before this seq were taken before a restart
    p.conn = None
    p.running = False
    p.retry_timer = None
    p.ack_timer = None
    p.redials = 0       # redials since the last connection that came up (pipes.redial_delay)
    p.every = ACK_EVERY     # acknowledge after this many values (less for a small sender buffer)
    p.soon = None         # the sender asked for acknowledgements up to this seq at once
    p.first_mark = None   # the mark of the announcement our first values follow (adopted with them)
    p.n_in = 0
    p.frames = 0
    p.last_error = None
    p.ts_next = None    # origin stamps of the next array (probe.py)
    p.connects = 0
    p.bytes_prev = 0
