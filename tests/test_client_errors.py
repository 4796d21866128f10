# The test client against a peer that answers with an error that is not an object: a
# DeviceError that says so, never an AttributeError from inside the client.
import socket
import struct
import threading

import pytest

from sensormesh.client import Client, DeviceError


def _peer_answering(payload):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)

    def serve():
        c, _ = srv.accept()
        with c:
            c.recv(65536)                     # the request
            c.sendall(struct.pack("!I", len(payload)) + payload)
            c.recv(65536)                     # until the client closes
        srv.close()
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return "127.0.0.1:%d" % srv.getsockname()[1], t


@pytest.mark.parametrize("body", [b"5", b'"down"', b"null", b"[1, 2]"])
def test_an_error_that_is_not_an_object_is_a_device_error_naming_it(body):
    for use in ("call", "messages"):
        addr, t = _peer_answering(b'{"error": ' + body + b'}')
        c = Client(addr, timeout=5)
        with pytest.raises(DeviceError) as e:
            if use == "call":
                c.call({"info": {}})
            else:
                c.send({"data-request": {"sensor": "x"}})
                list(c.messages())
        c.close()
        t.join(5)
        assert e.value.code == "malformed", e.value
        assert "not an object" in str(e.value), str(e.value)
