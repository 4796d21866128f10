# What a hello's MAC is made and checked with, loaded by the steps that make or check a hello
# (dial_hello.py, server.py, admit.py, keys.py) and forgotten with them (basics.idle()): the
# transcript (the bytes the MAC covers) and the trust files' stamps (a peer the deployment
# prepared is used while they are unchanged). A dial waiting for its welcome, and the check of
# the welcome, need neither: they hold basics.py without them.
import os

from sensormesh.device.secure.basics import _field


def _transcript(client, server, ts, nonce):
    return b"sensormesh-hello-v2" + _field(client) + _field(server) + _field(str(ts)) + _field(nonce)


# -- what a device's dial compares with the trust files it read ------------------------------------
def stamps(sec):
    """The trust and revoked files' sizes and times now (secure.Security keeps those it read)."""
    return (_stamp(sec.trust_src), _stamp(sec.revoked_src))


def _stamp(src):
    if type(src) is not str:
        return None
    try:
        st = os.stat(src)
    except OSError:
        return None
    return (st[6], getattr(st, "st_mtime_ns", st[8]))
