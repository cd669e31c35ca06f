"""The running control plane: watches the store, translates for every proxy, serves the result
over ADS, issues and rotates workload certificates, and supervises the Envoy processes.

This is the one place where the pure layers meet the outside world (files, clock, sockets,
processes); ``exitgate up`` and ``exitgate demo`` drive it.
"""

from __future__ import annotations

import json
import os
import secrets as pysecrets
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from exitgate import ir, names
from exitgate.api.diagnostics import Diagnostic, Severity
from exitgate.api.resources import Resource
from exitgate.ca.authority import MeshCA
from exitgate.ca.rotation import WorkloadCertManager
from exitgate.capture import CaptureError, NetnsCapture, netns_path, support
from exitgate.gcpause import Settled, gc_paused
from exitgate.inventory import inventory
from exitgate.envoy.admin import Retiree, retire
from exitgate.envoy.bootstrap import BootstrapOptions, StatsInclusion, render_bootstrap
from exitgate.envoy.ports import free_port
from exitgate.envoy.snapshot import ProtoMemo, xds_resources
from exitgate.envoy.supervisor import EnvoySpec, Supervisor
from exitgate.mesh import GatewayProxy, MeshConfig, WorkloadProxy
from exitgate.observe import Observability
from exitgate.runtime import ProxyRecord, RuntimeInfo, StateDir
from exitgate.secretdata import UNREADABLE, file_stamp, resolve_secrets, secret_files
from exitgate.handoff import HandoffServer
from exitgate.privatefs import write_private_atomic
from exitgate.store import Store
from exitgate.translate.gateway import translate_gateway
from exitgate.translate.sidecar import translate_sidecar
from exitgate.translate.memo import TranslationMemo
from exitgate.translate.snapshot import Snapshot
from exitgate.wake import Waker, wake
from exitgate.xds.cache import LISTENER_TYPE, WILDCARD_TYPES, SnapshotCache
from exitgate.xds.server import AdsServer, EventKind, XdsEvent

Emit = Callable[[str], None]


@dataclass
class PlannedProxy:
    record: ProxyRecord
    identity: tuple[str, str]
    token: str
    spec: GatewayProxy | WorkloadProxy

    @property
    def key(self) -> str:
        return f"{self.record.name}.{self.record.namespace}"


