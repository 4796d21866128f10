"""A device that answers "busy" (a board with no heap free for a handshake, a device at its
connection limit) is up: `status` says it is busy, with its words, and does not count it as
failed; a watching controller counts its answer as a sign of life, not as a suspicion. The busy
device here is a stand-in on a loop of its own (in a thread) that answers every control message
with the error a board sends; b is a real CPython device on the same loop."""
from sensormesh.controller.supervisor import Supervisor
from sensormesh.controller.supervisor.control import Request
from sensormesh.controller.supervisor.watch import Watch
from tests.controller.standin import standin_fixture

BUSY = "no memory free for a handshake now; try again later"


class Busy:
    """What a board short of heap answers to every message: busy, then it closes."""

    def on_message(self, conn, msg):
        conn.send({"error": {"code": "busy", "message": BUSY}})
        conn.close_after_flush("busy")


busy_and_b = standin_fixture(Busy, 'busy')


def test_status_says_a_busy_device_is_busy_and_does_not_count_it_failed(busy_and_b):
    sup = Supervisor(busy_and_b, "optimal", timeout=10.0)
    try:
        st, areas = sup.status()
    finally:
        sup.close()
    assert st["a"] == {"error": "a is busy: " + BUSY, "busy": True}, st["a"]
    assert "a" not in sup.failed
    assert "error" not in st["b"], st["b"]


def test_the_status_command_prints_busy_not_unreachable(capsys):
    from sensormesh.controller.deploy_cli import _show_status
    st = {"a": {"error": "a is busy: " + BUSY, "busy": True}, "b": {"assignment": {"state": "running"}}}
    assert _show_status(st, [], False) is True      # its status is not known: not all answered
    out = capsys.readouterr().out
    assert "a: BUSY (a is busy: %s)" % BUSY in out and "UNREACHABLE" not in out, out


class _Detector:
    def __init__(self):
        self.answers = []
        self.forgotten = []

    def answered(self, d, t):
        self.answers.append(d)

    def forget(self, d):
        self.forgotten.append(d)


class _Watching:
    """What Watch._poll_done uses of a watching supervisor."""

    def __init__(self):
        self._pings = {}
        self.detector = _Detector()
        self.suspects = []

    def _suspect(self, d, why):
        self.suspects.append((d, why))


def test_a_busy_answer_to_a_status_poll_is_a_sign_of_life_not_a_suspicion():
    w = _Watching()
    busy = Request("a", ("status",), 0)
    busy.finish(error="a: " + BUSY, code="busy")
    Watch._poll_done(w, "a", busy)
    refused = Request("b", ("status",), 0)
    refused.finish(error="b: secure session failed (unknown-key): who are you", code="unknown-key")
    Watch._poll_done(w, "b", refused)
    assert w.detector.answers == ["a"] and w.suspects == [("b", refused.error)], (w.detector.answers, w.suspects)
