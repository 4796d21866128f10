"""Deployment: sending each device its assignment, starting, watching and stopping pipelines.

The controller opens one control session per device (`{"hello": {}}`), sends every device its
assignment, and only when all of them accepted it starts them, downstream first, so a sender
never starts before its receiver is ready and the first values are not lost. If any device is
down or refuses its assignment, the devices already deployed are stopped again: nothing is left
half-started. Callback sinks deliver their values over the same sessions.

These functions connect to every device directly. `controller/supervisor/` (what `sensormesh
up|deploy|status|stop` use) deploys along the topology's control routes instead (forwarded
through gateways, or over a registration), watches the devices and re-routes around a failed
gateway; it reuses `device_order`, `DeployError` and `dispatch` from here.
"""
from __future__ import annotations

import selectors
import time
from dataclasses import dataclass, field
from typing import Callable

import networkx as nx

from sensormesh.controller.names import name_list
from sensormesh.device import codec
from sensormesh.client import Client, DeviceError
from sensormesh.controller.deliveries import Deliveries


class DeployError(Exception):
    """A device could not be reached, or refused its assignment."""


@dataclass
class DeviceSession:
    name: str
    address: str
    client: Client
    info: dict = field(default_factory=dict)


def pipe_ends(assignments: dict[str, dict]) -> tuple[dict[str, set], dict[str, set]]:
    """({edge: devices sending it}, {edge: devices receiving it}) from the pipe steps: the
    pipe_out and pipe_in of one hop share an `edge` id."""
    senders: dict[str, set] = {}
    receivers: dict[str, set] = {}
    for name, a in assignments.items():
        for step in a.get("steps", []):
            edge = (step.get("params") or {}).get("edge")
            if edge is None:
                continue
            if step.get("type") == "pipe_out":
                senders.setdefault(edge, set()).add(name)
            elif step.get("type") == "pipe_in":
                receivers.setdefault(edge, set()).add(name)
    return senders, receivers


def device_order(assignments: dict[str, dict], addresses: dict[str, str] | None = None) -> list[str]:
    """Devices ordered downstream first: a device comes after every device its pipes send to.

    The pipe_out and pipe_in of one hop share an `edge` id, so the sender and receiver of every
    hop are known whichever end dials and whatever address (host:port or unix:PATH) it uses.
    Cycles between devices (possible with several pipelines) fall back to name order.
    `addresses` is accepted for compatibility and not needed.
    """
    senders, receivers = pipe_ends(assignments)
    g = nx.DiGraph()
    g.add_nodes_from(assignments)
    for edge, outs in senders.items():
        for snd in outs:
            for rcv in receivers.get(edge, ()):
                if rcv != snd:
                    g.add_edge(rcv, snd)   # receiver before sender
    try:
        return list(nx.lexicographical_topological_sort(g))
    except nx.NetworkXUnfeasible:
        return sorted(assignments)


def start_waves(assignments: dict[str, dict]) -> list[list[str]]:
    """device_order in waves that may start at once: a device's wave comes after the waves of
    every device its pipes send to, so each wave's receivers are running before it starts.
    Cycles between devices fall back to one device per wave, in name order."""
    order = device_order(assignments)
    senders, receivers = pipe_ends(assignments)
    sends_to: dict[str, set] = {n: set() for n in assignments}
    for edge, outs in senders.items():
        for snd in outs:
            sends_to[snd] |= receivers.get(edge, set()) - {snd}
    level: dict[str, int] = {}
    for name in order:
        ahead = [level[r] for r in sends_to[name] if r in level]
        if len(ahead) < len(sends_to[name]):
            return [[n] for n in order]      # a cycle: device_order fell back to name order
        level[name] = 1 + max(ahead) if ahead else 0
    waves: list[list[str]] = [[] for _ in range(1 + max(level.values(), default=-1))]
    for name in order:
        waves[level[name]].append(name)
    return waves


