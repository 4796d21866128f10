"""A small endless local pipeline run by `sensormesh up` in the background, for the metrics,
dashboard and /metrics tests: a MicroPython board counts and averages, a CPython pc alarms and
hands values to a callback sink. Device names carry the test process id, because local devices
listen on Unix sockets named after them in the shared temporary directory."""
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

from procs import ROOT, need_micropython

TAG = "%d" % os.getpid()
BOARD = "board" + TAG
PC = "pc" + TAG

STEPS_PY = "def scale(x):\n    return x / 10\n"


def pipeline_file(tmp_path, name="observed"):
    need_micropython()
    (tmp_path / "obs_steps.py").write_text(STEPS_PY)
    text = textwrap.dedent("""\
        pipeline: %(name)s
        devices:
          %(board)s: {interpreter: micropython, sensors: ["counter@200"], local: true}
          %(pc)s: {interpreter: cpython, cpu: 4, local: true}
        steps:
          count:  {type: source, sensor: counter, on: %(board)s}
          scaled: {type: map, fn: "obs_steps.py:scale", input: count, on: %(board)s}
          mean:   {type: window, values: 5, agg: mean, input: scaled, on: %(board)s}
          high:   {type: alarm, high: 50, low: 10, input: mean, on: %(pc)s}
        sinks:
          means:  {type: callback, input: mean, on: %(pc)s}
          alarms: {type: callback, input: high, on: %(pc)s}
        """) % {"name": name, "board": BOARD, "pc": PC}
    path = tmp_path / ("%s.yaml" % name)
    path.write_text(text)
    return str(path)


class Up:
    """`sensormesh up FILE ARGS...` in the background; lines read by a thread; stop() = Ctrl-C."""

    def __init__(self, path, *args, cwd):
        env = dict(os.environ, PYTHONPATH=ROOT, PYTHONUNBUFFERED="1")
        self.p = subprocess.Popen([sys.executable, "-m", "sensormesh.cli", "up", path, "--quiet-devices"] + list(args),
                                  cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        self.lines = []
        self.cond = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.p.stdout:
            with self.cond:
                self.lines.append(line)
                self.cond.notify_all()
        with self.cond:
            self.lines.append(None)
            self.cond.notify_all()

    def text(self):
        with self.cond:
            return "".join(x for x in self.lines if x)

    def wait_for(self, pred, timeout=60.0):
        """The first output line for which pred(line) is true (bounded wait)."""
        end = time.monotonic() + timeout
        seen = 0
        with self.cond:
            while True:
                while seen < len(self.lines):
                    line = self.lines[seen]
                    seen += 1
                    if line is None:
                        raise AssertionError("up ended early:\n" + self.text())
                    if pred(line):
                        return line
                left = end - time.monotonic()
                if left <= 0:
                    raise AssertionError("no such line within %gs:\n%s" % (timeout, self.text()))
                self.cond.wait(left)

    def stop(self, timeout=60.0):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGINT)
        try:
            self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
        self.reader.join(timeout=10)
        return self.p.returncode
