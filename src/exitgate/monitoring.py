"""The control plane's monitoring port (Istio's istiod 15014 and each pod's merged 15020 in one):
Prometheus text for the control plane's own metrics, for each proxy, and for all of them merged.

- ``/metrics``: the control plane's metrics with istiod's names where the meaning is the same
  (``pilot_xds``, ``pilot_xds_pushes``, ``pilot_total_xds_rejects``, ``pilot_proxy_convergence_time``,
  ``pilot_services``, ``citadel_server_*``); like Istio's, counters carry no ``_total`` suffix.
- ``/proxies/NAME.NAMESPACE/stats/prometheus``: one proxy's Envoy stats, with Istio's metric
  names (Envoy writes ``envoy_istio_requests_total``; Istio's stats filter registers its own
  namespace so that the same stat reads ``istio_requests_total``).
- ``/stats/prometheus``: every proxy's stats and the control plane's, merged into one family per
  metric (a family may appear only once in Prometheus text), each proxy's samples labelled
  ``pod`` and ``namespace`` as Prometheus' Kubernetes discovery labels a pod's.
- ``/debug/syncz``: every proxy's xDS state as JSON, what ``exitgate proxy-status`` prints.
- ``/`` and ``/api/dashboard``: the web view (``web/index.html``) and its data (``dashboard.py``).

Envoy's stats are read from its admin port when scraped; nothing here is on the request path.
"""

from __future__ import annotations

import json
import threading
import time
from contextlib import contextmanager
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

# Envoy's prefix for the stats Istio names without it (``envoy.telemetry`` scopes them "istio").
ENVOY_ISTIO_PREFIX = "envoy_istio_"
ENVOY_EXITGATE_PREFIX = "envoy_exitgate_"
# Istio's buckets for pilot_proxy_convergence_time (pilot/pkg/xds/monitoring.go).
CONVERGENCE_BUCKETS = (0.1, 0.5, 1, 3, 5, 10, 20, 30)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


# proxy-status's columns: Istio's rule (the types seen, with CDS, LDS, EDS, RDS and ECDS always
# there), in the order of their type URLs.
STATUS_TYPES = ("CDS", "ECDS", "EDS", "LDS", "RDS", "SDS")


def type_status(entry: dict[str, Any] | None) -> str:
    """Istio's sync state of one xDS type for one proxy."""
    if entry is None or entry.get("empty"):
        return "IGNORED"
    if entry.get("sent") is None:
        return "NOT SENT"
    if entry.get("nack") and entry.get("acked") != entry.get("version"):
        return "ERROR"
    return "SYNCED" if entry.get("acked") == entry.get("version") else "STALE"



def istio_name(name: str) -> str:
    """Istio's and exitgate's own metrics without the prefix Envoy gives them."""
    for ours in (ENVOY_ISTIO_PREFIX, ENVOY_EXITGATE_PREFIX):
        if name.startswith(ours):
            return name[len("envoy_"):]
    return name


def proxy_families(text: str, labels: Mapping[str, str]) -> list[Metric]:
    """One proxy's ``/stats/prometheus`` as metric families, Istio's names, ``labels`` added."""
    out = []
    for family in text_string_to_metric_families(text):
        renamed = Metric(istio_name(family.name), family.documentation, family.type)
        renamed.samples = [Sample(istio_name(s.name), {**s.labels, **labels}, s.value, s.timestamp, s.exemplar)
                           for s in family.samples]
        out.append(renamed)
    return out


def merge(families: Iterable[Metric]) -> list[Metric]:
    """Families of the same name (one per proxy) as one, in first-seen order."""
    merged: dict[str, Metric] = {}
    for f in families:
        into = merged.get(f.name)
        if into is None:
            into = merged[f.name] = Metric(f.name, f.documentation, f.type)
        into.samples.extend(f.samples)
    return list(merged.values())


SeriesKey = tuple[str, tuple[tuple[str, str], ...]]