def connect(name: str, address: str, timeout: float = 5.0) -> DeviceSession:
    try:
        c = Client(address, timeout=timeout)
    except OSError as e:
        raise DeployError(f"device {name} at {address} is not reachable: {e}") from None
    try:
        info = c.call({"hello": {}})["info"]
    except (DeviceError, OSError, codec.ProtocolError) as e:
        c.close()
        raise DeployError(f"device {name} at {address} did not answer hello: {e}") from None
    return DeviceSession(name, address, c, info)


class Deployment:
    """The sessions of one deployed pipeline."""

    def __init__(self, sessions: dict[str, DeviceSession], order: list[str], deliveries: Deliveries | None = None):
        self.sessions = sessions
        self.order = order
        self.pending: list[tuple[str, dict]] = []
        self.deliveries = deliveries if deliveries is not None else Deliveries()

    def stop(self) -> dict[str, dict]:
        """Stop every device (sources first is the device's own business); returns final stats."""
        final = {}
        for name in reversed(self.order):  # upstream first: senders flush before receivers stop
            s = self.sessions[name]
            try:
                s.client.send({"stop": {}})
                while True:
                    m = s.client.recv()
                    if m is None:
                        break
                    if "stopped" in m:
                        final[name] = m["stopped"]
                        break
                    self.pending.append((name, m))
            except (OSError, codec.ProtocolError) as e:
                final[name] = {"error": str(e)}
        return final

    def close(self):
        for s in self.sessions.values():
            s.client.close()

    def watch(self, on_deliver: Callable[[str, str, list], None], until: Callable[[], bool],
              timeout: float | None = None, on_event: Callable[[str], None] | None = None,
              cut_short: Callable[[], str | None] | None = None) -> None:
        """Read deliveries from every device until until() is true (or timeout seconds pass).

        on_deliver(device, step, values) gets callback-sink values; on_event(text) gets what
        the operator should know (a device reported an error, a session closed). cut_short is
        the Supervisor's (this deployment does not re-route: nothing waits long here)."""
        if on_event is None:
            on_event = lambda text: on_deliver("", "", [{"error": text}])  # noqa: E731
        for name, m in self.pending:
            self._dispatch(name, m, on_deliver, on_event)
        self.pending = []
        sel = selectors.DefaultSelector()
        for name, s in self.sessions.items():
            s.client.sock.settimeout(None)
            sel.register(s.client.sock, selectors.EVENT_READ, name)
            # messages already decoded but not yet read
            while True:
                m = s.client.decoder.next()
                if m is None:
                    break
                self._dispatch(name, m, on_deliver, on_event)
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while not until():
                wait = 0.2 if deadline is None else min(0.2, deadline - time.monotonic())
                if wait <= 0:
                    return
                for key, _ in sel.select(wait):
                    name = key.data
                    s = self.sessions[name]
                    try:
                        data = s.client.sock.recv(1 << 16)
                    except OSError as e:     # reset: the device died with our messages unread
                        sel.unregister(s.client.sock)
                        on_event("device %s's control session was lost: %s" % (name, e))
                        continue
                    if not data:
                        sel.unregister(s.client.sock)
                        on_event("device %s closed its control session" % name)
                        continue
                    s.client.decoder.feed(data)
                    while True:
                        m = s.client.decoder.next()
                        if m is None:
                            break
                        self._dispatch(name, m, on_deliver, on_event)
        finally:
            sel.close()
            for s in self.sessions.values():
                s.client.sock.settimeout(5.0)

    def _dispatch(self, name, m, on_deliver, on_event):
        """dispatch() with callback values taken once and confirmed to the device."""
        if isinstance(m, dict) and isinstance(m.get("deliver"), dict):
            d = m["deliver"]
            values, confirm = self.deliveries.take(name, d)
            if confirm is not None:
                try:
                    self.sessions[name].client.send(confirm)
                except (OSError, codec.ProtocolError):
                    pass          # the device sends them again to whoever subscribes next
            for text in self.deliveries.news():
                on_event(text)
            if not values:
                return
            m = {"deliver": dict(d, values=values)}
        dispatch(name, m, on_deliver, on_event)


