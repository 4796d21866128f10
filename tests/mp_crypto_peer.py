# The other end for the CPython<->MicroPython security tests; runs on both interpreters.
# One request or reply per line on stdin/stdout, so the test drives it without sockets or sleeps.
#
#   fernet-enc KEY            stdin: hex plaintexts     stdout: one token per line
#   fernet-dec KEY            stdin: tokens             stdout: hex plaintext, or INVALID
#   server KEYS TRUST NAME    stdin: hello, then tokens stdout: welcome (or error), then echo tokens
#   client KEYS TRUST NAME SERVER  stdout: hello; stdin: welcome; stdout: token; stdin: token;
#                                  stdout: RESULT <payload> (or ERROR <code> <message>)
import json
import sys

HERE = __file__.rpartition("/")[0] or "."
sys.path.insert(0, (HERE.rpartition("/")[0] or ".."))

from sensormesh.device.secure import fernet  # noqa: E402
from sensormesh.device.secure import handshake as session


def out(line):
    sys.stdout.write(line + "\n")
    try:
        sys.stdout.flush()
    except AttributeError:
        pass


def lines():
    while True:
        line = sys.stdin.readline()
        if not line:
            return
        line = line.strip()
        if line == "END":
            return
        yield line


def identity(keys, name):
    with open(keys) as f:
        return session.load_identity(json.load(f)["identities"][name])


def main(argv):
    mode = argv[0]
    if mode == "fernet-enc":
        f = fernet.Fernet(argv[1])
        for line in lines():
            out(f.encrypt(bytes.fromhex(line)).decode())
    elif mode == "fernet-dec":
        f = fernet.Fernet(argv[1])
        for line in lines():
            try:
                out(f.decrypt(line.encode()).hex())
            except fernet.InvalidToken:
                out("INVALID")
    elif mode == "server":
        s = session.ServerSession(identity(argv[1], argv[3]), session.load_trust(argv[2]))
        try:
            out(json.dumps(s.receive(json.loads(sys.stdin.readline()))))
        except session.HandshakeError as e:
            out(json.dumps(e.to_message()))
            return
        for line in lines():
            payload = s.unwrap(line.encode())
            out(s.wrap(b"echo:" + payload + b" from " + s.peer.encode() + b" as " + s.role.encode()).decode())
    elif mode == "client":
        c = session.ClientSession(identity(argv[1], argv[3]), session.load_trust(argv[2]), argv[4])
        try:
            out(json.dumps(c.start()))
            c.receive(json.loads(sys.stdin.readline()))
        except session.HandshakeError as e:
            out("ERROR %s %s" % (e.code, e.message))
            return
        out(c.wrap(b"ping from " + argv[3].encode()).decode())
        out("RESULT " + c.unwrap(sys.stdin.readline().strip().encode()).decode())


main(sys.argv[1:])
