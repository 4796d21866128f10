# Simulated `machine` module of an ESP32 (see sensormesh/fakehw/__init__.py).
#
# Time. One simulated microsecond clock, `fake_clock`, and nothing happens by itself: a test
# moves the clock (fake_clock.advance(us), fake_clock.run_until(t)) and every scheduled event
# due by then runs in time order, with the clock set to the event's time. Pin level changes
# call IRQ handlers at once (like hard IRQs), so a handler that reads ticks_us() sees the
# simulated time of its edge. The drivers read the clock through ticks_us(), ticks_ms(),
# ticks_diff() and sleep_us() of this module: a real board's `machine` has none of these
# (drivers then take them from `time`), the simulated one owns the simulated clock. The tick
# counters wrap at 2**30 like the ESP32's.
#
# Pins. Pin(n) objects are handles on one shared state per GPIO number, so the test's Pin(4)
# and the driver's Pin(4) are the same wire. Scripting (names start with fake_):
#   Pin(n).fake_set(level)          drive the pin from outside now (fires IRQs)
#   Pin(n).fake_at(t_us, level)     ... at simulated time t_us (absolute)
#   Pin(n).fake_after(dt_us, level) ... dt_us from now
#   Pin(n).fake_analog(u16)         what an ADC on the pin reads (0..65535)
#   Pin(n).fake_touch(raw)          what a TouchPad on the pin reads
#   Pin(n).fake_writes()            [(t_us, level), ...] written by the code under test
#   Pin(n).fake_watch(fn)           fn(pin_state, level) after every level change (parts)
#   fake_i2c(bus_id).attach(addr, part)   put a part on an I2C bus (see fakeparts.MPU6050)
#   fake_reset(start_us=0, encoder=True)  forget all state; start the clock at start_us;
#                                         encoder=False hides machine.Encoder (old firmware)
TICKS_PERIOD = 1 << 30
TICKS_MAX = TICKS_PERIOD - 1
_TICKS_HALF = TICKS_PERIOD >> 1

ENODEV = 19
ETIMEDOUT = 110


class FakeClock:
    """Simulated microseconds since reset, with a queue of events to run at given times."""

    def __init__(self):
        self.now = 0
        self._events = []
        self._seq = 0

    def reset(self, start_us=0):
        self.now = start_us
        self._events = []
        self._seq = 0

    def at(self, t_us, fn, arg=None):
        """Run fn(arg) when the clock reaches t_us. Same-time events run in scheduling order."""
        if t_us < self.now:
            raise ValueError("cannot schedule in the past (%d < %d)" % (t_us, self.now))
        self._seq += 1
        ev = (t_us, self._seq, fn, arg)
        evs = self._events
        i = len(evs)
        while i > 0 and evs[i - 1][0] > t_us:
            i -= 1
        evs.insert(i, ev)
        return ev

    def after(self, dt_us, fn, arg=None):
        return self.at(self.now + dt_us, fn, arg)

    def pending(self):
        return len(self._events)

    def next_time(self):
        return self._events[0][0] if self._events else None

    def step(self):
        """Run the next event, moving the clock to its time. False when there is none."""
        if not self._events:
            return False
        t, _, fn, arg = self._events.pop(0)
        if t > self.now:
            self.now = t
        fn(arg)
        return True

    def run_until(self, t_us):
        while self._events and self._events[0][0] <= t_us:
            self.step()
        if t_us > self.now:
            self.now = t_us

    def advance(self, dt_us):
        self.run_until(self.now + dt_us)

    def run_all(self, limit=100000):
        n = 0
        while self._events and n < limit:
            self.step()
            n += 1
        return n


fake_clock = FakeClock()


# -- the tick clock the drivers use (time.ticks_* on a real board) -------------------------

def ticks_us():
    return fake_clock.now & TICKS_MAX