def dispatch(name, m, on_deliver, on_event):
    """Hand one control message from device `name` to on_deliver (callback-sink values) or
    on_event (an error the device reported); other messages are not for the watcher."""
    if isinstance(m, dict) and "deliver" in m:
        d = m["deliver"]
        on_deliver(name, d.get("step"), d.get("values", []))
    elif isinstance(m, dict) and "error" in m:
        e = m["error"]
        on_event("device %s: %s" % (name, e.get("message", e) if isinstance(e, dict) else e))


def deploy(assignments: dict[str, dict], addresses: dict[str, str], timeout: float = 5.0,
           deliveries: Deliveries | None = None) -> Deployment:
    """Deploy and start every assignment; all or nothing.

    assignments: device name -> assignment; addresses: device name -> "host:port" / "unix:PATH".
    deliveries: what callback values were already taken, shared with an earlier Deployment (for
    example of a sink device that was restarted), so none is handed on twice.
    """
    missing = [n for n in assignments if n not in addresses]
    if missing:
        raise DeployError("no address for device(s): %s; give each `address: host:port` or mark it "
                          "`local: true`" % name_list(missing))
    order = device_order(assignments, addresses)
    sessions: dict[str, DeviceSession] = {}
    aside: list[tuple[str, dict]] = []     # messages that came before a reply: watch() takes them
    try:
        for name in order:
            sessions[name] = connect(name, addresses[name], timeout)
        for name in order:
            s = sessions[name]
            try:
                request(s, {"deploy": {"assignment": assignments[name], "acks": True}}, "deployed", aside)
            except DeviceError as e:
                raise DeployError(f"device {name} refused its assignment: {e.message}") from None
        for name in order:  # downstream first
            try:
                request(sessions[name], {"start": {}}, "started", aside)
            except DeviceError as e:
                raise DeployError(f"device {name} did not start: {e.message}") from None
    except (DeployError, OSError, codec.ProtocolError) as e:
        for s in sessions.values():
            try:
                s.client.call({"stop": {}})
            except Exception:
                pass
            s.client.close()
        if isinstance(e, DeployError):
            raise
        raise DeployError(f"deployment failed: {e}") from None
    dep = Deployment(sessions, order, deliveries)
    dep.pending = aside
    return dep


def request(session: DeviceSession, msg: dict, key: str, aside: list[tuple[str, dict]]) -> dict:
    """Send one control message and return the reply that carries `key` (an error reply raises
    DeviceError). A device may send callback values on the same session before it answers: a sink
    deployed again gets its input replayed as soon as its pipes exist, before it is started. Those
    messages go to `aside` (device name, message) for the watcher, which takes and confirms them;
    taken as the reply, their values were lost while the device counted them as delivered."""
    c = session.client
    c.send(msg)
    while True:
        reply = c.recv()
        if reply is None:
            raise DeviceError({"code": "closed", "message": "connection closed before a reply"})
        if type(reply) is dict and "error" in reply:
            raise DeviceError(reply["error"])
        if type(reply) is dict and key in reply:
            return reply
        aside.append((session.name, reply))


def status(addresses: dict[str, str], timeout: float = 3.0) -> dict[str, dict]:
    """Each device's status, or {"error": ...} for a device that does not answer."""
    out = {}
    for name, addr in addresses.items():
        try:
            c = Client(addr, timeout=timeout)
            out[name] = c.call({"status": {}})["status"]
            c.close()
        except (OSError, DeviceError, codec.ProtocolError) as e:
            out[name] = {"error": f"not reachable at {addr}: {e}"}
    return out


def stop(addresses: dict[str, str], timeout: float = 3.0) -> dict[str, dict]:
    out = {}
    for name, addr in addresses.items():
        try:
            c = Client(addr, timeout=timeout)
            c.call({"hello": {}})
            out[name] = c.call({"stop": {}}).get("stopped", {})
            c.close()
        except (OSError, DeviceError, codec.ProtocolError) as e:
            out[name] = {"error": f"not reachable at {addr}: {e}"}
    return out