class ControlPlane(Observability):
    def __init__(self, state: StateDir, mesh: MeshConfig, emit: Emit, *, clock: Callable[[], datetime] | None = None) -> None:
        self.state = state
        # The mesh file as loaded; ``mesh`` adds what the applied Kubernetes objects declare.
        self.mesh_file = mesh
        self.mesh = mesh
        self._inventory_said: set[str] = set()
        # Which Kubernetes object declared each proxy (name, namespace), for what is said of it.
        self._declared: dict[tuple[str, str], str] = {}
        self.emit = emit
        self.clock = clock or (lambda: datetime.now(timezone.utc))
        # Translation reads specs and metadata, not whole documents (those stay in the store file).
        self.store = Store(state.root, keep_documents=False, resident=True)
        self.cache = SnapshotCache()
        self.proxies: list[PlannedProxy] = []
        self.supervisor: Supervisor | None = None
        self.ads: AdsServer | None = None
        self.applied_version = -1
        # Certificate files the last push read, and their stamps: a change re-pushes.
        self._files: dict[str, tuple[int, int] | None] = {}
        self.ads_port = 0
        self.ca: MeshCA | None = None
        self.certs: WorkloadCertManager | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        # Per proxy, the diagnostics the last push reported (each is said once while it lasts).
        self._said: dict[str, set[str]] = {}
        self.netns = NetnsCapture(state.root)
        self._lock_ctx: AbstractContextManager[None] | None = None
        # Envoy messages of the last pushes, by IR value: an unchanged resource is not rebuilt.
        self._protos = ProtoMemo()
        # A push's objects, frozen out of the collector's sight after it (see gcpause).
        self._settled = Settled()
        self._translations = TranslationMemo()
        self._init_observability()
        # The last push's snapshot and each proxy's translation of it, for a push of new
        # certificates alone.
        self._last_snap: Snapshot | None = None
        self._translated: dict[str, tuple[ir.ProxyConfig, list[Diagnostic]]] = {}
        self.capture_mode = "off"  # what start() found: "netns" or "off"
        self._handoff: HandoffServer | None = None
        # What an apply handed over left to free, freed by the loop after the push it set off.
        self._leftovers: list[object] = []

    # -- setup -------------------------------------------------------------------------------
    def _plan(self) -> None:
        self.proxies = self._wanted()

    def _wanted(self) -> list[PlannedProxy]:
        """The proxies the mesh (file and Kubernetes objects) declares; the ones already planned
        keep their ports, token and network namespace."""
        have = {p.key: p for p in self.proxies}
        out: list[PlannedProxy] = []
        for g in self.mesh.gateways:
            for i, addr in enumerate(g.replica_addresses):
                # Each replica is the gateway translated at its own address.
                replica = g if addr == g.address else g.model_copy(update={"address": addr})
                name = g.replica_name(i)
                listen = [f"{addr}:{p.target_port} (service port {p.port})" for p in g.ports]
                known = have.get(f"{name}.{g.namespace}")
                if known is not None and known.record.role == "router" and known.spec.address == addr:
                    known.spec, known.identity, known.record.listen = replica, g.identity, listen
                    out.append(known)
                    continue
                nid = names.node_id("router", addr, name, g.namespace)
                log = self.state.log_dir / f"{name}.{g.namespace}.log"
                rec = ProxyRecord(name, g.namespace, "router", nid, free_port(), str(log), listen=listen,
                                  deployment=g.name)
                out.append(PlannedProxy(rec, g.identity, pysecrets.token_urlsafe(24), replica))
        for w in self.mesh.workloads:
            known = have.get(f"{w.name}.{w.namespace}")
            if known is not None and known.record.role == "sidecar" and known.spec.address == w.address:
                known.spec, known.identity = w, w.identity
                out.append(known)
                continue
            port = w.proxy_port or free_port(w.address)
            nid = names.node_id("sidecar", w.address, w.name, w.namespace)
            log = self.state.log_dir / f"{w.name}.{w.namespace}.log"
            rec = ProxyRecord(w.name, w.namespace, "sidecar", nid, free_port(), str(log), proxy_port=port,
                              listen=[f"{w.address}:{port} (HTTP proxy)"])
            if self.capture_mode == "netns":
                rec.netns = self.netns.name(w.name, w.namespace)
                rec.proxy_port = 0
                rec.listen = [f"127.0.0.1:{names.CAPTURE_PORT} (virtualOutbound) and "
                              f"127.0.0.1:{names.DNS_CAPTURE_PORT} (DNS) in network namespace {rec.netns}"]
            out.append(PlannedProxy(rec, w.identity, pysecrets.token_urlsafe(24), w))
        return out

    def _use_inventory(self, resources: Sequence[Resource]) -> None:
        """The mesh file's inventory with what the applied Kubernetes objects declare."""
        found = inventory(self.mesh_file, resources)
        said = {str(d) for d in found.diagnostics}
        for line in sorted(said - self._inventory_said):
            self.emit(line)
        self._inventory_said = said
        self._declared = found.declared_by
        self.mesh = found.mesh

    def _replan(self) -> None:
        """Start the proxies the inventory added and stop the ones it lost (a Deployment
        applied or deleted); the others run on untouched."""
        if self.supervisor is None:
            return
        wanted = self._wanted()
        keys = {p.key for p in wanted}
        gone = [p for p in self.proxies if p.key not in keys]
        new = [p for p in wanted if p.key not in {q.key for q in self.proxies}]
        if not gone and not new:
            self.proxies = wanted
            return
        self.proxies = wanted
        for p in gone:
            self.emit(f"proxy {p.key}: no longer declared; stopping it")
            self.supervisor.remove(p.key)
            self.cache.remove(p.record.node_id)
            self._translated.pop(p.key, None)
            if p.record.netns:
                self.netns.teardown(p.record.netns)
        for p in new:
            if p.record.netns:
                self.netns.setup(p.record.netns)
            self._launch(p)
            self.supervisor.start(p.key)
            p.record.pid = self.supervisor.get(p.key).pid
            self.emit(f"proxy {p.key}: declared by {self._declared_by(p)}; started")
        self._write_runtime(self.ads_port)

    def _declared_by(self, p: PlannedProxy) -> str:
        return self._declared.get((p.spec.name, p.record.namespace), "the mesh file")

    def _setup_capture(self) -> None:
        """Decide the capture mode and make each workload's namespace. A crashed run's
        namespaces are removed first; with ``capture: auto`` a machine that cannot capture runs
        without, and says why."""
        if self.mesh.capture == "off":
            return
        found = support()
        if not found.available:
            if self.mesh.capture == "on":
                raise CaptureError(f"capture: on, but {found.reason}")
            self.emit(f"capture off: {found.reason}; workloads use http_proxy/https_proxy (exitgate exec sets them)")
            return
        stale = self.netns.cleanup()
        if stale:
            self.emit(f"removed network namespaces left by an earlier run: {', '.join(stale)}")
        try:
            for w in self.mesh.workloads:
                self.netns.setup(self.netns.name(w.name, w.namespace))
        except Exception as e:
            self.netns.cleanup()
            if self.mesh.capture == "on":
                raise CaptureError(f"capture: on, but the network namespaces could not be made: {e}") from e
            self.emit(f"capture off: the network namespaces could not be made ({e}); "
                      "workloads use http_proxy/https_proxy")
            return
        self.capture_mode = "netns"
        self.emit("capture on: each workload runs in its own network namespace, its TCP redirected to its "
                  f"sidecar (port {names.CAPTURE_PORT}) and its DNS to the sidecar's DNS proxy")

    def _authenticate(self, node_id: str, token: str) -> bool:
        return any(p.record.node_id == node_id and pysecrets.compare_digest(p.token, token) for p in self.proxies)

    def _on_xds(self, ev: XdsEvent) -> None:
        if ev.kind is EventKind.ACK:
            self._observe_convergence(ev.node_id)
        who = self._name_of(ev.node_id)
        if ev.kind is EventKind.NACK:
            self.emit(f"[red]NACK[/red] {who} rejected {ev.type_url and ev.type_url.rsplit('.', 1)[-1]} "
                      f"version {ev.version}; it keeps its last good configuration. Envoy said: {ev.error}")
        elif ev.kind in (EventKind.CONNECT, EventKind.DISCONNECT):
            self.emit(f"xDS {ev.kind.value}: {who}")

    def _name_of(self, node_id: str) -> str:
        for p in self.proxies:
            if p.record.node_id == node_id:
                return f"{p.record.name}.{p.record.namespace}"
        return node_id

    def start(self) -> None:
        self.state.prepare()
        # One control plane per state directory, held until stop(); a second start fails here.
        self._lock_ctx = self.state.up_lock()
        self._lock_ctx.__enter__()
        orphans = self.state.orphans()
        self.ca = MeshCA.load_or_create(self.state.ca_dir, self.mesh.trust_domain)
        self.certs = WorkloadCertManager(self.ca, timedelta(seconds=self.mesh.workload_cert_ttl_seconds), self.clock)
        self._use_inventory(self.store.load().resources)
        self._setup_capture()
        self._plan()
        self.ads = AdsServer(self.cache, self._authenticate, on_event=self._on_xds)
        xds_port = self.ads_port = self.ads.start("127.0.0.1", 0)
        self._start_monitoring()
        self.reconcile(force=True)
        self.supervisor = Supervisor(on_event=self._on_proxy_event)
        for p in self.proxies:
            self._launch(p)
        self.supervisor.start_all()
        for p in self.proxies:
            p.record.pid = self.supervisor.get(p.key).pid
        self._write_runtime(xds_port)
        self.supervisor.watch()
        if orphans:
            self._replace_orphans(orphans)
        self._handoff = HandoffServer(self.state.root, self._answer_apply)
        try:
            self._handoff.start()
        except OSError as e:  # `apply` then writes the store itself, and this loop reads it
            self._handoff = None
            self.emit(f"[yellow]exitgate apply will not be handed to this control plane[/yellow]: {e}")

    def _answer_apply(self, message: dict[str, Any]) -> dict[str, Any]:
        """An ``exitgate apply`` handed over (``handoff``): parsed here, stored by this process's
        Store, which then knows the new version without reading it back."""
        from exitgate.cli.applying import answer_request

        return answer_request(self.store, message, self._lock, keep=self._leftovers.append)

    def _launch(self, p: PlannedProxy) -> None:
        """Write the proxy's bootstrap and hand it to the supervisor (not started yet)."""
        assert self.supervisor is not None
        stats = self.mesh.proxy_stats_matcher
        boot = self.state.run_dir / f"{p.record.name}.{p.record.namespace}.bootstrap.json"
        opts = BootstrapOptions(
            node_id=p.record.node_id,
            cluster=f"{p.record.name}.{p.record.namespace}",
            xds_host="127.0.0.1", xds_port=self.ads_port, xds_token=p.token,
            admin_port=p.record.admin_port, dns_resolvers=self.mesh.dns.parsed(),
            delta_xds=self.mesh.delta_xds,
            stats_inclusion=StatsInclusion(tuple(stats.inclusion_prefixes), tuple(stats.inclusion_suffixes),
                                           tuple(stats.inclusion_regexps)),
        )
        # The bootstrap carries the xDS token: private, like a key.
        write_private_atomic(boot, render_bootstrap(opts).encode())
        self.supervisor.add(EnvoySpec(name=p.key, bootstrap_path=Path(boot), log_path=Path(p.record.log_path),
                                      admin_port=p.record.admin_port))

    def _replace_orphans(self, orphans: list[ProxyRecord], timeout: float = 30.0) -> None:
        """Make before break: the Envoys a killed control plane left running served its last
        configuration meanwhile (their listeners share the ports with the new ones, Envoy's
        reuse_port). Once the new proxies are ready and in sync, the old ones are drained, so
        their clients move to the new ones between requests, and then stopped."""
        ready = self.wait_ready(timeout)
        self.emit(f"draining and stopping {len(orphans)} proxies left running by a control plane that was killed"
                  + ("" if ready else " (the new ones are not in sync yet)"))
        # The old Envoys were started as this control plane starts its own: the same drain time.
        for note in retire([Retiree(p.pid, p.admin_port) for p in orphans if p.pid], drain_s=EnvoySpec.drain_time_s):
            self.emit(f"old proxy {note}")

    def _on_proxy_event(self, name: str, kind: str, detail: str) -> None:
        self.emit(f"proxy {name}: {kind}{' (' + detail + ')' if detail else ''}")
        if kind in ("started", "restarted") and self.supervisor is not None and self.ads is not None and self.ads_port:
            for p in self.proxies:
                if p.key == name:
                    p.record.pid = self.supervisor.get(name).pid
            self._write_runtime(self.ads_port)

    def _write_runtime(self, xds_port: int) -> None:
        self.state.write_runtime(RuntimeInfo(os.getpid(), xds_port, [p.record for p in self.proxies],
                                             self.monitoring_port))

    def wait_ready(self, timeout: float = 30.0) -> bool:
        """True once every proxy is live and has acknowledged the current configuration."""
        assert self.supervisor is not None and self.ads is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.in_sync() and all(p.is_ready() for p in self.supervisor.processes.values()):
                return True
            time.sleep(0.1)
        return False

    def in_sync(self) -> bool:
        return all(self._proxy_in_sync(p) for p in self.proxies)

    def _proxy_in_sync(self, p: PlannedProxy) -> bool:
        assert self.ads is not None
        st = self.ads.status(p.record.node_id)
        if st is None or not st.connected:
            return False
        for type_url, ts in st.types.items():
            if ts.sent_version is None:
                continue
            # A proxy that no longer needs any resource of a named type (e.g. every secret
            # went with its listener) does not acknowledge the empty set: nothing to wait for.
            if type_url not in WILDCARD_TYPES and not self.cache.names(p.record.node_id, type_url):
                continue
            if ts.acked_version != self.cache.version(p.record.node_id, type_url):
                return False
        return True

    # -- the loop ----------------------------------------------------------------------------
    def reconcile(self, force: bool = False) -> list[Diagnostic]:
        """Translate the current snapshot for every proxy and hand it to the xDS cache."""
        with self._lock, gc_paused():
            version = self.store.version()
            changed = force or version != self.applied_version or self._files_changed()
            if not changed and not self._rotation_due():
                return []
            if not changed and self._last_snap is not None:
                # Only workload certificates are due: the configuration, and so every proxy's
                # translation, is the same; only the secrets are issued and sent again.
                return self._push(None)
            with self.monitoring.quiet() if self.monitoring is not None else nullcontext():
                snapshot = self.store.load()
                self._record_change(snapshot)
                self._use_inventory(snapshot.resources)
                self._replan()
                diags = self._push(snapshot.resources)
            self.applied_version = snapshot.version
            self._settled.pushed(time.monotonic())
            return diags

    def _files_changed(self) -> bool:
        return any(file_stamp(path) != stamp for path, stamp in self._files.items())

    def _rotation_due(self) -> bool:
        assert self.certs is not None
        return bool(self.certs.due())

    def _push(self, resources: Sequence[Resource] | None) -> list[Diagnostic]:
        """``resources`` None: the last push's configuration again, not translated again.
        Called by ``reconcile``, with the garbage collector paused."""
        assert self.certs is not None and self.ca is not None
        all_diags: list[Diagnostic] = []
        self._files = {}
        # Indexed once per configuration version, read by every proxy's translation.
        snap = (self._last_snap if resources is None and self._last_snap is not None
                else Snapshot(resources or (), self.mesh, self._translations))
        self._last_snap = snap
        for p in self.proxies:
            last = self._translated.get(p.key) if resources is None else None
            if last is not None:
                pc, diags = last
            elif isinstance(p.spec, GatewayProxy):
                pc, diags = translate_gateway(snap, p.spec)
            else:
                pc, diags = translate_sidecar(snap, p.spec, p.record.proxy_port,
                                              capture_netns=netns_path(p.record.netns) if p.record.netns else None)
            self._translated[p.key] = (pc, diags)
            # Stamped before they are read: a file written while the push reads it (a key, then
            # its certificate) differs from its stamp at the next poll and is read again.
            for path in secret_files(pc.secret_names, self.mesh):
                self._files[path] = file_stamp(path)
            secrets, sdiags = resolve_secrets(pc.secret_names, p.key, p.identity, p.record.namespace, snap, self.certs,
                                              self.ca, self.mesh)
            blocking = any(d.code == UNREADABLE for d in sdiags)
            if p.record.role == "sidecar":
                # A sidecar is given every cluster of the mesh, including ones only a gateway
                # uses (e.g. origination with a gateway's credentialName): warn, do not alarm.
                sdiags = [replace(d, severity=Severity.WARNING) if d.is_error and d.code != UNREADABLE else d
                          for d in sdiags]
            said = {f"{p.key}: {d}" for d in [*diags, *sdiags]}
            # Say each problem when it appears, not again at every push while it lasts.
            for line in sorted(said - self._said.get(p.key, set())):
                self.emit(line)
            self._said[p.key] = said
            all_diags += diags + sdiags
            if blocking and p.record.node_id in self.cache.nodes():
                self.push_errors["unrecoverable"] += 1
                self.emit(f"[red]{p.key} keeps its last good configuration[/red]: fix the files named above")
                continue
            resources_now = xds_resources(pc, secrets, self._protos)
            if self.monitoring is not None and self.cache.replaces(p.record.node_id, LISTENER_TYPE,
                                                                   resources_now[LISTENER_TYPE]):
                # What the listeners this push replaces counted: Envoy drops their series with
                # them. Only then: at 10,000 services a read of every proxy's stats is 0.1-0.4 s
                # taken from the push, and most changes replace no listener.
                self.monitoring.read_all(then_closely_s=EnvoySpec.drain_time_s + 1.0, keys={p.key})
            self.cache.set_snapshot(p.record.node_id, resources_now)
            if self.ads is not None and self._proxy_in_sync(p):
                self._converging.pop(p.record.node_id, None)  # nothing new for it: nothing to wait for
            else:
                self._converging.setdefault(p.record.node_id, time.monotonic())
        self._protos.next_push()
        if resources is not None:  # translated: what this push did not use is forgotten next time
            self._translations.next_push()
        return all_diags

    def run(self, poll_s: float = 0.3, on_tick: Callable[[], None] | None = None) -> None:
        """Until ``stop()``: pick up applied configuration (at once: the store wakes this loop)
        and, every ``poll_s``, changed certificate files and due certificate rotations."""
        waker = Waker(self.state.root)
        try:
            while not self._stop.is_set():
                waker.wait(poll_s)
                if self._stop.is_set():
                    break
                try:
                    self.reconcile()
                except Exception as e:  # keep serving the last good configuration
                    self.push_errors["unrecoverable"] += 1
                    self.emit(f"[red]error[/red] while applying configuration: {e}")
                if self._leftovers:
                    self._leftovers.clear()
                    self._settled.trim()
                self._settled.idle(time.monotonic())
                if on_tick is not None:
                    on_tick()
        finally:
            waker.close()

    def stop(self) -> None:
        self._stop.set()
        if self._handoff is not None:
            self._handoff.stop()  # from now on `apply` writes the store itself
            self._handoff = None
        wake(self.state.root)  # the run loop ends now, not at its next poll
        self._settled.release()
        if self.supervisor is not None:
            self.supervisor.stop_all()
        if self.ads is not None:
            self.ads.stop()
        if self.monitoring is not None:
            self.monitoring.stop()
        if self.capture_mode == "netns":
            self.netns.cleanup()
        self.state.clear_runtime()
        if self._lock_ctx is not None:
            self._lock_ctx.__exit__(None, None, None)
            self._lock_ctx = None


def dump_json(obj: object) -> str:
    return json.dumps(obj, indent=2, default=str)
