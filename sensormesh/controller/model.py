# The pipeline graph and the device inventory, validated: what the Python API and the YAML
# file both produce, and what placement consumes.
#
# A Model is built once and checked as a whole: every problem found (unknown step types,
# dangling inputs, cycles, wrong arity, bad parameters, unknown devices or sensors, code that
# cannot be shipped) is collected and raised together as one ModelError, each Problem naming
# the step or device and the key. After validation the model also holds the estimates
# placement needs: per step the output flow (values/s, bytes/value), CPU and memory cost, the
# interpreters it can run on, and for sources the device that has the sensor.
import difflib
import hashlib
import math
import os
import re
import tempfile

import networkx as nx

from sensormesh.controller import catalog, units
from sensormesh.controller.errors import ModelError, Problem, ShippingError
from sensormesh.controller.names import name_list
from sensormesh.controller.shipping import INTERPRETERS, CodeShipper, pack

STEP_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
DEVICE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")

# Defaults for devices that do not say: an ESP32-WROOM-32 with WiFi running (about 96 KB of
# heap left for steps), and a desktop core (cpu in ESP32-core units, see catalog.py).
DEVICE_DEFAULTS = {
    "micropython": {"cpu": 1, "memory": 96000},
    "cpython": {"cpu": 20, "memory": 256 * 1024 * 1024},
}

DEVICE_KEYS = ("interpreter", "cpu", "memory", "heap", "romfs", "sensors", "address", "addresses", "unix", "local",
               "description")
# The Python heap a MicroPython device has: `sensormesh up` runs a local one on the unix port under
# exactly this heap, so every local run proves that the device's pipeline fits. 96K is what an
# ESP32 without PSRAM has free with WiFi up. A board runs the package either from a ROMFS partition
# (`romfs`, the default: its .mpy files run in place from flash, and the heap holds only the
# objects they make; `sensormesh board deploy --romfs`) or from .mpy files on its flash (`romfs:
# false`: each module's bytecode is copied into the heap, about a third more heap for code). The
# whole test suite runs its boards from ROMFS under 96K. From files a keyed board running a
# deployment fits 96K, but not every role of the test suite (a board relaying a keyed pipe in the
# middle of a chain needs more than 104K on this 64-bit port; benchmarks/bench_heap.py,
# docs/performance.md): give such a board `heap: 112K`. CPython devices take neither setting.
DEFAULT_HEAP = "96K"
DEFAULT_ROMFS = True
HEAP_UNITS = {"": 1, "K": 1024, "M": 1024 * 1024}
MIN_HEAP = 16 * 1024      # below this MicroPython does not even start the device package


