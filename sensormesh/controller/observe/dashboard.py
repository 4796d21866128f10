"""The live web dashboard of `sensormesh up FILE --dashboard [HOST:]PORT`.

An aiohttp server in a thread of its own (the controller's loop stays single-threaded): `/` the
page (static/), `/graph.svg` the placement (graph.py), `/api/view` the store's view with recent
history as JSON, `/events` the same view as Server-Sent Events whenever the store changed (at
most SSE_RATE per second), `/plotly.min.js` the chart library from the installed `plotly`
package, `/metrics` the Prometheus text format (prom.py). Loopback by default.
"""
import asyncio
import json
import os
import threading
import time

from aiohttp import web

STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
SSE_RATE = 2.0          # view updates per second at most, per client
SSE_KEEPALIVE = 15.0    # seconds between comments on an idle stream (keeps proxies from closing it)
HISTORY_S = 300.0       # seconds of history the charts get
LATENCY_POINTS = 3000   # latency samples the chart gets at most
DEFAULT_HOST = "127.0.0.1"


class DashboardError(Exception):
    pass


def parse_listen(text):
    """"[HOST:]PORT" -> (host, port); HOST defaults to loopback."""
    host, _, port = str(text).rpartition(":")
    host = host.strip("[]") or DEFAULT_HOST
    try:
        port = int(port)
    except ValueError:
        raise DashboardError("--dashboard %r: give [HOST:]PORT, e.g. 8050 or 127.0.0.1:8050" % text)
    if not 0 <= port <= 65535:
        raise DashboardError("--dashboard %r: port %d is out of range 0..65535" % (text, port))
    return host, port


def plotly_js():
    """Path of plotly.min.js shipped by the `plotly` Python package."""
    try:
        import plotly
    except ImportError:
        return None
    p = os.path.join(os.path.dirname(plotly.__file__), "package_data", "plotly.min.js")
    return p if os.path.exists(p) else None


def full_view(store, since=None):
    """store.view() plus what the charts draw: load, pipe rates and latency over time."""
    v = store.view()
    now = time.time()
    since = now - HISTORY_S if since is None else since
    hist = {"load": {}, "pipes": {}, "latency": {}}
    for name, d in v["devices"].items():
        pts = store.history("device", name, name, "busy", since) or store.history("device", name, name, "cpu", since)
        hist["load"][name] = pts
    for p in v["pipes"]:
        if p["dir"] != "in":
            hist["pipes"][p["edge"]] = store.history("pipe", p["device"], p["edge"], "values_per_s", since)
    for t, sink, lat, bound in store.latency_history(since)[-LATENCY_POINTS:]:
        hist["latency"].setdefault(sink, []).append((t, lat, bound))
    v["history"] = hist
    v["now"] = now
    return v


class Dashboard:
    """Serve the store on host:port until stop(). start() returns the URL (port 0: any free)."""

    def __init__(self, store, host=DEFAULT_HOST, port=0, graph=None):
        self.store = store
        self.host, self.port = host, port
        self.graph = graph            # () -> SVG text of the placement (None: graph.render_svg)
        self._svg = (None, None)      # (placement info it was drawn for, SVG)
        self.loop = None
        self.thread = None
        self.runner = None
        self.url = None
        self._ready = threading.Event()
        self._error = None
        self._stopping = None

    # -- handlers --------------------------------------------------------------------------------

    async def index(self, request):
        return web.FileResponse(os.path.join(STATIC, "index.html"))

    async def plotly(self, request):
        p = plotly_js()
        if p is None:
            return web.Response(status=404, text="the plotly package is not installed: pip install plotly")
        return web.FileResponse(p, headers={"Cache-Control": "max-age=3600"})

    async def svg(self, request):
        info = self.store.view()["info"].get("placement") or {}
        key = json.dumps(info, sort_keys=True) + json.dumps(sorted(self.store.steps.items()))
        if self._svg[0] != key:
            from sensormesh.controller.observe.graph import render_svg
            device_of = info.get("device_of") or dict(self.store.steps)
            svg = await asyncio.get_running_loop().run_in_executor(None, render_svg, info, device_of)
            self._svg = (key, svg)
        return web.Response(text=self._svg[1], content_type="image/svg+xml")

    async def api_view(self, request):
        return web.json_response(full_view(self.store), dumps=_dumps)

    async def events(self, request):
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                           "X-Accel-Buffering": "no"})
        await resp.prepare(request)
        loop = asyncio.get_running_loop()
        sent = -1
        last = time.monotonic()
        try:
            while not self._stopping.is_set():
                version = await loop.run_in_executor(None, self.store.wait, sent, 1.0)
                if self._stopping.is_set():
                    break
                if version != sent:
                    sent = version
                    await resp.write(b"data: " + _dumps(full_view(self.store)).encode() + b"\n\n")
                    last = time.monotonic()
                    try:
                        await asyncio.wait_for(self._stopping.wait(), 1.0 / SSE_RATE)
                    except asyncio.TimeoutError:
                        pass
                elif time.monotonic() - last > SSE_KEEPALIVE:
                    await resp.write(b": keep-alive\n\n")
                    last = time.monotonic()
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        return resp

    async def metrics(self, request):
        from sensormesh.controller.observe.prom import exposition
        body, ctype = exposition(self.store, request.headers.get("Accept", ""))
        return web.Response(body=body, headers={"Content-Type": ctype})

    def app(self):
        app = web.Application()
        app.router.add_get("/", self.index)
        app.router.add_get("/plotly.min.js", self.plotly)
        app.router.add_get("/graph.svg", self.svg)
        app.router.add_get("/api/view", self.api_view)
        app.router.add_get("/events", self.events)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_static("/static/", STATIC)
        return app

    # -- life ------------------------------------------------------------------------------------

    def start(self, timeout=10.0):
        self.thread = threading.Thread(target=self._run, name="dashboard", daemon=True)
        self.thread.start()
        if not self._ready.wait(timeout):
            raise DashboardError("the dashboard did not start within %gs" % timeout)
        if self._error is not None:
            raise DashboardError("cannot serve the dashboard on %s:%d: %s" % (self.host, self.port, self._error))
        return self.url

    def _run(self):
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self._stopping = asyncio.Event()
        try:
            self.runner = web.AppRunner(self.app(), handle_signals=False, access_log=None)
            self.loop.run_until_complete(self.runner.setup())
            site = web.TCPSite(self.runner, self.host, self.port)
            self.loop.run_until_complete(site.start())
            port = site._server.sockets[0].getsockname()[1]
            host = "[%s]" % self.host if ":" in self.host else self.host
            self.url = "http://%s:%d/" % (host, port)
        except (OSError, RuntimeError) as e:
            self._error = e
            self._ready.set()
            return
        self._ready.set()
        self.loop.run_until_complete(self._stopping.wait())
        self.loop.run_until_complete(self.runner.cleanup())
        self.loop.close()

    def stop(self, timeout=10.0):
        if self.loop is None or self._stopping is None or self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self._stopping.set)
        with self.store.lock:
            self.store.changed.notify_all()
        self.thread.join(timeout)


def _dumps(obj):
    """JSON for the page; NaN and infinities (which JSON.parse refuses) become null."""
    try:
        return json.dumps(obj, separators=(",", ":"), default=str, allow_nan=False)
    except ValueError:
        return json.dumps(_finite(obj), separators=(",", ":"), default=str, allow_nan=False)


def _finite(x):
    if isinstance(x, float):
        return x if x == x and abs(x) != float("inf") else None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x
