"""A device that answers its status request with an error object instead of a status is up: it
answered. `status` says so, with the device's code and message, instead of calling it down, and
does not count it as failed (nothing is re-placed for it). The refusing device here is a
stand-in on a loop of its own (in a thread) that answers every status request with an error and
keeps its connection open; b is a real CPython device on the same loop."""
from sensormesh.controller.supervisor import Supervisor
from tests.controller.standin import standin_fixture

CODE = "out-of-memory"
WHY = "no memory free for the status reply"


class Refusing:
    """Answers every status request with an error object; the connection stays open."""

    def on_message(self, conn, msg):
        if isinstance(msg, dict) and "status" in msg:
            conn.send({"error": {"code": CODE, "message": WHY}})


refusing_and_b = standin_fixture(Refusing, 'refused')


def test_status_says_the_device_is_up_and_refused_with_its_code_and_message(refusing_and_b):
    sup = Supervisor(refusing_and_b, "optimal", timeout=10.0)
    try:
        st, areas = sup.status()
    finally:
        sup.close()
    err = st["a"]["error"]
    assert "down" not in err and "does not answer" not in err, err
    assert err == "a is up, but refused its status request: %s (code %s)" % (WHY, CODE), err
    assert st["a"]["refused"] == {"code": CODE, "message": WHY}, st["a"]
    assert "a" not in sup.failed, sup.failed
    assert areas == [], areas          # nothing is affected: it is not counted as failed
    assert "error" not in st["b"], st["b"]


def test_the_status_command_prints_status_refused_not_unreachable(capsys):
    from sensormesh.controller.deploy_cli import _show_status, status_counts
    err = "a is up, but refused its status request: %s (code %s)" % (WHY, CODE)
    st = {"a": {"error": err, "refused": {"code": CODE, "message": WHY}},
          "b": {"assignment": {"state": "running"}}}
    assert _show_status(st, [], False) is True      # its status is not known: not all answered
    out = capsys.readouterr().out
    assert "a: STATUS REFUSED (%s)" % err in out and "UNREACHABLE" not in out, out
    assert status_counts(st, lambda n: [])[0] == "2 devices: 1 running, 1 status refused"


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
        self._poll_epoch = {}
        self.refusing = {}
        self.detector = _Detector()
        self.suspects = []
        self.events = []

    def _suspect(self, d, why):
        self.suspects.append((d, why))

    def _event(self, text):
        self.events.append(text)

    def _check_running(self, d, reply, epoch):
        pass


def test_a_watching_controller_counts_an_error_answer_to_its_poll_as_life_and_says_it_once():
    from sensormesh.controller.supervisor.control import Request
    from sensormesh.controller.supervisor.watch import Watch
    w = _Watching()
    for _ in range(3):                  # every poll refused alike: one event, no suspicion
        r = Request("a", ("status",), 0)
        r.finish(error="a: " + WHY, code=CODE, answered=True)
        Watch._poll_done(w, "a", r)
    assert w.detector.answers == ["a"] * 3 and w.suspects == [], (w.detector.answers, w.suspects)
    assert w.events == ["a is up, but refused its status request: %s (code %s)" % (WHY, CODE)], w.events
    ok = Request("a", ("status",), 0)
    ok.finish(reply={"status": {}})
    Watch._poll_done(w, "a", ok)
    r = Request("a", ("status",), 0)
    r.finish(error="a: " + WHY, code=CODE, answered=True)
    Watch._poll_done(w, "a", r)         # refused again after a status: said again
    assert len(w.events) == 2 and w.suspects == [], w.events
