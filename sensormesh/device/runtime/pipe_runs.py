# A pipe_out taking runs of values at once (put_many, steps/__init__.py): the batch path of
# pipes.PipeOut and its replay buffer (replay.Sender). Only a free-running source
# (free_running.py) reads runs of values, so build_pipes.pipe_out makes a PipeOutRuns only for an
# assignment that has one; a board whose sources read on a schedule never loads this code.
from sensormesh.device.codec import MAX_FRAME_VALUES
from sensormesh.device.runtime.pipes import PipeOut


class PipeOutRuns(PipeOut):
    # its wiring: kept here, as a deployment's build, its fullest moment, wires it
    def inlet_many(self, port):
        return self.push_many

    def push_many(self, values):
        """A run of values. Batched, it joins the time frame at once when the replay buffer
        holds it and it does not complete an array; otherwise (time-frame 0, a full buffer) the
        values go one by one, as push() takes them."""
        tx = self.tx
        n = len(values)
        if self.tf and not self.lineage and tx.unsent() + n < MAX_FRAME_VALUES and add_many(tx, values):
            self.n_in += n
            if len(tx.buf) >= self.roomy:
                self.heap_check()
            if tx.full():
                self._send()        # nothing more joins the time frame before an acknowledgement
            if not self.asked and tx.acks and 2 * tx.held() >= tx.cap:
                self.hurry(True)
            return
        push = self.push
        for v in values:
            push(v)


def add_many(tx, values):
    """Add a run of values to the replay buffer of Sender tx if it holds them all; False (nothing
    added) if not."""
    buf = tx.buf
    if len(buf) + len(values) > tx.cap:
        return False
    if type(buf) is not list:
        for v in values:
            if type(v) is not float:
                tx.buf = buf = list(buf)
                break
    buf.extend(values)
    return True
