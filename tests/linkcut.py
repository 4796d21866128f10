"""A TCP forwarder on loopback whose link can be cut and healed (tests without namespaces):
while cut, every connection through it is closed and new ones are closed as soon as they
connect, like a link that is down. Threads, bounded waits; stopped by the test."""
import socket
import threading


class Link:
    def __init__(self, target_port):
        self.target = ("127.0.0.1", target_port)
        self.srv = socket.socket()
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(16)
        self.srv.settimeout(0.2)
        self.port = self.srv.getsockname()[1]
        self.down = False
        self.stopped = False
        self.socks = []
        self.lock = threading.Lock()
        self.cuts = 0
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def address(self):
        return "127.0.0.1:%d" % self.port

    def cut(self):
        with self.lock:
            self.down = True
            self.cuts += 1
            socks, self.socks = self.socks, []
        for s in socks:
            _close(s)

    def heal(self):
        self.down = False

    def stop(self):
        self.stopped = True
        self.cut()
        self.thread.join(5)
        _close(self.srv)

    def _accept(self):
        while not self.stopped:
            try:
                c, _ = self.srv.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            if self.down:
                _close(c)
                continue
            try:
                t = socket.create_connection(self.target, timeout=2.0)
            except OSError:
                _close(c)
                continue
            with self.lock:
                if self.down:
                    _close(c)
                    _close(t)
                    continue
                self.socks += [c, t]
            for a, b in ((c, t), (t, c)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, a, b):
        a.settimeout(None)
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                b.sendall(data)
        except OSError:
            pass
        _close(a)
        _close(b)


def _close(s):
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        s.close()
    except OSError:
        pass