def ticks_ms():
    return (fake_clock.now // 1000) & TICKS_MAX


def ticks_add(t, delta):
    return (t + delta) & TICKS_MAX


def ticks_diff(a, b):
    return ((a - b + _TICKS_HALF) & TICKS_MAX) - _TICKS_HALF


def sleep_us(us):
    fake_clock.advance(us)


def sleep_ms(ms):
    fake_clock.advance(ms * 1000)


# -- pins ---------------------------------------------------------------------------------

# GPIOs of the ESP32-WROOM-32; 34..39 are input only.
_GPIOS = (0, 1, 2, 3, 4, 5, 12, 13, 14, 15, 16, 17, 18, 19, 21, 22, 23, 25, 26, 27,
          32, 33, 34, 35, 36, 37, 38, 39)
_INPUT_ONLY = (34, 35, 36, 37, 38, 39)
_ADC_PINS = (32, 33, 34, 35, 36, 37, 38, 39, 0, 2, 4, 12, 13, 14, 15, 25, 26, 27)


class PinState:
    """One GPIO: its level, configuration, IRQ handler and the parts watching it."""

    def __init__(self, gpio):
        self.id = gpio
        self.level = 0
        self.mode = None
        self.pull = None
        self.driven = False      # set from outside (fake_set): pulls no longer decide
        self.handler = None
        self.trigger = 0
        self.irq_pin = None
        self.analog = 0
        self.touch = 700
        self.watchers = []
        self.writes = []

    def set(self, level):
        level = 1 if level else 0
        if level == self.level:
            return
        self.level = level
        for w in self.watchers:
            w(self, level)
        h = self.handler
        if h is not None and self.trigger & (Pin.IRQ_RISING if level else Pin.IRQ_FALLING):
            h(self.irq_pin)

    def _scheduled(self, level):
        self.driven = True
        self.set(level)


_pins = {}


def _pin_state(gpio):
    s = _pins.get(gpio)
    if s is None:
        if gpio not in _GPIOS:
            raise ValueError("invalid pin")
        s = PinState(gpio)
        _pins[gpio] = s
    return s


def _gpio_of(p):
    if isinstance(p, Pin):
        return p._s.id
    return p


class Pin:
    IN = 1
    OUT = 3
    OPEN_DRAIN = 7
    PULL_DOWN = 1
    PULL_UP = 2
    IRQ_RISING = 1
    IRQ_FALLING = 2

    def __init__(self, id, mode=-1, pull=-1, value=None, **kwargs):
        self._s = _pin_state(_gpio_of(id))
        self.init(mode, pull, value)

    def init(self, mode=-1, pull=-1, value=None, **kwargs):
        s = self._s
        if mode != -1:
            if mode in (Pin.OUT, Pin.OPEN_DRAIN) and s.id in _INPUT_ONLY:
                raise ValueError("pin can only be input")
            s.mode = mode
        if pull != -1:
            s.pull = pull
            if not s.driven and s.mode == Pin.IN:
                s.set(1 if pull == Pin.PULL_UP else 0)
        if value is not None:
            self.value(value)

    def value(self, v=None):
        s = self._s
        if v is None:
            return s.level
        s.writes.append((fake_clock.now, 1 if v else 0))
        s.set(v)

    def __call__(self, v=None):
        return self.value(v)

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)

    def irq(self, handler=None, trigger=3, priority=1, wake=None, hard=False):
        s = self._s
        s.handler = handler
        s.trigger = trigger if handler is not None else 0
        s.irq_pin = self
        return _Irq(s)

    def __repr__(self):
        return "Pin(%d)" % self._s.id

    # scripting
    def fake_set(self, level):
        self._s.driven = True
        self._s.set(level)

    def fake_at(self, t_us, level):
        fake_clock.at(t_us, self._s._scheduled, level)

    def fake_after(self, dt_us, level):
        fake_clock.after(dt_us, self._s._scheduled, level)

    def fake_analog(self, u16):
        self._s.analog = u16

    def fake_touch(self, raw):
        self._s.touch = raw

    def fake_writes(self):
        return self._s.writes

    def fake_watch(self, fn):
        self._s.watchers.append(fn)

    def fake_state(self):
        return self._s


class _Irq:
    def __init__(self, state):
        self._s = state

    def trigger(self):
        return self._s.trigger

    def flags(self):
        return 0


# -- ADC, TouchPad --------------------------------------------------------------------------

