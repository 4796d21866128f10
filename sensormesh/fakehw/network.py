# Simulated `network` module (see sensormesh/fakehw/__init__.py): enough of WLAN for the
# board's boot.py/main.py to be run in tests. fake_wlan.connect_after = polls of isconnected()
# before it reports a connection (None: never); fake_wlan.ssid/password record the request.
import machine

STA_IF = 0
AP_IF = 1
STAT_IDLE = 1000
STAT_CONNECTING = 1001
STAT_GOT_IP = 1010


class _Radio:
    def __init__(self):
        self.reset()

    def reset(self):
        self.active = False
        self.ssid = None
        self.password = None
        self.connect_after = 0
        self.polls = 0
        self.connected = False
        self.hostname = None
        self.ip = "192.168.4.23"


fake_wlan = _Radio()
machine.fake_on_reset(fake_wlan.reset)


class WLAN:
    IF_STA = STA_IF
    IF_AP = AP_IF

    def __init__(self, interface=STA_IF):
        self._r = fake_wlan

    def active(self, on=None):
        if on is None:
            return self._r.active
        self._r.active = bool(on)

    def connect(self, ssid=None, key=None, **kwargs):
        if not self._r.active:
            raise OSError("Wifi Not Started")
        self._r.ssid = ssid
        self._r.password = key
        self._r.polls = 0

    def disconnect(self):
        self._r.connected = False

    def isconnected(self):
        r = self._r
        if r.ssid is None or r.connect_after is None:
            return False
        r.polls += 1
        if r.polls > r.connect_after:
            r.connected = True
        return r.connected

    def status(self, param=None):
        return STAT_GOT_IP if self._r.connected else STAT_CONNECTING

    def ifconfig(self, cfg=None):
        return (self._r.ip, "255.255.255.0", "192.168.4.1", "192.168.4.1")

    def config(self, *args, **kwargs):
        if "hostname" in kwargs:
            self._r.hostname = kwargs["hostname"]
        if args and args[0] == "mac":
            return machine.unique_id()
        return None


def hostname(name=None):
    if name is None:
        return fake_wlan.hostname or "esp32"
    fake_wlan.hostname = name
