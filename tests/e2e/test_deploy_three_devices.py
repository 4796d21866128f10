"""End to end with real processes on real sockets: three devices (one on MicroPython), a join
across devices, a window, and a shipped user function; every value exactly once and in order."""
from procs import free_port
from sensormesh.controller.deploy import DeployError, deploy, device_order

CODE = {"user": "def double(x):\n    return x * 2\n"}
N = 300


def assignments(addr):
    return {
        "a": {"pipeline": "e2e", "epoch": 1, "code": CODE, "steps": [
            {"id": "sa", "type": "source", "params": {"sensor": "counter", "count": N}},
            {"id": "m", "type": "map", "params": {"fn": "user:double"}, "inputs": ["sa"]},
            {"id": "oa", "type": "pipe_out", "params": {"edge": "ea", "to": addr["c"], "time-frame": 5},
             "inputs": ["m"]}]},
        "b": {"pipeline": "e2e", "epoch": 1, "steps": [
            {"id": "sb", "type": "source", "params": {"sensor": "counter", "count": N}},
            {"id": "ob", "type": "pipe_out", "params": {"edge": "eb", "to": addr["c"], "time-frame": 0},
             "inputs": ["sb"]}]},
        "c": {"pipeline": "e2e", "epoch": 1, "steps": [
            {"id": "ia", "type": "pipe_in", "params": {"edge": "ea"}},
            {"id": "ib", "type": "pipe_in", "params": {"edge": "eb"}},
            {"id": "z", "type": "zip", "params": {}, "inputs": ["ia", "ib"]},
            {"id": "w", "type": "window", "params": {"values": 10, "agg": "list"}, "inputs": ["z"]},
            {"id": "k", "type": "callback", "params": {"name": "pairs"}, "inputs": ["w"]}]},
    }


def test_three_devices_join_window_shipped_code(devices):
    ports = {n: free_port() for n in "abc"}
    devices("cpython", ["--port", str(ports["a"]), "--name", "a", "--sensors", "counter@2000"])
    devices("micropython", ["--port", str(ports["b"]), "--name", "b", "--sensors", "counter@2000"])
    devices("cpython", ["--port", str(ports["c"]), "--name", "c", "--sensors", ""])
    addr = {n: "127.0.0.1:%d" % p for n, p in ports.items()}
    asg = assignments(addr)
    assert device_order(asg, addr)[0] == "c"  # the receiver is deployed and started first
    dep = deploy(asg, addr)
    got = []
    try:
        dep.watch(lambda dev, step, values: got.extend(w for w in values if step == "k"),
                  until=lambda: len(got) >= N // 10, timeout=30)
        final = dep.stop()
    finally:
        dep.close()
    assert sum(len(w) for w in got) == N
    pairs = [p for w in got for p in w]
    assert pairs == [[2 * i, i] for i in range(N)]
    assert final["a"]["steps"]["oa"]["dropped"] == 0 and final["b"]["steps"]["ob"]["out"] == N
    assert final["c"]["steps"]["z"]["dropped"] == 0


def test_refused_assignment_leaves_nothing_started(devices):
    ports = {n: free_port() for n in "ab"}
    devices("cpython", ["--port", str(ports["a"]), "--name", "a", "--sensors", "counter@100"])
    devices("micropython", ["--port", str(ports["b"]), "--name", "b", "--sensors", "counter@100"])
    addr = {n: "127.0.0.1:%d" % p for n, p in ports.items()}
    asg = {
        "a": {"pipeline": "x", "epoch": 1, "steps": [
            {"id": "s", "type": "source", "params": {"sensor": "counter"}},
            {"id": "k", "type": "callback", "params": {}, "inputs": ["s"]}]},
        "b": {"pipeline": "x", "epoch": 1, "steps": [
            {"id": "s", "type": "source", "params": {"sensor": "radar"}}]},
    }
    try:
        deploy(asg, addr)
        raise AssertionError("deploy accepted a bad assignment")
    except DeployError as e:
        assert "device b refused" in str(e) and "radar" in str(e)
    from sensormesh.controller.deploy import status
    st = status(addr)
    assert st["a"].get("assignment", {}).get("state", "empty") == "empty"


def test_device_down_is_named():
    port = free_port()
    try:
        deploy({"x": {"steps": []}}, {"x": "127.0.0.1:%d" % port}, timeout=2)
        raise AssertionError("deployed to a device that is down")
    except DeployError as e:
        assert "device x at 127.0.0.1:%d is not reachable" % port in str(e)