class Accumulator:
    """One proxy's counters and histograms as running totals that survive Envoy dropping them.

    Envoy's stats logger keeps a series in the scope of the listener that logged it; when a
    configuration change replaces the listener, a series the new listener has not logged yet is
    dropped with the old one (and a restarted Envoy starts from zero). Istio's stats filter
    keeps them for the proxy's life. Read often enough (before every push and every couple of
    seconds), the totals are carried here: a series that goes down or away adds its last value
    to a base, and is served as base + what Envoy has now."""

    def __init__(self) -> None:
        self._last: dict[SeriesKey, float] = {}
        self._base: dict[SeriesKey, float] = {}
        # Families of the series Envoy no longer has: (name, type, documentation).
        self._family_of: dict[SeriesKey, tuple[str, str, str]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _key(s: Sample) -> SeriesKey:
        return (s.name, tuple(sorted(s.labels.items())))

    def update(self, families: Sequence[Metric]) -> list[Metric]:
        """Take a fresh read; return it with the carried totals added (and the series Envoy
        dropped, at their totals)."""
        with self._lock:
            seen: set[SeriesKey] = set()
            out: list[Metric] = []
            for f in families:
                cumulative = f.type in ("counter", "histogram", "summary")
                copy = Metric(f.name, f.documentation, f.type)
                for s in f.samples:
                    if not cumulative:
                        copy.samples.append(s)
                        continue
                    k = self._key(s)
                    seen.add(k)
                    previous = self._last.get(k)
                    if previous is not None and s.value < previous:
                        self._base[k] = self._base.get(k, 0.0) + previous
                    self._last[k] = s.value
                    self._family_of[k] = (f.name, f.type, f.documentation)
                    copy.samples.append(s._replace(value=s.value + self._base.get(k, 0.0)))
                out.append(copy)
            for k in [k for k in self._last if k not in seen]:
                self._base[k] = self._base.get(k, 0.0) + self._last.pop(k)
            by_name = {f.name: f for f in out}
            for k, total in self._base.items():
                if k in seen:
                    continue
                name, typ, doc = self._family_of[k]
                family = by_name.get(name)
                if family is None:
                    family = by_name[name] = Metric(name, doc, typ)
                    out.append(family)
                family.samples.append(Sample(k[0], dict(k[1]), total))
            return out


class _Families:
    """A collector over families built elsewhere (so ``generate_latest`` renders them)."""

    def __init__(self, families: Sequence[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        yield from self._families


def render(families: Sequence[Metric]) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families))
    return generate_latest(registry)


@dataclass(frozen=True)
class ScrapeTarget:
    """A proxy whose Envoy stats the merged endpoint serves."""

    name: str
    namespace: str
    fetch: Callable[[], str]  # its Envoy's /stats/prometheus

    @property
    def key(self) -> str:
        return f"{self.name}.{self.namespace}"


def _counter(name: str, doc: str, values: Mapping[str, float] | float, label: str = "type") -> Metric:
    """``values``: by the value of ``label``, or one unlabelled value."""
    # Istio's exporter writes counters without the _total suffix; prometheus_client would add
    # one to a counter family, so these are exposed untyped under Istio's exact names.
    m = Metric(name, doc, "unknown")
    if isinstance(values, Mapping):
        for key, value in sorted(values.items()):
            m.add_sample(name, {label: key}, value)
    else:
        m.add_sample(name, {}, values)
    return m


def _gauge(name: str, doc: str, value: float) -> Metric:
    m = Metric(name, doc, "gauge")
    m.add_sample(name, {}, value)
    return m


class ControlPlaneMetrics:
    """The control plane's own metrics. ``read`` gives the current values at each scrape (xDS
    push and reject counts, connected proxies, services, certificates); the convergence
    histogram is observed as proxies catch up with a configuration."""

    def __init__(self, read: Callable[[], Mapping[str, Any]]) -> None:
        self._read = read
        self.registry = CollectorRegistry(auto_describe=False)
        self.convergence = Histogram("pilot_proxy_convergence_time",
                                     "Delay in seconds between config change and a proxy receiving all required configuration.",
                                     buckets=CONVERGENCE_BUCKETS, registry=self.registry)
        self.registry.register(self)

    def collect(self) -> Iterator[Metric]:
        v = self._read()
        yield _gauge("pilot_xds", "Number of endpoints connected to this pilot using XDS.", v.get("connected", 0))
        yield _gauge("pilot_services", "Total services known to pilot.", v.get("services", 0))
        yield _counter("pilot_xds_pushes", "Pilot build and send errors for lds, rds, cds and eds.", v.get("pushes", {}))
        # Zeros for what has not happened yet: a dashboard reads 0, not "no data".
        yield _counter("pilot_xds_push_errors", "Number of errors (timeouts) pushing to sidecars.",
                       {"unrecoverable": 0, **v.get("push_errors", {})})
        yield _counter("pilot_total_xds_rejects", "Total number of XDS responses from pilot rejected by proxy.",
                       {**dict.fromkeys(("cds", "lds", "rds", "sds"), 0), **v.get("rejects", {})})
        yield _counter("citadel_server_success_cert_issuance_count", "The number of certificates issuances that have succeeded.",
                       v.get("issued", 0))
        if v.get("root_expiry") is not None:
            yield _gauge("citadel_server_root_cert_expiry_timestamp",
                         "The unix timestamp, in seconds, when Citadel root cert will expire.", v["root_expiry"])
            yield _gauge("citadel_server_root_cert_expiry_seconds", "The time remaining, in seconds, before the root cert will expire.",
                         v["root_expiry"] - v.get("now", 0))

    def families(self) -> list[Metric]:
        return list(self.registry.collect())


def web_page() -> bytes:
    """The web view (``web/index.html``, shipped with the package)."""
    return (resources.files("exitgate") / "web" / "index.html").read_bytes()


class MonitoringServer:
    """The HTTP side: a small threaded server on loopback, started and stopped with the
    control plane."""

    def __init__(self, metrics: ControlPlaneMetrics, targets: Callable[[], Sequence[ScrapeTarget]],
                 syncz: Callable[[], list[dict[str, Any]]], dashboard: Callable[[], Mapping[str, Any]] | None = None,
                 read_every_s: float = 2.0, converging: Callable[[], bool] | None = None,
                 converge_wait_s: float = 3.0) -> None:
        """``converging``: whether proxies have yet to acknowledge the last push; the periodic
        reads wait for that too (at most ``converge_wait_s``)."""
        self.metrics = metrics
        self.converging = converging
        self.converge_wait_s = converge_wait_s
        self.dashboard = dashboard
        self.targets = targets
        self.syncz = syncz
        self.read_every_s = read_every_s
        self._totals: dict[str, Accumulator] = {}
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._closely_until = 0.0
        # Cleared while the control plane pushes (``quiet``).
        self._not_pushing = threading.Event()
        self._not_pushing.set()

    def read(self, t: ScrapeTarget) -> list[Metric] | None:
        """The proxy's stats now, Istio's names, with the totals Envoy dropped carried over."""
        try:
            text = t.fetch()
        except OSError:
            return None  # a proxy (re)starting: its stats are back at the next read
        return self._totals.setdefault(t.key, Accumulator()).update(proxy_families(text, {}))

    def read_all(self, then_closely_s: float = 0.0, keys: Collection[str] | None = None) -> None:
        """Called before a push that replaces a proxy's listeners too (``keys``: those proxies
        alone): what the listeners about to be replaced counted; and, for ``then_closely_s``
        after, every quarter second, while they drain (requests on their open connections still
        count there until Envoy closes them)."""
        for t in self.targets():
            if keys is None or t.key in keys:
                self.read(t)
        if then_closely_s:
            self._closely_until = max(self._closely_until, time.monotonic() + then_closely_s)
            self._wake.set()

    def proxy_text(self, key: str) -> bytes | None:
        for t in self.targets():
            if key in (t.key, t.name):
                return render(self.read(t) or [])
        return None

    def merged_text(self) -> bytes:
        families: list[Metric] = list(self.metrics.families())
        for t in self.targets():
            for f in self.read(t) or []:
                labelled = Metric(f.name, f.documentation, f.type)
                labelled.samples = [s._replace(labels={**s.labels, "pod": t.name, "namespace": t.namespace})
                                    for s in f.samples]
                families.append(labelled)
        return render(merge(families))

    @contextmanager
    def quiet(self) -> Iterator[None]:
        """The periodic reads wait while the control plane pushes: each takes Envoy's main
        thread, which applies the push, and competes for this process's interpreter (0.1-0.4 s
        of one more service at 10,000). What the push reads itself is not held."""
        self._not_pushing.clear()
        try:
            yield
        finally:
            self._not_pushing.set()

    def _reader(self) -> None:
        while not self._stop.is_set():
            closely = time.monotonic() < self._closely_until
            self._wake.wait(0.25 if closely else self.read_every_s)
            self._wake.clear()
            self._not_pushing.wait()
            self._await_convergence()
            if not self._stop.is_set():
                self.read_all()

    def _await_convergence(self) -> None:
        # A push is not over when it is sent: Envoy applies it on the main thread that also
        # answers /stats (a route table of 10,000 virtual hosts: 0.3 s, which a read delayed).
        deadline = time.monotonic() + self.converge_wait_s
        while (self.converging is not None and self.converging() and time.monotonic() < deadline
               and not self._stop.is_set()):
            self._stop.wait(0.05)

    def start(self, host: str, port: int) -> int:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                path = self.path.split("?", 1)[0].rstrip("/")
                body: bytes | None
                ctype = CONTENT_TYPE
                if path == "/metrics":
                    body = render(server.metrics.families())
                elif path == "/stats/prometheus":
                    body = server.merged_text()
                elif path.startswith("/proxies/") and path.endswith("/stats/prometheus"):
                    body = server.proxy_text(path[len("/proxies/"):-len("/stats/prometheus")])
                elif path == "/debug/syncz":
                    body, ctype = json.dumps(server.syncz(), indent=2).encode(), "application/json"
                elif path in ("", "/index.html") and server.dashboard is not None:
                    body, ctype = web_page(), "text/html; charset=utf-8"
                elif path == "/api/dashboard" and server.dashboard is not None:
                    body, ctype = json.dumps(server.dashboard(), indent=2).encode(), "application/json"
                else:
                    body = None
                if body is None:
                    self.send_error(404, "not found: try /, /metrics, /stats/prometheus, "
                                         "/proxies/NAME.NAMESPACE/stats/prometheus, /debug/syncz, /api/dashboard")
                    return
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
                pass  # scrapes every few seconds would flood the control plane's output

        self._httpd = ThreadingHTTPServer((host, port), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="monitoring", daemon=True)
        self._thread.start()
        threading.Thread(target=self._reader, name="monitoring-reader", daemon=True).start()
        return int(self._httpd.server_address[1])

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._not_pushing.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
