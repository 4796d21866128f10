# Steps: mqtt_out (sink) and mqtt_in (source) through an MQTT broker, with paho-mqtt.
# CPython devices only: the controller places them there (catalog.py), and a board that is
# sent one refuses it with a StepError naming the reason. Loaded when an assignment first names
# one of them (kinds.FAMILIES).
#
# paho runs without its own thread: a loop timer calls client.loop(0) every POLL_MS, so every
# callback (messages in, connects, disconnects) runs on the device's one loop, like every
# other step. Connecting happens once at build time with a short timeout, so an unreachable
# broker fails the deployment with a clear error; later outages are ridden out: values wait
# in a bounded buffer (counted when it overflows, never silently lost) and the client
# reconnects with a growing delay.
import json
import os

from sensormesh.device.steps import Step, StepError

POLL_MS = 20                         # how often paho's network loop runs
CONNECT_TIMEOUT_S = 3.0              # build-time connect: an unreachable broker fails the deploy
RETRY_MS = (200, 500, 1000, 2000, 5000)
DEFAULT_BUFFER = 10000               # values kept while the broker is away


def split_broker(step, text):
    if type(text) is not str or not text:
        raise step.bad("broker must be \"HOST:PORT\", got %r" % (text,))
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise step.bad("broker must be \"HOST:PORT\", got %r" % (text,))
    return host.strip("[]"), int(port)


def topic_problem(topic, filter_ok):
    """None if `topic` is a valid MQTT topic name (or filter, when filter_ok), else why not."""
    if type(topic) is not str or not topic:
        return "must be a non-empty string"
    if len(topic.encode()) > 65535:
        return "is longer than MQTT's 65535 bytes"
    if "\x00" in topic:
        return "contains a NUL character"
    levels = topic.split("/")
    for i, lv in enumerate(levels):
        if "#" in lv or "+" in lv:
            if not filter_ok:
                return "contains the wildcard %r; a topic to publish to cannot have + or #" % ("#" if "#" in lv else "+")
            if lv not in ("#", "+") or (lv == "#" and i != len(levels) - 1):
                return "uses a wildcard wrongly: + and # must fill a whole level, # only the last"
    return None


class _Mqtt(Step):
    """What both MQTT steps share: the paho client, polled from the device loop."""

    def _client(self, params):
        try:
            import paho.mqtt.client as mqtt
        except ImportError:
            raise self.bad("%s needs paho-mqtt on a CPython device (pip install paho-mqtt); "
                           "this device has no paho" % self.TYPE)
        self.mqtt = mqtt
        self.host, self.port = split_broker(self, params.get("broker"))
        dev = getattr(self.ctx, "device", None)
        self.device_name = getattr(dev, "name", "device")
        cid = params.get("client-id") or "sensormesh-%s-%s" % (self.device_name, self.id)
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid, protocol=mqtt.MQTTv311)
        user = params.get("username")
        if user is not None:
            env = params.get("password-env")
            pw = os.environ.get(env) if env else None
            if env and pw is None:
                raise self.bad("password-env names %r, which is not set on this device" % env)
            c.username_pw_set(user, pw)
        tls = params.get("tls")
        if type(tls) is dict:          # {}: TLS with the system's CAs
            for k in ("ca", "cert", "key"):     # named here: the TLS library's error names no file
                if tls.get(k) is not None and not os.path.isfile(tls[k]):
                    raise self.bad("tls: %s file %r is not a file on this device" % (k, tls[k]))
            try:
                c.tls_set(ca_certs=tls.get("ca"), certfile=tls.get("cert"), keyfile=tls.get("key"))
            except Exception as e:
                raise self.bad("tls: %s" % e)
            if tls.get("insecure"):
                c.tls_insecure_set(True)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        self.client = c
        self.connected = False
        self.reconnects = 0
        self.retries = 0
        self.poll_timer = None
        self.retry_timer = None
        self.closed = False
        self.refused = None
        try:
            import socket
            old = socket.getdefaulttimeout()
            socket.setdefaulttimeout(CONNECT_TIMEOUT_S)
            try:
                c.connect(self.host, self.port, keepalive=30)
            finally:
                socket.setdefaulttimeout(old)
        except Exception as e:
            raise self.bad("cannot reach MQTT broker %s:%d: %s" % (self.host, self.port, e))

    def _handshake(self, done):
        """Run paho's loop until done() (the broker answered CONNECT, and SUBSCRIBE for a
        source) or CONNECT_TIMEOUT_S pass: a deployment that succeeds is connected (and
        subscribed), and a refused login fails it with the broker's reason."""
        import time
        end = time.monotonic() + CONNECT_TIMEOUT_S
        while not done() and time.monotonic() < end:
            if self.refused is not None:
                break
            if self.client.loop(timeout=0.05) != 0:
                break
        if self.refused is not None or not done():
            why = self.refused or "no answer within %g s" % CONNECT_TIMEOUT_S
            try:
                self.client.disconnect()
            except Exception:
                pass
            raise self.bad("MQTT broker %s:%d refused the connection: %s" % (self.host, self.port, why))
        self.poll_timer = self.ctx.call_later(POLL_MS, self._poll)

    def _poll(self):
        self.poll_timer = None
        if self.closed:
            return
        try:
            rc = self.client.loop(timeout=0)
        except Exception:
            rc = 1
        if rc != 0 and self.connected:
            self.connected = False
        if not self.connected and self.retry_timer is None and rc != 0:
            self._schedule_retry()
        self.poll_timer = self.ctx.call_later(POLL_MS, self._poll)

    def _schedule_retry(self):
        ms = RETRY_MS[min(self.retries, len(RETRY_MS) - 1)]
        self.retries += 1
        self.retry_timer = self.ctx.call_later(ms, self._retry)

    def _retry(self):
        self.retry_timer = None
        if self.closed or self.connected:
            return
        try:
            self.client.reconnect()
        except Exception:
            self._schedule_retry()

    def _on_connect(self, client, userdata, flags, reason_code, properties=None):
        if getattr(reason_code, "is_failure", False):
            self.refused = str(reason_code)
            return
        if self.retries or self.reconnects or getattr(self, "was_connected", False):
            self.reconnects += 1
            self.ctx.log("step '%s': connected to MQTT broker %s:%d again" % (self.id, self.host, self.port))
        self.was_connected = True
        self.connected = True
        self.retries = 0
        self.on_connected()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties=None):
        if self.connected and not self.closed:
            self.ctx.log("step '%s': lost MQTT broker %s:%d (%s); reconnecting"
                         % (self.id, self.host, self.port, reason_code))
        self.connected = False

    def on_connected(self):
        pass

    def close(self):
        self.closed = True
        for t in (self.poll_timer, self.retry_timer):
            if t is not None:
                t.cancel()
        self.poll_timer = self.retry_timer = None
        try:
            self.client.loop(timeout=0)
            self.client.disconnect()
        except Exception:
            pass

    def stats(self):
        s = self.base_stats()
        s["connected"] = self.connected
        s["reconnects"] = self.reconnects
        return s


