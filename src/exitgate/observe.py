"""The control plane's observability, kept apart from its push loop: the monitoring port
(``monitoring.py``) and its metrics' values, the xDS sync state (``/debug/syncz``,
``proxy-status``), the convergence histogram, the record of configuration changes, and the web
view's document (``dashboard.py``). A mixin of ``ControlPlane``: it reads the control plane's
state; the control plane calls it at the points of a push it observes."""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from datetime import datetime, timezone
from functools import partial
from typing import TYPE_CHECKING

from exitgate.store import Snapshot as StoreSnapshot
from exitgate.ca.authority import MeshCA
from exitgate.ca.certs import cert_info
from exitgate.ca.rotation import WorkloadCertManager
from exitgate.dashboard import CertificateView, view as dashboard_view
from exitgate.envoy.admin import admin_call
from exitgate.mesh import MeshConfig
from exitgate.monitoring import ControlPlaneMetrics, MonitoringServer, ScrapeTarget
from exitgate.translate.snapshot import Snapshot
from exitgate.xds.cache import WILDCARD_TYPES, SnapshotCache, short_type_name
from exitgate.xds.server import AdsServer

if TYPE_CHECKING:
    from exitgate.controlplane import PlannedProxy
    from exitgate.envoy.supervisor import Supervisor