class ADC:
    ATTN_0DB = 0
    ATTN_2_5DB = 1
    ATTN_6DB = 2
    ATTN_11DB = 3
    WIDTH_9BIT = 0
    WIDTH_10BIT = 1
    WIDTH_11BIT = 2
    WIDTH_12BIT = 3
    # full-scale input in microvolts per attenuation (approximate, uncalibrated)
    _FULL_UV = (950000, 1250000, 1750000, 3100000)

    def __init__(self, pin, atten=None):
        gpio = _gpio_of(pin)
        if gpio not in _ADC_PINS:
            raise ValueError("invalid pin")
        self._s = _pin_state(gpio)
        self._atten = ADC.ATTN_0DB if atten is None else atten

    def atten(self, a):
        self._atten = a

    def width(self, w):
        pass

    def read_u16(self):
        return self._s.analog

    def read(self):
        return self._s.analog >> 4

    def read_uv(self):
        return self._s.analog * ADC._FULL_UV[self._atten] // 65535


# -- I2C ------------------------------------------------------------------------------------

class I2CBus:
    """The wires of one bus: the parts on it, by 7-bit address."""

    def __init__(self, name):
        self.name = name
        self.parts = {}
        self.transfers = 0

    def attach(self, addr, part):
        self.parts[addr] = part
        return part

    def part(self, addr):
        p = self.parts.get(addr)
        if p is None:
            raise OSError(ENODEV)
        self.transfers += 1
        return p


_buses = {}


def fake_i2c(bus_id=0):
    b = _buses.get(bus_id)
    if b is None:
        b = I2CBus(bus_id)
        _buses[bus_id] = b
    return b


class I2C:
    def __init__(self, id=0, scl=None, sda=None, freq=400000, timeout=50000):
        self._bus = fake_i2c(id)
        self.freq = freq

    def scan(self):
        return sorted(self._bus.parts)

    def readfrom_mem(self, addr, memaddr, nbytes, addrsize=8):
        return bytes(self._bus.part(addr).read(memaddr, nbytes))

    def readfrom_mem_into(self, addr, memaddr, buf, addrsize=8):
        data = self._bus.part(addr).read(memaddr, len(buf))
        for i in range(len(buf)):
            buf[i] = data[i]

    def writeto_mem(self, addr, memaddr, buf, addrsize=8):
        self._bus.part(addr).write(memaddr, bytes(buf))

    def readfrom(self, addr, nbytes, stop=True):
        return bytes(self._bus.part(addr).read(None, nbytes))

    def writeto(self, addr, buf, stop=True):
        buf = bytes(buf)
        self._bus.part(addr).write(buf[0], buf[1:])
        return len(buf)


class SoftI2C(I2C):
    def __init__(self, scl, sda, freq=400000, timeout=50000):
        I2C.__init__(self, "soft:%d:%d" % (_gpio_of(scl), _gpio_of(sda)), freq=freq)


# -- the rest of machine ------------------------------------------------------------------

_resets = []


def fake_on_reset(fn):
    """Other fake modules (dht, esp32, network) register their own reset here."""
    _resets.append(fn)


def fake_reset(start_us=0, encoder=True):
    global _encoder
    _pins.clear()
    _buses.clear()
    fake_clock.reset(start_us)
    _encoder = encoder
    for fn in _resets:
        fn()


# The rest of the simulated machine (TouchPad, Signal, time_pulse_us, Encoder, reset, freq...)
# is in machine_extra.py, loaded on first use: a test or benchmark that needs only pins, ADC
# and I2C does not pay the heap for the rest. Module __getattr__ (PEP 562) works on CPython and
# on the MicroPython unix port alike.
_EXTRA = ("TouchPad", "Signal", "time_pulse_us", "Encoder", "resets", "reset", "soft_reset",
          "unique_id", "freq", "idle", "lightsleep", "disable_irq", "enable_irq")
_encoder = True     # False: this firmware has no machine.Encoder (fake_reset(encoder=False))


def __getattr__(name):
    if name in _EXTRA and (_encoder or name != "Encoder"):
        import machine_extra
        return getattr(machine_extra, name)
    raise AttributeError(name)


