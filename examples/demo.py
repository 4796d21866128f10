"""The main demo: a device with simulated sensors and a client printing its stream.

Starts a worker (on MicroPython when the unix port is installed, standing in for an ESP32),
asks it for the DHT11 in 1-second time frames, prints five frames, and stops the worker.
"""
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

from procs import Proc, free_port  # noqa: E402
from sensormesh.client import Client  # noqa: E402


def main():
    port = free_port()
    if shutil.which("micropython"):
        argv = ["micropython", "-m", "sensormesh.device"]
        where = "MicroPython"
    else:
        argv = [sys.executable, "-m", "sensormesh.cli", "worker"]
        where = "CPython"
    worker = Proc(argv + ["--port", str(port), "--name", "esp-1", "--sensors", "dht11@10,co2@5,gyro@20"])
    try:
        worker.wait_line("listening on")
        print("device esp-1 (%s) listening on 127.0.0.1:%d" % (where, port))
        c = Client("127.0.0.1:%d" % port)
        info = c.call({"info": {}})["info"]
        print("sensors:", ", ".join("%s (%s)" % (n, s["unit"]) for n, s in sorted(info["sensors"].items())))
        c.close()
        for sensor, tf, vpf in (("dht11", 1000, 0), ("co2", 1000, 2)):
            print("\ndata-request: sensor=%s time-frame=%d values-per-time-frame=%d" % (sensor, tf, vpf))
            c = Client("127.0.0.1:%d" % port)
            c.request_data(sensor, tf, vpf)
            for i, frame in zip(range(3), c.messages()):
                print("  frame %d: %s" % (i + 1, frame))
            c.close()
    finally:
        worker.stop()
    print("\ndone")


if __name__ == "__main__":
    main()
