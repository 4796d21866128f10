"""Key management on the controller (CPython only).

The controller makes every key pair (X25519, sensormesh/device/secure/x25519.py), so no device needs a good
random source of its own for its identity. A key store is one directory (mode 0700):

    registry.json            public half of every key ever issued: name, role, x25519 (hex),
                             fingerprint, created, revoked (Unix time or null)
    private/NAME.json        identity files (0600): what a device or reader loads with
                             sensormesh.device.secure.handshake.load_identity
    trust.json               the trust store every side loads (sensormesh.device.secure.handshake.load_trust):
                             unrevoked public keys with roles, plus the revoked keys' names
                             and fingerprints (so a device can say "revoked", not "unknown")

Private key material is only ever written to private/ with mode 0600 and never printed.
"""
import json
import os
import time

from sensormesh.device.secure import x25519
from sensormesh.device.secure.openssl import generate
from sensormesh.device.secure.handshake import ROLES, valid_name

DEFAULT_DIR = os.path.join(".sensormesh", "keys")
REGISTRY_VERSION = 2
ISSUABLE_ROLES = ("device", "reader")


class KeyStoreError(Exception):
    """A key-management request that cannot be done; the message says why."""


def write_json(path, obj, mode):
    """Write obj as JSON to path atomically, with the file mode set before any byte is written."""
    d = os.path.dirname(path) or "."
    os.makedirs(d, mode=0o700, exist_ok=True)
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w") as f:
            fd = None
            json.dump(obj, f, indent=1, sort_keys=True)
            f.write("\n")
    finally:
        if fd is not None:
            os.close(fd)
    os.replace(tmp, path)


class KeyStore:
    def __init__(self, root=DEFAULT_DIR):
        self.root = root

    # -- paths and files -------------------------------------------------------------------
    def path(self, *parts):
        return os.path.join(self.root, *parts)

    def identity_path(self, name):
        return self.path("private", name + ".json")

    def trust_path(self):
        return self.path("trust.json")

    def _load(self):
        try:
            with open(self.path("registry.json")) as f:
                reg = json.load(f)
        except FileNotFoundError:
            return {"version": REGISTRY_VERSION, "controller": None, "keys": {}}
        if reg.get("version") != REGISTRY_VERSION:
            raise KeyStoreError("%s was made by an older sensormesh (RSA keys, registry version %r); the "
                                "handshake now uses X25519 keys: move that directory away and create the "
                                "keys again (sensormesh keys init; sensormesh up does it by itself), then "
                                "re-provision the boards" % (self.root, reg.get("version")))
        return reg

    def _save(self, reg):
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        os.chmod(self.root, 0o700)
        write_json(self.path("registry.json"), reg, 0o600)
        write_json(self.trust_path(), self._trust(reg), 0o644)

    # -- operations ------------------------------------------------------------------------
    def init(self, name="controller", force=False):
        """Create the controller's identity. force: replace it (the old key is revoked)."""
        reg = self._load()
        cur = reg.get("controller")
        if cur and not force:
            raise KeyStoreError("%s already holds the controller identity %r; use --force to replace it"
                                % (self.root, cur))
        other = reg["keys"].get(name)
        if other is not None and other["role"] != "controller":
            raise KeyStoreError("%r is already the name of a %s key" % (name, other["role"]))
        if cur and cur != name and not reg["keys"][cur].get("revoked"):
            reg["keys"][cur]["revoked"] = int(time.time())
        entry = self._new(reg, name, "controller", force=True)
        reg["controller"] = name
        self._save(reg)
        return entry

    def issue(self, name, role, force=False):
        """Make a key pair for a device or reader. force: re-key an existing name."""
        if role not in ISSUABLE_ROLES:
            raise KeyStoreError("role must be one of %s, not %r" % (", ".join(ISSUABLE_ROLES), role))
        reg = self._load()
        if not reg.get("controller"):
            raise KeyStoreError("no controller identity in %s: run `sensormesh keys init` first" % self.root)
        if name == reg["controller"]:
            raise KeyStoreError("%r is the controller's name" % name)
        entry = self._new(reg, name, role, force)
        self._save(reg)
        return entry

    def _new(self, reg, name, role, force):
        if not valid_name(name):
            raise KeyStoreError("bad name %r: use 1-64 letters, digits, '.', '_' or '-'" % name)
        old = reg["keys"].get(name)
        if old is not None and not force:
            state = "revoked" if old.get("revoked") else "issued"
            raise KeyStoreError("a key named %r was already %s; use --force to issue a new one "
                                "(the old one is then revoked)" % (name, state))
        key = generate()
        if old is not None and not old.get("revoked"):
            old["revoked"] = int(time.time())
        if old is not None:
            reg.setdefault("retired", []).append(old)
        ident = dict(key, name=name, role=role, version=REGISTRY_VERSION)
        write_json(self.identity_path(name), ident, 0o600)
        entry = {"name": name, "role": role, "x25519": key["x25519"],
                 "fingerprint": x25519.fingerprint(bytes.fromhex(key["x25519"])),
                 "created": int(time.time()), "revoked": None}
        reg["keys"][name] = entry
        return entry

    def revoke(self, name):
        reg = self._load()
        ent = reg["keys"].get(name)
        if ent is None:
            raise KeyStoreError("no key named %r in %s" % (name, self.root))
        if name == reg.get("controller"):
            raise KeyStoreError("the controller key cannot be revoked; replace it with `keys init --force`")
        if ent.get("revoked"):
            raise KeyStoreError("the key of %r was already revoked" % name)
        ent["revoked"] = int(time.time())
        self._save(reg)
        try:
            os.remove(self.identity_path(name))
        except FileNotFoundError:
            pass
        return ent

    def entries(self):
        """Every current key (public data only), sorted by name."""
        reg = self._load()
        return [dict(reg["keys"][n], controller=(n == reg.get("controller"))) for n in sorted(reg["keys"])]

    def _trust(self, reg):
        keys = {}
        revoked = {}
        for ent in list(reg["keys"].values()) + reg.get("retired", []):
            if ent.get("revoked"):
                revoked[ent["fingerprint"]] = ent["name"]
        for name, ent in reg["keys"].items():
            if not ent.get("revoked"):
                keys[name] = {"role": ent["role"], "x25519": ent["x25519"]}
        return {"version": REGISTRY_VERSION, "keys": keys,
                "revoked": [{"name": revoked[fp], "fingerprint": fp} for fp in sorted(revoked)]}

    def trust(self):
        """The trust store every side loads (public data only)."""
        return self._trust(self._load())

    def export(self, name, outdir):
        """Write what one device or reader needs into outdir: identity.json (0600) + trust.json."""
        reg = self._load()
        ent = reg["keys"].get(name)
        if ent is None or ent.get("revoked"):
            raise KeyStoreError("no current key named %r in %s" % (name, self.root))
        src = self.identity_path(name)
        if not os.path.exists(src):
            raise KeyStoreError("the private key of %r is no longer in %s (deleted after provisioning?)"
                                % (name, self.root))
        with open(src) as f:
            ident = json.load(f)
        os.makedirs(outdir, mode=0o700, exist_ok=True)
        write_json(os.path.join(outdir, "identity.json"), ident, 0o600)
        write_json(os.path.join(outdir, "trust.json"), self._trust(reg), 0o644)
        return [os.path.join(outdir, "identity.json"), os.path.join(outdir, "trust.json")]


