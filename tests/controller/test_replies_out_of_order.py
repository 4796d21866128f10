"""A device may answer two requests out of order: a keyed board holds a status reply while a
handshake ends or until its heap has room, and answers the next request meanwhile. The
controller takes each reply for the request waiting for its key, not for whichever request
is oldest. The answering device here is a stand-in that holds every status request until the
next message comes, then answers that message first."""
from sensormesh.controller.supervisor import Supervisor
from tests.controller.standin import standin_fixture


class Late:
    """Holds a status request; the next message is answered first, then the status."""

    def __init__(self):
        self.held = None

    def on_message(self, conn, msg):
        if not isinstance(msg, dict):
            return
        if "status" in msg:
            self.held = {"status": {"name": "a", "streams": [], "connections": 1, "errors": 0}}
        elif "ping" in msg:
            conn.send({"pong": msg["ping"]})
            if self.held is not None:
                conn.send(self.held)
                self.held = None


late_and_b = standin_fixture(Late, "late")


def test_a_reply_that_comes_after_a_later_request_is_answered_goes_to_its_own_request(late_and_b):
    sup = Supervisor(late_and_b, "optimal", timeout=10.0)
    try:
        st = sup._send("a", {"status": {}}, ("status",))
        ping = sup._send("a", {"ping": {"n": 7}}, ("pong",))
        sup._wait([st, ping])
        assert ping.error is None and ping.reply == {"pong": {"n": 7}}, (ping.error, ping.reply)
        assert st.error is None and st.reply["status"]["name"] == "a", (st.error, st.reply)
        assert not sup.queues.get("a"), sup.queues.get("a")
        # in order again: each reply still goes to its own request
        st2 = sup._send("a", {"status": {}}, ("status",))
        ping2 = sup._send("a", {"ping": {"n": 8}}, ("pong",))
        sup._wait([st2, ping2])
        assert ping2.reply == {"pong": {"n": 8}} and st2.reply["status"]["name"] == "a"
    finally:
        sup.close()
