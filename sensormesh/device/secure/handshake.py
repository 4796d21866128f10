# The secure session's API in one place, sans-IO: handshake state machines fed with control
# messages (dicts), returning the messages to send; no sockets, no clock of their own. Tools,
# the controller and tests import this module; a device never does: it loads the side it needs
# for one handshake (dial_hello.py, dial_wait.py and welcome.py for a dial, admit.py and server.py for
# an accepted connection, with keys.py and x25519.py) and forgets them after (secure/__init__.py).
#
#   client -> server  {"hello": {"v": 2, "from": C, "to": S, "ts": T, "nonce": Nc,
#                                "mac": HMAC(pair key of C and S, transcript)}}
#   server -> client  {"welcome": {"v": 2, "from": S, "nonce": Ns, "proof": HMAC(kc, "server")}}
#                  or {"error": {"code": CODE, "message": TEXT}}
#
# Every side has an X25519 key pair and trusts the public keys in its trust store. The pair key
# of C and S comes from the X25519 shared secret of their static keys: only C's or S's private
# key can make it. The client proves itself with the MAC over both names, the time and its
# nonce; the server proves itself with the key-confirmation proof. Session keys come from the
# pair key and both nonces (HKDF-SHA256), one Fernet key per direction; every later frame
# payload is a Fernet token of an 8-byte frame counter plus the payload. The only costly step,
# the scalar multiplication, happens once per peer: the pair key is cached (PairCache).
# docs/security.md explains the choices (and why not the original design's RSA sketch: ESP32 cost).
from sensormesh.device.secure.dial_failed import CODES  # noqa: F401
from sensormesh.device.secure.hello import ClientSession
from sensormesh.device.secure.keys import (PERMISSIONS, ROLES, SEND_PLAIN_MAX, VERSION, Channel,  # noqa: F401
                                           HandshakeError, Identity, PairCache, TrustStore, _field, _keys,
                                           _transcript, check_permission, plain_limit, wrap_limit)
from sensormesh.device.secure.server import (DEFAULT_REPLAY_SIZE, DEFAULT_WINDOW, ReplayCache,  # noqa: F401
                                             ServerSession, valid_name)
from sensormesh.device.secure.trust import load_identity, load_trust  # noqa: F401


class Credentials:
    """What a client side needs to open sessions: its identity, its trust store, and its cache
    of pair keys (so only the first connection to each server does the X25519 step)."""

    def __init__(self, identity, trust, pairs=None):
        self.identity = identity
        self.trust = trust
        self.pairs = pairs if pairs is not None else PairCache(256)

    def client(self, server, roles=None):
        """A ClientSession to the server of that name."""
        return ClientSession(self.identity, self.trust, server, roles=roles, pairs=self.pairs)


def load_credentials(identity, trust=None, native=None):
    """Credentials from an identity file (or dict) and a trust file (or dict).

    identity may also be a directory as `sensormesh keys export` writes it (identity.json and
    trust.json); trust defaults to trust.json next to the identity file.
    """
    if type(identity) is str:
        if identity.endswith(".json"):
            d = identity.rpartition("/")[0] or "."
        else:
            d = identity.rstrip("/") or "/"
            identity = d + "/identity.json"
        if trust is None:
            trust = d + "/trust.json"
    if trust is None:
        raise ValueError("a trust store is needed with an identity given as a dict")
    return Credentials(load_identity(identity, native), load_trust(trust))
