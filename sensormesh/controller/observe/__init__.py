"""Watching a running pipeline: the time-series store the metrics poller feeds (store.py, with its
SQLite/CSV files in files.py), the terminal view (top.py), the web dashboard (dashboard.py,
graph.py, static/) and the Prometheus endpoint (prom.py). CPython only; see docs/observability.md."""