class MqttOut(_Mqtt):
    """Publishes every value (or every `time-frame` ms, the values of the frame as one JSON
    array) to `topic` ({step} and {device} are filled in)."""
    TYPE = "mqtt_out"
    ARGS = ["broker", "topic", "qos", "retain", "client-id", "username", "password-env", "tls",
            "time-frame", "offline-buffer", "discovery", "measures"]
    SINK = True
    what = "mqtt_out cannot encode"

    def setup(self, params, n_inputs):
        from sensormesh.device.steps.make import choice_param, int_param, str_param
        topic = str_param(self, "topic", None)
        self.qos = choice_param(self, "qos", 0, (0, 1, 2))
        self.retain = params.get("retain", False) is True
        self.tf = int_param(self, "time-frame", 0, 0)
        self.limit = int_param(self, "offline-buffer", DEFAULT_BUFFER, 0)
        self.pending = []          # JSON payloads waiting for the broker, oldest first
        self.frame = []
        self.frame_timer = None
        self.published = 0
        self.discovery = params.get("discovery", False)
        self.measures = params.get("measures") or {}
        self._client(params)
        self.topic = topic.replace("{step}", self.id).replace("{device}", self.device_name)
        why = topic_problem(self.topic, False)
        if why:
            self.client.disconnect()
            raise self.bad("topic %r %s" % (self.topic, why))
        self._handshake(lambda: self.connected)
        if self.tf:
            self.frame_timer = self.ctx.call_later(self.tf, self._on_frame)

    def on_connected(self):
        if self.discovery:
            self._announce()
        self._drain()

    def _announce(self):
        # Home Assistant MQTT discovery: one sensor entity per sink, with its unit
        # Home Assistant takes [A-Za-z0-9_-] in a discovery topic's object id and ignores a
        # config elsewhere; step ids and device names may also hold '.'
        uid = _object_id("sensormesh_%s_%s" % (self.device_name, self.id))
        prefix = "homeassistant" if self.discovery is True else str(self.discovery)
        cfg = {"name": self.id, "unique_id": uid, "state_topic": self.topic,
               "device": {"identifiers": ["sensormesh_" + self.device_name], "name": self.device_name,
                          "manufacturer": "sensormesh"}}
        if self.measures.get("unit"):
            cfg["unit_of_measurement"] = self.measures["unit"]
        q = self.measures.get("quantity")
        if q in HA_DEVICE_CLASSES:
            cfg["device_class"] = q
            cfg["state_class"] = "measurement"
        if self.tf:
            cfg["value_template"] = "{{ value_json[-1] }}"
        self.client.publish("%s/sensor/%s/config" % (prefix, uid), json.dumps(cfg), qos=1, retain=True)

    def put(self, value):
        self.n_in += 1
        if self.tf:
            self.frame.append(value)
            return
        try:
            payload = json.dumps(value, allow_nan=False)
        except Exception:
            self.failed(value)
            return
        self._send(payload, 1)

    def _on_frame(self):
        self.frame_timer = None
        if self.closed:
            return
        self._ship_frame()
        self.frame_timer = self.ctx.call_later(self.tf, self._on_frame)

    def _ship_frame(self):
        if not self.frame:
            return
        frame, self.frame = self.frame, []
        try:
            payload = json.dumps(frame, allow_nan=False)
        except Exception:
            # a value JSON cannot carry (NaN, infinity, an object) costs itself, counted, not
            # the frame it is in
            good = []
            for v in frame:
                try:
                    json.dumps(v, allow_nan=False)
                except Exception:
                    self.failed(v)
                    continue
                good.append(v)
            if not good:
                return
            frame = good
            payload = json.dumps(frame, allow_nan=False)
        self._send(payload, len(frame))

    def _send(self, payload, n):
        if self.connected and not self.pending:
            info = self.client.publish(self.topic, payload, qos=self.qos, retain=self.retain)
            if info.rc == 0:
                self.published += n
                self.n_out += n
                return
            self.connected = False
        self.pending.append((payload, n))
        held = 0
        for _, k in self.pending:
            held += k
        while held > self.limit and self.pending:
            _, lost = self.pending.pop(0)
            held -= lost
            self.dropped += lost
            self.ctx.log("step '%s': MQTT broker %s:%d away and the buffer (%d values) is full: "
                         "dropped %d (%d so far)" % (self.id, self.host, self.port, self.limit, lost, self.dropped))

    def _drain(self):
        while self.pending and self.connected:
            payload, n = self.pending[0]
            info = self.client.publish(self.topic, payload, qos=self.qos, retain=self.retain)
            if info.rc != 0:
                self.connected = False
                return
            self.pending.pop(0)
            self.published += n
            self.n_out += n

    def flush(self):
        if self.tf:
            self._ship_frame()
        self._drain()
        try:
            self.client.loop(timeout=0)
        except Exception:
            pass

    def close(self):
        if self.frame_timer is not None:
            self.frame_timer.cancel()
            self.frame_timer = None
        n = 0
        for _, k in self.pending:
            n += k
        n += len(self.frame)
        if n:
            self.dropped += n
            self.ctx.log("step '%s': stopped with %d values the MQTT broker did not take" % (self.id, n))
            self.pending = []
            self.frame = []
        _Mqtt.close(self)

    def stats(self):
        s = _Mqtt.stats(self)
        s["published"] = self.published
        held = len(self.frame)
        for _, k in self.pending:
            held += k
        s["buffered"] = held
        return s