assert set(ISSUABLE_ROLES) < set(ROLES)


# -- wiring for deployment (deploy.connect, `sensormesh up`) -----------------------------------------
def provision_local(device_names, directory=DEFAULT_DIR):
    """Keys for local device processes, made without the user doing anything.

    Creates the controller identity if the store has none, and a device identity for every name
    that has no current one (missing, revoked, or its private file gone: a new key; the old one
    stays revoked). Returns {name: config fragment} to merge into each device's configuration:
    {"identity": abs path of private/NAME.json, "trust": abs path of the store's trust.json}.
    The devices read the store's trust.json itself, so `sensormesh keys revoke X` reaches every
    local device from its next connection on.
    """
    st = KeyStore(directory)
    if not st._load().get("controller"):
        st.init()
    out = {}
    for name in device_names:
        ent = st._load()["keys"].get(name)
        if ent is not None and ent["role"] != "device":
            raise KeyStoreError("%r is the name of a %s key, not a device" % (name, ent["role"]))
        if ent is None or ent.get("revoked") or not os.path.exists(st.identity_path(name)):
            st.issue(name, "device", force=ent is not None)
        out[name] = {"identity": os.path.abspath(st.identity_path(name)),
                     "trust": os.path.abspath(st.trust_path())}
    return out


def load_controller(directory=DEFAULT_DIR):
    """The controller's credentials (session.Credentials) for client.Client(identity=...)."""
    from sensormesh.device.secure.handshake import load_credentials
    st = KeyStore(directory)
    name = st._load().get("controller")
    if not name:
        raise KeyStoreError("no controller identity in %s: run `sensormesh keys init`" % directory)
    return load_credentials(st.identity_path(name), st.trust_path())


def add_pipe_peers(assignments):
    """Name the other device of every pipe end ("peer"): a device with keys needs it to
    authenticate the device its pipe dials, and a device accepting a pipe's connection prepares
    the sender's key with it when the deployment arrives (its pair key computed then, not during
    that connection's handshake). The pipe_out and pipe_in of one hop share an edge id, so the
    names come from the assignments themselves. Returns new assignments; existing "peer" values
    are kept."""
    senders, receivers = {}, {}
    for name, a in assignments.items():
        for step in a.get("steps", []):
            edge = (step.get("params") or {}).get("edge")
            if step.get("type") == "pipe_out":
                senders[edge] = name
            elif step.get("type") == "pipe_in":
                receivers[edge] = name
    out = {}
    for name, a in assignments.items():
        a = dict(a)
        steps = []
        for step in a.get("steps", []):
            params = step.get("params") or {}
            edge = params.get("edge")
            other = None
            if step.get("type") == "pipe_out":
                other = receivers.get(edge)
            elif step.get("type") == "pipe_in":
                other = senders.get(edge)
            if other is not None and "peer" not in params:
                step = dict(step, params=dict(params, peer=other))
            steps.append(step)
        if "steps" in a:
            a["steps"] = steps
        out[name] = a
    return out