def heap_bytes(text):
    """'96K' / '1M' / '98304' -> bytes; ValueError naming the problem."""
    s = str(text).strip().upper()
    if isinstance(text, bool) or not s:
        raise ValueError("must be a size like 96K, 128K or 1M, not %r" % (text,))
    unit = s[-1] if s[-1] in "KM" else ""
    digits = s[:-1] if unit else s
    if not digits.isdigit():
        raise ValueError("must be a size like 96K, 128K or 1M, not %r" % (text,))
    n = int(digits) * HEAP_UNITS[unit]
    if n < MIN_HEAP:
        raise ValueError("%r is too small: a MicroPython device needs at least %dK" % (text, MIN_HEAP // 1024))
    return n


# The longest Unix socket path Linux takes (sun_path holds 108 bytes with the closing NUL).
MAX_SOCKET_PATH = 107

LOOPBACK = ("localhost", "127.0.0.1", "::1", "[::1]", "ip6-localhost")


def run_dir():
    """The folder holding the Unix sockets of this working directory's local devices.

    One per working directory (named by a hash of its path), so two projects or two checkouts
    that run `sensormesh up` at once never share a socket path, while `status` and `stop` in
    the same directory find the sockets that `up` made."""
    cwd = os.getcwd()
    found = _RUN_DIRS.get(cwd)
    if found is None:    # realpath costs a stat per path component: once per directory
        key = hashlib.sha1(os.path.realpath(cwd).encode()).hexdigest()[:10]
        found = _RUN_DIRS[cwd] = os.path.join(tempfile.gettempdir(), "sensormesh-%s" % key)
    return found


_RUN_DIRS = {}


def default_unix_path(device_name, pipeline=None):
    """Where a `local: true` device of `pipeline` listens for pipes when its entry gives no
    `unix` path: a folder per pipeline in the working directory's run_dir(), so two pipelines
    with a device of the same name run side by side.

    `sensormesh up` starts local devices with this path; assignments address same-host peers
    with "unix:" + this path."""
    if pipeline is None:
        return os.path.join(run_dir(), "%s.sock" % _socket_name(device_name))
    return os.path.join(run_dir(), _pipeline_folder(pipeline), "%s.sock" % _socket_name(device_name))


def _socket_name(device_name):
    """A device's socket file name: its name when short, else its first letters and a hash of
    it (a long device name, valid as it is, would not fit a Unix socket's path)."""
    name = str(device_name)
    if len(name) <= 32:
        return name
    return "%s-%s" % (name[:16], hashlib.sha1(name.encode()).hexdigest()[:10])


def _pipeline_folder(pipeline):
    """A pipeline's folder name: its name when that is a short plain file name, else a hash of it
    (a Unix socket's path has room for about 100 bytes)."""
    name = str(pipeline)
    if re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,31}", name):
        return name
    return "p-" + hashlib.sha1(name.encode()).hexdigest()[:10]


def _suggest(word, options):
    close = difflib.get_close_matches(str(word), [str(o) for o in options], n=1)
    return " (did you mean %r?)" % close[0] if close else ""


class Device:
    """One device of the inventory: what it runs, what it can take, where it is reached."""

    pipeline = None     # the name of the pipeline whose model holds it (Model sets it)

    def __init__(self, name, interpreter="cpython", cpu=None, memory=None, sensors=(), address=None,
                 unix=None, local=False, description=None, origin=None, addresses=None, heap=None, romfs=None):
        self.name = name
        self.interpreter = interpreter
        self.heap = DEFAULT_HEAP if heap is None and interpreter == "micropython" else heap
        self.romfs = DEFAULT_ROMFS if romfs is None and interpreter == "micropython" else romfs
        # (an interpreter that is no name, a list say, is a problem() below, not a crash here)
        defaults = DEVICE_DEFAULTS.get(interpreter if isinstance(interpreter, str) else None,
                                       DEVICE_DEFAULTS["cpython"])
        self.cpu = defaults["cpu"] if cpu is None else cpu
        self.memory = defaults["memory"] if memory is None else memory
        self.raw_sensors = list(sensors) if isinstance(sensors, (list, tuple)) else sensors
        self.sensors = []           # normalised specs: {"name", "kind", ...}
        self.address = address
        self.addresses = addresses  # {domain: "host:port"} when it listens on several networks
        self.unix = unix
        self.local = local
        self.description = description
        self.origin = origin

    # -- checks ---------------------------------------------------------------------------

    def problems(self):
        """[(key, message)] for everything wrong with this entry; normalises sensors."""
        out = []
        if not isinstance(self.name, str) or not DEVICE_NAME.match(self.name):
            out.append(("name", "device names are letters, digits, '_', '.', '-'; not %r" % (self.name,)))
        elif self.name == "controller":     # topology.CONTROLLER: it names the controller in routes
            out.append(("name", "a device may not be called 'controller': the name is reserved for the "
                                "controller in routes; give the device another name"))
        if not isinstance(self.interpreter, str) or self.interpreter not in INTERPRETERS:
            out.append(("interpreter", "must be cpython or micropython, not %r" % (self.interpreter,)))
        for key in ("cpu", "memory"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
                out.append((key, "must be a positive number, not %r" % (v,)))
            elif not math.isfinite(v):
                out.append((key, "must be a finite positive number, not %r" % (v,)))
        if self.heap is not None:
            if self.interpreter != "micropython":
                out.append(("heap", "applies to MicroPython devices only (the heap of the board a device "
                                    "stands for); a %s device takes none" % self.interpreter))
            else:
                try:
                    heap_bytes(self.heap)
                except ValueError as e:
                    out.append(("heap", str(e)))
        if self.romfs is not None:
            if self.interpreter != "micropython":
                out.append(("romfs", "applies to MicroPython devices only (whether the board a device "
                                     "stands for runs the package from a ROMFS partition); a %s device "
                                     "takes none" % self.interpreter))
            elif not isinstance(self.romfs, bool):
                out.append(("romfs", "must be true or false, not %r" % (self.romfs,)))
        if not isinstance(self.local, bool):
            out.append(("local", "must be true or false, not %r" % (self.local,)))
        if self.unix is not None and (not isinstance(self.unix, str) or not self.unix):
            out.append(("unix", "must be a socket path, not %r" % (self.unix,)))
        elif self.unix is not None and len(self.unix.encode()) > MAX_SOCKET_PATH:
            out.append(("unix", "%s is %d bytes long; a Unix socket's path has room for %d: give a shorter one"
                        % (self.unix, len(self.unix.encode()), MAX_SOCKET_PATH)))
        if self.address is None and not self.addresses:
            if not self.local:
                out.append(("address", "is required (host:port) unless the device is local: true"))
        elif self.address is not None:
            msg = _address_problem(self.address)
            if msg:
                out.append(("address", msg))
        if self.addresses is not None:
            if not isinstance(self.addresses, dict) or not self.addresses:
                out.append(("addresses", "must map domain names to host:port, not %r" % (self.addresses,)))
            else:
                for dom, addr in self.addresses.items():
                    msg = _address_problem(addr)
                    if msg:
                        out.append(("addresses", "%s: %s" % (dom, msg)))
        out.extend(self._normalise_sensors())
        return out

    def _normalise_sensors(self):
        from sensormesh.device.sensors.registry import SensorError, parse_spec
        out, specs, names = [], [], set()
        if not isinstance(self.raw_sensors, list):
            return [("sensors", "must be a list of sensors, not %r" % (self.raw_sensors,))]
        for i, s in enumerate(self.raw_sensors):
            key = "sensors[%d]" % i
            if isinstance(s, str):
                try:
                    spec = parse_spec(s)
                except SensorError as e:
                    out.append((key, str(e)))
                    continue
            elif isinstance(s, dict):
                spec = dict(s)
                if not isinstance(spec.get("kind"), str):
                    out.append((key, "a sensor needs a kind (one of %s)" % ", ".join(sorted(catalog.SENSOR_RATES))))
                    continue
                spec.setdefault("name", spec["kind"])
            else:
                out.append((key, "must be a sensor kind, 'name=kind@rate' or a mapping, not %r" % (s,)))
                continue
            kind = spec["kind"]
            if kind not in catalog.SENSOR_RATES and kind != "csv":
                out.append((key, "unknown sensor kind %r%s; known: %s"
                            % (kind, _suggest(kind, catalog.SENSOR_RATES), ", ".join(sorted(catalog.SENSOR_RATES)))))
                continue
            rate = spec.get("rate")
            if rate is not None and (isinstance(rate, bool) or not isinstance(rate, (int, float))
                                     or not 0 <= rate < math.inf):
                out.append((key, "rate must be a finite number >= 0, not %r" % (rate,)))
                continue
            if spec["name"] in names:
                out.append((key, "two sensors named %r on one device" % spec["name"]))
                continue
            names.add(spec["name"])
            specs.append(spec)
        self.sensors = specs
        return out

    # -- facts ----------------------------------------------------------------------------

    def find_sensor(self, ref):
        """The sensor spec called `ref`, or else the first of kind `ref`, or None."""
        for s in self.sensors:
            if s["name"] == ref:
                return s
        for s in self.sensors:
            if s["kind"] == ref:
                return s
        return None

    @property
    def main_address(self):
        """The address peers dial without a topology: `address`, or the only one of `addresses`."""
        if self.address is not None:
            return self.address
        if isinstance(self.addresses, dict) and len(self.addresses) == 1:
            return next(iter(self.addresses.values()))
        return None

    @property
    def host(self):
        addr = self.main_address
        if not isinstance(addr, str):
            return None
        host = addr.rpartition(":")[0]
        return "localhost" if host in LOOPBACK else host

    @property
    def unix_path(self):
        """The Unix socket path this device listens on for pipes, or None."""
        if self.unix:
            return self.unix
        if self.local:
            return default_unix_path(self.name, self.pipeline)
        return None

    @property
    def cpu_units(self):
        """CPU units per second this device can give (see catalog.CPU_UNITS_PER_S)."""
        return self.cpu * catalog.CPU_UNITS_PER_S

    def same_host(self, other):
        """Both on one machine: both local, or both CPython at the same address host."""
        if self.local and other.local:
            return True
        return (self.interpreter == other.interpreter == "cpython" and self.host is not None
                and self.host == other.host)

    def to_dict(self):
        d = {"interpreter": self.interpreter, "cpu": self.cpu, "memory": self.memory,
             "sensors": list(self.raw_sensors)}
        for k in ("heap", "address", "addresses", "unix", "description"):
            if getattr(self, k) is not None:
                d[k] = getattr(self, k)
        if self.romfs is not None and self.romfs != DEFAULT_ROMFS:
            d["romfs"] = self.romfs
        if self.local:
            d["local"] = True
        return d

    def __repr__(self):
        return "Device(%r, %s, cpu=%s, memory=%s)" % (self.name, self.interpreter, self.cpu, self.memory)


def _listen_places(d):
    """[(key, domain, place, address as written)] for where device `d` listens: place is
    ("tcp", host, port) for each valid host:port (loopback names are one host; domain: the
    `addresses` entry's, None for `address`), ("unix", absolute path) for its socket. A local
    device without a port has none: it binds a free one."""
    out = []
    addrs = [("address", None, d.address)]
    if isinstance(d.addresses, dict):
        addrs += [("addresses", dom, a) for dom, a in d.addresses.items()]
    for key, domain, addr in addrs:
        if addr is None or _address_problem(addr):
            continue
        host, _, port = addr.rpartition(":")
        host = host.lower()
        out.append((key, domain, ("tcp", "localhost" if host in LOOPBACK else host, int(port)), addr))
    if isinstance(d.unix, str) and d.unix or d.local is True and isinstance(d.name, str):
        path = d.unix_path
        out.append(("unix" if d.unix else "local", None, ("unix", os.path.abspath(path)), path))
    return out


def _address_problem(addr):
    if not isinstance(addr, str):
        return "must be a string host:port, not %r" % (addr,)
    host, sep, port = addr.rpartition(":")
    if not sep or not host:
        return "must be host:port, not %r" % addr
    if not port.isdigit() or not 0 < int(port) < 65536:
        return "port must be 1..65535, not %r" % port
    return None


class Step:
    """One step of the graph as the user wrote it (params use device names: "time-frame")."""

    def __init__(self, id, type, params=None, inputs=(), on=None, requires=None, origin=None, fn=None):
        self.id = id
        self.type = type
        self.params = dict(params or {})
        self.inputs = list(inputs) if isinstance(inputs, (list, tuple)) else inputs
        self.on = on
        self.requires = requires
        self.origin = origin        # "app.py:12" for API steps, for messages
        self.fn = fn                # map/filter: the function object before it is shipped

    @property
    def stype(self):
        return catalog.get(self.type)

    @property
    def is_sink(self):
        t = self.stype
        return t is not None and t.user and t.outputs == 0

    def to_dict(self):
        d = {"type": self.type}
        d.update(self.params)
        if len(self.inputs) == 1:
            d["input"] = self.inputs[0]
        elif self.inputs:
            d["inputs"] = list(self.inputs)
        if self.on:
            d["on"] = self.on
        if self.requires:
            d["requires"] = self.requires
        return d

    def __repr__(self):
        return "Step(%r, %r, inputs=%r)" % (self.id, self.type, self.inputs)


class Model:
    """A validated pipeline: steps (topologically ordered), devices and estimates.

    Raises ModelError listing every problem found. `require_devices=False` checks the graph
    alone (an inventory is needed before placement, not before the graph is written)."""

    def __init__(self, name, steps, devices=(), callbacks=None, network=None, topology=None,
                 shipper=None, base_dir=None, require_devices=True):
        self.name = name
        self.step_list = list(steps)
        self.device_list = list(devices)
        for d in self.device_list:
            if isinstance(d, Device):
                d.pipeline = name       # its default Unix socket is the pipeline's (unix_path)
        self.callbacks = dict(callbacks or {})
        self.network = network          # the raw `network:` section, if any
        self.topology = topology        # topology.Topology built from it, if that module exists
        self.shipper = shipper or CodeShipper()
        self.base_dir = base_dir        # where "file.py:name" references are looked up
        # {device: {"addresses": {domain or "A->B" link: "host:port"}, "address": on its own
        # host}} set by an emulated network (sensormesh/netlab/emulation.py): every device is
        # then its own host, reached at these addresses only (no Unix sockets between devices).
        self.address_plan = None
        self.warnings = []
        self.steps = {}
        self.devices = {}
        self.order = []
        self.consumers = {}
        self.device_params = {}
        self.units = {}              # step -> what its values measure (units.py), or None
        self.hints = {}
        self.code = {}
        self.interpreters = {}
        self.interpreter_reasons = {}
        self.source_device = {}
        self.sensor_spec = {}
        self.flows = {}
        self.costs = {}
        self._validate(require_devices)

    # -- validation ---------------------------------------------------------------------------

    def _validate(self, require_devices):
        problems = []
        if not isinstance(self.name, str) or not self.name:
            problems.append(Problem("the pipeline needs a name (a non-empty string)", key="pipeline"))
        self._check_devices(problems, require_devices)
        self._check_steps(problems)
        # These work on whatever part of the graph is valid, so one run reports them all.
        self._check_cycles(problems)
        self._ship_code(problems)
        self._resolve_sources(problems, require_devices)
        if not problems:
            self._estimate(problems)
        if problems:
            raise ModelError(problems)
        sinks = [s for s in self.step_list if s.is_sink]
        if not sinks:
            self.warnings.append("the pipeline has no sink: its results go nowhere")
        for s in self.step_list:
            if not s.is_sink and not self.consumers[s.id]:
                self.warnings.append("%sstep %r: its output is not used by any step or sink"
                                     % ("%s: " % s.origin if s.origin else "", s.id))

    def _check_devices(self, problems, require_devices):
        for d in self.device_list:
            for key, msg in d.problems():
                problems.append(Problem(msg, device=d.name, key=key, section="devices"))
            if d.name in self.devices:
                problems.append(Problem("two devices with this name", device=d.name, section="devices"))
            self.devices[d.name] = d
        if require_devices and not self.device_list:
            problems.append(Problem("the inventory is empty: add devices (p.device(...) or devices: in the file)",
                                    key="devices", section="devices"))
        self._check_shared_addresses(problems)

    def _check_shared_addresses(self, problems):
        """Two devices cannot listen at one address (host:port, or Unix socket path): the second
        would not start, or the controller would reach the first in its place. Entries of
        `addresses` for different domains are different networks, which may reuse an address
        (two boards' access points at 192.168.4.1); loopback addresses are one machine's."""
        seen = {}       # place -> [(device name, domain or None, address as written)]
        for d in self.device_list:
            for key, domain, place, written in _listen_places(d):
                others = seen.setdefault(place, [])
                other = next((o for o in others if o[0] != d.name and (
                    domain is None or o[1] is None or domain == o[1] or place[1] == "localhost")), None)
                others.append((d.name, domain, written))
                if other is None:
                    continue
                if place[0] == "unix":
                    msg = "socket path %s is also the one of device %r; each device needs a socket of its own" % (
                        written, other[0])
                else:
                    same = "" if written == other[2] else " (written %s there: the same host and port)" % other[2]
                    msg = "%s is also the address of device %r%s; each device needs an address of its own" % (
                        written, other[0], same)
                problems.append(Problem(msg, device=d.name, key=key, section="devices"))

    def _check_steps(self, problems):
        def bad(msg, step, key=None):
            problems.append(Problem(msg, step=step.id, key=key, section="steps"))

        if not self.step_list:
            problems.append(Problem("the pipeline has no steps: add a source and what reads it "
                                    "(p.source(...), or steps: in a file)", key="steps", section="steps"))

        for s in self.step_list:
            if not isinstance(s.id, str) or not STEP_ID.match(s.id):
                problems.append(Problem("step ids start with a letter or '_' and hold letters, digits, "
                                        "'_', '.', '-'; not %r" % (s.id,), step=s.id, key="id"))
                continue
            if s.id in self.steps:
                bad("two steps with this id", s)
                continue
            self.steps[s.id] = s
        for s in self.steps.values():
            t = catalog.get(s.type) if isinstance(s.type, str) else None
            if t is None:
                bad("unknown step type %r%s; known: %s" % (s.type, _suggest(s.type, catalog.USER_TYPES),
                                                           ", ".join(catalog.USER_TYPES)), s, "type")
                continue
            if not t.user:
                bad("%s steps are inserted by the controller on cross-device edges; a pipeline "
                    "cannot use them directly" % s.type, s, "type")
                continue
            if not isinstance(s.inputs, list) or not all(isinstance(i, str) for i in s.inputs):
                bad("inputs must be a list of step ids, not %r" % (s.inputs,), s, "inputs")
                continue
            if not t.check_arity(len(s.inputs)):
                bad("%s takes %s, got %d%s" % (s.type, t.arity_text(), len(s.inputs),
                                               " (%s)" % ", ".join(s.inputs) if s.inputs else ""), s, "inputs")
            for i, ref in enumerate(s.inputs):
                up = self.steps.get(ref)
                if up is None:
                    problems.append(Problem("input %r does not exist%s" % (ref, _suggest(ref, self.steps)),
                                            step=s.id, key="inputs", section="steps", item=i))
                elif up.is_sink:
                    problems.append(Problem("input %r is a sink (%s), which has no output" % (ref, up.type),
                                            step=s.id, key="inputs", section="steps", item=i))
            params = s.params if s.fn is None else dict(s.params, fn="user:pending")
            for key, msg in t.check_params(params, len(s.inputs)):
                bad(msg, s, key)
            if s.on is not None and (not isinstance(s.on, str) or s.on not in self.devices):
                if self.devices:
                    bad("unknown device %r%s; devices: %s" % (s.on, _suggest(s.on, self.devices),
                                                              name_list(self.devices)), s, "on")
                elif self.device_list or not isinstance(s.on, str):
                    bad("unknown device %r" % (s.on,), s, "on")
            if s.requires is not None and (not isinstance(s.requires, str) or s.requires not in INTERPRETERS):
                bad("must be cpython or micropython, not %r" % (s.requires,), s, "requires")
        self._check_client_ids(problems)
        self.consumers = {sid: [] for sid in self.steps}
        for s in self.steps.values():
            if isinstance(s.inputs, list):
                for ref in s.inputs:
                    if isinstance(ref, str) and ref in self.consumers and s.id not in self.consumers[ref]:
                        self.consumers[ref].append(s.id)

    def _check_client_ids(self, problems):
        """Two MQTT steps with one client id: a broker disconnects the first when the second
        connects, and the two would push each other out for ever."""
        seen = {}
        for s in self.steps.values():
            if s.type not in ("mqtt_in", "mqtt_out") or not isinstance(s.params, dict):
                continue
            cid = s.params.get("client-id")
            if not isinstance(cid, str) or not cid:
                continue
            if cid in seen:
                problems.append(Problem(
                    "client id %r is also the one of step %r; each MQTT step needs a client id of its own "
                    "(a broker disconnects a client when another connects with its id)" % (cid, seen[cid]),
                    step=s.id, key="client-id", section="steps"))
            else:
                seen[cid] = s.id
        # an explicit id may also be the default (sensormesh-<device>-<step>) of another step
        for s in self.steps.values():
            if s.type not in ("mqtt_in", "mqtt_out") or not isinstance(s.params, dict) or s.params.get("client-id"):
                continue
            for d in self.devices:
                other = seen.get("sensormesh-%s-%s" % (d, s.id))
                if other is not None and other != s.id:
                    problems.append(Problem(
                        "client id %r is the one step %r gets by default on device %r; give %r another"
                        % ("sensormesh-%s-%s" % (d, s.id), s.id, d, other),
                        step=other, key="client-id", section="steps"))
        files = {}
        for s in self.steps.values():
            if s.type != "csv" or not isinstance(s.params, dict) or not isinstance(s.params.get("path"), str):
                continue
            path = s.params["path"]
            other = next((o for o in files.get(path, ()) if not (
                isinstance(o.on, str) and isinstance(s.on, str) and o.on != s.on)), None)
            if other is not None:
                problems.append(Problem(
                    "path %r is also the file of step %r; two csv sinks writing one file would mix their "
                    "rows (give each its own path, or pin them to different devices with on:)" % (path, other.id),
                    step=s.id, key="path", section="steps"))
            files.setdefault(path, []).append(s)

    def _check_cycles(self, problems):
        g = nx.DiGraph()
        g.add_nodes_from(self.steps)
        for s in self.steps.values():
            if isinstance(s.inputs, list):
                for ref in s.inputs:
                    if isinstance(ref, str) and ref in self.steps:
                        g.add_edge(ref, s.id)
        cycles = 0
        for comp in nx.strongly_connected_components(g):
            first = next(sid for sid in self.steps if sid in comp)
            if len(comp) == 1 and not g.has_edge(first, first):
                continue
            cycle = [first]
            for u, v in nx.find_cycle(g.subgraph(comp), source=first):
                cycle.append(v)
            problems.append(Problem("cycle: %s (a pipeline must be acyclic)" % " -> ".join(cycle),
                                    step=first, key="inputs", section="steps"))
            cycles += 1
        if not cycles:
            pos = {sid: i for i, sid in enumerate(self.steps)}
            self.order = list(nx.lexicographical_topological_sort(g, key=pos.__getitem__))

    def _ship_code(self, problems):
        for s in self.steps.values():
            if s.type not in ("map", "filter"):
                continue
            fn = s.fn if s.fn is not None else s.params.get("fn")
            if fn is None or (isinstance(fn, str) and catalog.get("map").param_map["fn"].check(fn)):
                continue        # already reported by the parameter check
            try:
                shipped = self.shipper.ship(fn, base_dir=self.base_dir)
            except ShippingError as e:
                problems.append(Problem(str(e.problems[0].message), step=s.id, key="fn", section="steps"))
                continue
            s.params["fn"] = shipped.ref
            self.code[s.id] = shipped

    def _resolve_sources(self, problems, require_devices):
        for s in self.steps.values():
            allowed = INTERPRETERS
            reasons = []
            if isinstance(s.requires, str) and s.requires:      # (anything else is a problem already)
                allowed = allowed & {s.requires}
                reasons.append("requires %s" % s.requires)
            st = s.stype
            if st is not None and st.interpreters is not None:
                allowed = allowed & st.interpreters
                reasons.append(st.interpreter_reason)
            shipped = self.code.get(s.id)
            if shipped is not None:
                allowed = allowed & shipped.interpreters
                reasons.extend(shipped.reasons)
            self.interpreters[s.id] = frozenset(allowed)
            self.interpreter_reasons[s.id] = reasons
            if s.type != "source" or not isinstance(s.params.get("sensor"), str):
                continue
            ref = s.params["sensor"]
            if s.on is not None and (not isinstance(s.on, str) or s.on not in self.devices):
                continue        # reported as an unknown device
            if s.on is not None:
                dev = self.devices[s.on]
                spec = dev.find_sensor(ref)
                if spec is None:
                    have = ", ".join(x["name"] for x in dev.sensors) or "none"
                    problems.append(Problem("device %r has no sensor %r (its sensors: %s)" % (s.on, ref, have),
                                            step=s.id, key="sensor", section="steps"))
                    continue
                self.source_device[s.id] = s.on
                self.sensor_spec[s.id] = spec
                continue
            if not self.devices:
                if require_devices:
                    problems.append(Problem("no device has sensor %r" % ref, step=s.id, key="sensor"))
                continue
            found = [(d, d.find_sensor(ref)) for d in self.devices.values()]
            found = [(d, spec) for d, spec in found if spec is not None]
            if not found:
                kinds = sorted({x["name"] for d in self.devices.values() for x in d.sensors}
                               | {x["kind"] for d in self.devices.values() for x in d.sensors})
                problems.append(Problem("no device has sensor %r%s (sensors in the inventory: %s)"
                                        % (ref, _suggest(ref, kinds), name_list(kinds, what="sensors")),
                                        step=s.id, key="sensor", section="steps"))
            elif len(found) > 1:
                problems.append(Problem("sensor %r is on %d devices (%s); say which with on:"
                                        % (ref, len(found), name_list(d.name for d, _ in found)),
                                        step=s.id, key="sensor", section="steps"))
            else:
                self.source_device[s.id] = found[0][0].name
                self.sensor_spec[s.id] = found[0][1]

    def _estimate(self, problems):
        for sid in self.order:
            s = self.steps[sid]
            t = s.stype
            params, hints = t.split(s.params, len(s.inputs))
            self.device_params[sid] = params
            self.hints[sid] = hints
            ins = [self.flows[i] for i in s.inputs]
            for key, msg in t.check_values(params, ins):
                problems.append(Problem(msg, step=sid, key=key, section="steps"))
            if s.type == "source":
                spec = self.sensor_spec.get(sid) or {"kind": params["sensor"]}
                self.units[sid] = units.of_sensor(spec.get("kind"))
            else:
                self.units[sid] = units.of_step(s.type, params, [self.units.get(i) for i in s.inputs])
                if s.type == "csv" and "units" not in params:
                    cu = units.csv_units(self.units[sid])
                    if cu:
                        params["units"] = cu     # the header names the units (docs/steps.md)
                if s.type == "mqtt_out" and params.get("discovery") and "measures" not in params:
                    u = self.units[sid]
                    if u and "quantity" in u:
                        params["measures"] = u   # Home Assistant discovery shows the unit
            if s.type == "source":
                out = t.flow(params, hints, ins, {"sensor": spec})
                cost = t.cost(dict(params, sensor=spec["kind"]), hints, ins, out)
            else:
                out = t.flow(params, hints, ins)
                cost = t.cost(params, hints, ins, out)
            shipped = self.code.get(sid)
            if shipped is not None and "memory" not in hints:
                cost.memory += catalog.CODE_MEMORY_PER_BYTE * shipped.size()
            self.flows[sid] = out
            self.costs[sid] = cost

    # -- use -----------------------------------------------------------------------------------

    def routing_inventory(self):
        """{device: {"address"?, "addresses"?}} as routing.py reads it; a local device without
        a TCP address is reached on its Unix socket."""
        inv = {}
        for name, dev in self.devices.items():
            entry = {}
            if dev.address:
                entry["address"] = dev.address
            if dev.addresses:
                entry["addresses"] = dict(dev.addresses)
            if not entry and dev.unix_path:
                entry["address"] = "unix:" + dev.unix_path
            inv[name] = entry
        for name, entry in (self.address_plan or {}).items():
            inv[name] = {k: (dict(v) if k == "addresses" else v) for k, v in entry.items()}
        return inv

    def fixed_device(self, sid):
        """The device a step must run on (source with the sensor, or pinned), else None."""
        s = self.steps[sid]
        return self.source_device.get(sid) or s.on

    def edges(self):
        """[(producer, consumer)] in topological order of the consumer."""
        return [(i, sid) for sid in self.order for i in dict.fromkeys(self.steps[sid].inputs)]

    def code_for(self, step_ids):
        """{module: source} for the shipped code the given steps use."""
        return pack([self.code[sid] for sid in step_ids if sid in self.code])

    def to_dict(self):
        """The model as the data of a pipeline file (devices, steps, sinks)."""
        d = {"pipeline": self.name}
        if self.devices:
            d["devices"] = {n: dev.to_dict() for n, dev in self.devices.items()}
        if self.network is not None:
            d["network"] = self.network
        d["steps"] = {s.id: self._step_dict(s) for s in self.step_list if not s.is_sink}
        d["sinks"] = {s.id: self._step_dict(s) for s in self.step_list if s.is_sink}
        return d

    def _step_dict(self, s):
        """A step with its defaults filled in (so API and file spellings compare equal)."""
        d = s.to_dict()
        params = dict(self.device_params.get(s.id, {}))
        params.update((k, v) for k, v in s.params.items() if s.stype.param_map[k].hint)
        for k in list(d):
            if k not in ("type", "input", "inputs", "on", "requires"):
                del d[k]
        d.update(params)
        return d

    def place(self, strategy=None, **options):
        """Placement of this model on its devices; see placement.place."""
        from sensormesh.controller.placement import place
        return place(self, strategy=strategy, **options)

    def __repr__(self):
        return "Model(%r, %d steps, %d devices)" % (self.name, len(self.steps), len(self.devices))