# Home Assistant sensor device classes that sensormesh's quantities map to one to one.
HA_DEVICE_CLASSES = ("temperature", "humidity", "carbon_dioxide", "distance", "pressure",
                     "illuminance", "voltage", "current", "power", "energy")


class MqttIn(_Mqtt):
    """Subscribes to a topic filter ({step} and {device} are filled in) and feeds what arrives
    into the pipeline: JSON payloads as their value, anything else as text (plain numbers
    become numbers)."""
    TYPE = "mqtt_in"
    ARGS = ["broker", "topic", "qos", "client-id", "username", "password-env", "tls"]
    INPUTS = (0, 0)

    def setup(self, params, n_inputs):
        from sensormesh.device.steps.make import choice_param, str_param
        topic = str_param(self, "topic", None)
        why = topic_problem(topic, True)
        if why:
            raise self.bad("topic %r %s" % (topic, why))
        self.qos = choice_param(self, "qos", 0, (0, 1, 2))
        self._client(params)
        self.filter = topic.replace("{step}", self.id).replace("{device}", self.device_name)
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.subscribed = False
        self._handshake(lambda: self.subscribed)

    def on_connected(self):
        self.client.subscribe(self.filter, qos=self.qos)   # again after every reconnect

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties=None):
        for rc in reason_codes:
            if getattr(rc, "is_failure", False):
                self.refused = "subscription to %r refused: %s" % (self.filter, rc)
                return
        self.subscribed = True

    def _on_message(self, client, userdata, msg):
        self.n_in += 1
        raw = msg.payload
        try:
            value = json.loads(raw, parse_constant=_not_finite, parse_float=_finite_float)
        except NotFinite:
            # NaN and infinity are not JSON (Python's json reads them all the same): no pipe,
            # callback or file could carry one, so it is counted here, where it came in
            self.failed(raw, "mqtt_in payload holds NaN or infinity, which JSON cannot carry")
            return
        except ValueError:
            try:
                value = raw.decode()
            except Exception:
                self.failed(raw, "mqtt_in payload is not UTF-8")
                return
        self.n_out += 1
        self.emit(value)

    def put(self, value):
        raise StepError("step '%s': mqtt_in has no inputs" % self.id)


def _object_id(text):
    out = []
    for ch in text:
        out.append(ch if ch.isalnum() and ch.isascii() or ch in "_-" else "_")
    return "".join(out)


class NotFinite(Exception):
    pass


def _not_finite(word):
    raise NotFinite(word)


def _finite_float(text):
    f = float(text)
    if f - f != 0:                   # inf (1e999) or nan
        raise NotFinite(text)
    return f


CLASSES = {"mqtt_out": MqttOut, "mqtt_in": MqttIn}