class Observability:
    # The control plane's, read here.
    mesh: MeshConfig
    proxies: list[PlannedProxy]
    ads: AdsServer | None
    supervisor: Supervisor | None
    ca: MeshCA | None
    certs: WorkloadCertManager | None
    cache: SnapshotCache
    applied_version: int
    emit: Callable[[str], None]
    _last_snap: Snapshot | None

    def _init_observability(self) -> None:
        self.monitoring: MonitoringServer | None = None
        self.monitoring_port = 0
        # Proxies sent a configuration they have not acknowledged yet, since when (monotonic).
        self._converging: dict[str, float] = {}
        # The recent configuration versions and what each changed (the web view), newest first.
        self.changes: collections.deque[dict[str, object]] = collections.deque(maxlen=20)
        self._last_specs: dict[tuple[str, str, str], object] = {}
        # Pushes withheld or failed (pilot_xds_push_errors).
        self.push_errors: collections.Counter[str] = collections.Counter()

    def _proxy_in_sync(self, p: PlannedProxy) -> bool:
        raise NotImplementedError  # the control plane's

    def _start_monitoring(self) -> None:
        self.metrics = ControlPlaneMetrics(self._metric_values)
        self.monitoring = MonitoringServer(self.metrics, self._scrape_targets, self.syncz, self.dashboard,
                                           converging=self._awaiting_acks)
        wanted = self.mesh.monitoring_port
        try:
            self.monitoring_port = self.monitoring.start("127.0.0.1", wanted)
        except OSError as e:
            self.monitoring_port = self.monitoring.start("127.0.0.1", 0)
            self.emit(f"[yellow]monitoring port {wanted} is taken ({e.strerror})[/yellow]; "
                      f"serving metrics on {self.monitoring_port} instead")

    def _metric_values(self) -> dict[str, object]:
        assert self.ads is not None and self.ca is not None
        snap = self._last_snap
        return {
            "connected": sum(1 for s in self.ads.statuses().values() if s.connected),
            "services": len(snap.services) if snap is not None else 0,
            "pushes": dict(self.ads.pushes), "rejects": dict(self.ads.rejects), "push_errors": dict(self.push_errors),
            "issued": self.ca.issued,
            "root_expiry": self.ca.root_cert.not_valid_after_utc.timestamp(), "now": time.time(),
        }

    def _scrape_targets(self) -> list[ScrapeTarget]:
        return [ScrapeTarget(p.record.name, p.record.namespace,
                             partial(admin_call, f"http://127.0.0.1:{p.record.admin_port}", "GET", "/stats/prometheus"))
                for p in self.proxies]

    def syncz(self) -> list[dict[str, object]]:
        """Every proxy's xDS state (``/debug/syncz``, ``exitgate proxy-status``): per type, the
        version the control plane holds for it, what it was sent and acknowledged, its last NACK."""
        assert self.ads is not None
        statuses = self.ads.statuses()
        out: list[dict[str, object]] = []
        for p in self.proxies:
            st = statuses.get(p.record.node_id)
            types: dict[str, dict[str, object]] = {}
            for type_url, version in self.cache.versions(p.record.node_id).items():
                ts = st.types.get(type_url) if st else None
                types[short_type_name(type_url)] = {
                    "type_url": type_url, "version": version,
                    "sent": ts.sent_version if ts else None, "acked": ts.acked_version if ts else None,
                    "nack": ({"version": ts.nack_version, "error": ts.nack_error, "time": ts.nack_time}
                             if ts is not None and ts.nack_error else None),
                    "empty": type_url not in WILDCARD_TYPES and not self.cache.names(p.record.node_id, type_url),
                }
            out.append({"name": p.record.name, "namespace": p.record.namespace, "node_id": p.record.node_id,
                        "role": p.record.role, "connected": bool(st and st.connected), "types": types,
                        "config_version": self.applied_version})
        return out

    def _awaiting_acks(self) -> bool:
        """A push sent less than the monitoring's wait ago that a proxy has not acknowledged yet.
        A proxy that never will (gone, or refusing it) holds the stats reads no longer."""
        now = time.monotonic()
        wait = self.monitoring.converge_wait_s if self.monitoring is not None else 0.0
        return any(now - since < wait for since in list(self._converging.values()))

    def _observe_convergence(self, node_id: str) -> None:
        """pilot_proxy_convergence_time: from the push of a new configuration until the proxy
        has acknowledged all of it."""
        started = self._converging.get(node_id)
        if started is None:
            return
        p = next((p for p in self.proxies if p.record.node_id == node_id), None)
        if p is not None and self._proxy_in_sync(p):
            self._converging.pop(node_id, None)
            self.metrics.convergence.observe(time.monotonic() - started)

    def _record_change(self, snapshot: StoreSnapshot) -> None:
        """What a new configuration version changed, for the web view: unchanged documents keep
        their spec objects (the store's), so a changed one is one whose spec is another. When
        the store wrote the version itself from the last one recorded, it says what changed
        (``delta``), and the 30,000 specs are not compared (0.15 s of one more at 10,000)."""
        version, resources, delta = snapshot.version, snapshot.resources, snapshot.delta
        if version == self.applied_version:
            return
        if delta is not None and delta.base == self.applied_version:
            now = self._last_specs
            created = [r.key for r, what in delta.changes if what == "created"]
            changed = [r.key for r, what in delta.changes if what != "created"]
            deleted = list(delta.deleted)
            for r, _ in delta.changes:
                now[r.key] = r.spec
            for k in deleted:
                now.pop(k, None)
        else:
            now = {r.key: r.spec for r in resources}
            before = self._last_specs
            created = [k for k in now if k not in before]
            deleted = [k for k in before if k not in now]
            changed = [k for k in now if k in before and now[k] is not before[k]]
        parts = [f"{what} {k[0]} {k[1]}/{k[2]}" for what, keys in (("created", created), ("changed", changed),
                                                                   ("deleted", deleted)) for k in keys]
        summary = "; ".join(parts[:6]) + (f"; and {len(parts) - 6} more" if len(parts) > 6 else "")
        self.changes.appendleft({"version": version, "time": datetime.now(timezone.utc).isoformat(),
                                 "resources": len(resources), "summary": summary or "nothing"})
        self._last_specs = now

    def dashboard(self) -> dict[str, object]:
        """The web view's document (exitgate.dashboard)."""
        assert self.monitoring is not None and self.ca is not None and self.certs is not None
        gateways = {t.key: self.monitoring.read(t) or [] for t in self._scrape_targets()
                    if any(p.record.role != "sidecar" and p.key == t.key for p in self.proxies)}
        now = datetime.now(timezone.utc)
        certs = [CertificateView("mesh root", f"spiffe://{self.mesh.trust_domain}", self.ca.root_cert.not_valid_after_utc,
                                 format(self.ca.root_cert.serial_number, "x"))]
        for ns, sa in self.certs.identities():
            issued = self.certs.get(ns, sa)
            certs.append(CertificateView("workload", issued.spiffe_id, issued.not_after, issued.serial))
        snap = self._last_snap
        for secret in snap.secrets if snap is not None else ():
            pem = secret.spec.decoded().get("tls.crt") or secret.spec.decoded().get("cert")
            if pem:
                try:
                    info = cert_info(pem)
                except ValueError:
                    continue
                certs.append(CertificateView("credential", f"{secret.namespace}/{secret.name}", info.not_after, info.serial))
        return dashboard_view(gateways, self.syncz(), certs, list(self.changes), now, self.applied_version)

    def status_rows(self) -> list[dict[str, str]]:
        """One row a proxy, like ``istioctl proxy-status``."""
        assert self.ads is not None and self.supervisor is not None
        statuses = self.ads.statuses()
        rows = []
        for p in self.proxies:
            st = statuses.get(p.record.node_id)
            versions = self.cache.versions(p.record.node_id)
            row = {"NAME": f"{p.record.name}.{p.record.namespace}", "ROLE": p.record.role,
                   "PID": str(self.supervisor.get(p.key).pid or "-"),
                   "LISTEN": ", ".join(p.record.listen)}
            for short, type_url in (("CDS", "Cluster"), ("LDS", "Listener"), ("RDS", "RouteConfiguration"), ("SDS", "Secret")):
                ts = next((t for u, t in (st.types.items() if st else []) if u.endswith("." + type_url)), None)
                want = next((v for u, v in versions.items() if u.endswith("." + type_url)), None)
                if st is None or not st.connected:
                    row[short] = "NOT CONNECTED"
                elif ts is None or ts.sent_version is None:
                    row[short] = "NOT SENT"
                elif ts.rejected:
                    row[short] = "NACK"
                elif ts.acked_version == want:
                    row[short] = "SYNCED"
                else:
                    row[short] = "STALE"
            rows.append(row)
        return rows
