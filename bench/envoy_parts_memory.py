"""What each part of a gateway's configuration costs its Envoy: the gateway's translation of N
services of scale_bench.py (one port each) as a static bootstrap with exitgate's stats
configuration (TLS left out: there are no secrets here), run by a real Envoy once per variant,
each variant one part changed; resident memory once ready, and how long until ``/ready``.

Variants: ``full`` (as translated), ``rejectall`` (no stat kept), ``deferred`` (Istio's deferred
stats and cluster creation, exitgate's bootstrap since issue 9's fifth stop), ``notelemetry`` /
``noistio`` / ``nometa`` (without the stats loggers' labels, Istio's metadata, any metadata),
``nocircuitbreakers`` / ``noprotocoloptions`` (clusters without Istio's circuit breaker
thresholds, without their HTTP protocol options), ``onecluster`` (Envoy with next to nothing);
for the route table alone, ``novhosts`` (no virtual host), ``noroutemeta`` (routes without
metadata), ``noretry`` (routes without a retry policy).
Envoy's own floor for this many clusters and virtual hosts: ``bareclusters`` (the clusters with
a name, a type, a timeout and their endpoints, nothing else, and no listener) and ``bare`` (those
clusters and the listeners with route tables of bare virtual hosts: a name, the domains, each
route its match and its cluster; the listeners' filters as translated), both with Envoy's
deferred stats and cluster creation, as ``deferred``. ``+`` combines variants, applied in turn:
``deferred+nometa`` is exitgate's bootstrap without any metadata.

Run: .venv/bin/python bench/envoy_parts_memory.py [N] [variant,...]
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

from scale_bench import GATEWAY, service  # noqa: E402

from exitgate.api.loader import load_document  # noqa: E402
from exitgate.envoy.bootstrap import BootstrapOptions, build_bootstrap  # noqa: E402
from exitgate.envoy.ports import free_port  # noqa: E402
from exitgate.envoy.snapshot import static_bootstrap  # noqa: E402
from exitgate.envoy.supervisor import find_envoy  # noqa: E402
from exitgate.mesh import MeshConfig  # noqa: E402
from exitgate.translate.gateway import translate_gateway  # noqa: E402
from exitgate.translate.snapshot import Snapshot  # noqa: E402

VARIANTS = ("full", "rejectall", "deferred", "notelemetry", "noistio", "nometa", "onecluster",
            "novhosts", "noroutemeta", "noretry", "nocircuitbreakers",
            "noprotocoloptions", "bareclusters", "bare")
BARE_CLUSTER = ("name", "type", "connect_timeout", "load_assignment", "dns_lookup_family")


def bare_routes(rc: dict[str, Any]) -> None:
    rc["virtual_hosts"] = [
        {"name": v["name"], "domains": v["domains"],
         "routes": [{"match": r["match"], "route": {"cluster": r["route"]["cluster"]}}
                    for r in v.get("routes", []) if "cluster" in r.get("route", {})]}
        for v in rc.get("virtual_hosts", [])]


def route_configs(b: dict[str, Any]) -> list[dict[str, Any]]:
    """The route tables inlined in the bootstrap's HTTP connection managers."""
    out = []
    for lst in b["static_resources"].get("listeners", []):
        for chain in lst.get("filter_chains", []):
            for f in chain.get("filters", []):
                rc = f.get("typed_config", {}).get("route_config")
                if rc is not None:
                    out.append(rc)
    return out


def strip(node: Any, keys: tuple[str, ...]) -> Any:
    if isinstance(node, dict):
        return {k: strip(v, keys) for k, v in node.items() if k not in keys}
    if isinstance(node, list):
        return [strip(v, keys) for v in node]
    return node


def variant(boot: dict[str, Any], names: str) -> dict[str, Any]:
    """The bootstrap with each of ``names`` (``+`` between them) applied in turn."""
    b = copy.deepcopy(boot)
    b.pop("deferred_stat_options", None)
    b.pop("cluster_manager", None)
    for name in names.split("+"):
        b = apply(b, name)
    return b


def apply(b: dict[str, Any], name: str) -> dict[str, Any]:
    if name not in VARIANTS:
        raise SystemExit(f"unknown variant {name!r}: one of {', '.join(VARIANTS)}")
    if name in ("deferred", "bareclusters", "bare"):
        b["deferred_stat_options"] = {"enable_deferred_creation_stats": True}
        b["cluster_manager"] = {"enable_deferred_cluster_creation": True}
    if name == "rejectall":
        b["stats_config"] = {"stats_matcher": {"reject_all": True}}
    elif name == "notelemetry":
        b = strip(b, ("exitgate.telemetry",))
    elif name == "noistio":
        b = strip(b, ("istio",))
    elif name == "nometa":
        b = strip(b, ("metadata",))
    elif name == "nocircuitbreakers":
        for c in b["static_resources"]["clusters"]:
            c.pop("circuit_breakers", None)
    elif name == "noprotocoloptions":
        for c in b["static_resources"]["clusters"]:
            c.pop("typed_extension_protocol_options", None)
    elif name == "onecluster":
        b["static_resources"] = {"clusters": b["static_resources"]["clusters"][:1]}
    elif name in ("bareclusters", "bare"):
        sr = b["static_resources"]
        sr["clusters"] = [{k: v for k, v in c.items() if k in BARE_CLUSTER} for c in sr["clusters"]]
        if name == "bareclusters":
            sr.pop("listeners", None)
        for rc in route_configs(b):
            bare_routes(rc)
    for rc in route_configs(b) if name in ("novhosts", "noroutemeta", "noretry") else []:
        if name == "novhosts":
            rc["virtual_hosts"] = []
        for v in rc.get("virtual_hosts", []):
            for r in v.get("routes", []):
                if name == "noroutemeta":
                    r.pop("metadata", None)
                else:
                    r.get("route", {}).pop("retry_policy", None)
    return b


def run(b: dict[str, Any], work: Path) -> tuple[int, float]:
    """(resident MiB once ready, seconds until ready) of an Envoy running ``b``."""
    b["admin"]["address"]["socket_address"]["port_value"] = port = free_port()
    for lst in b["static_resources"].get("listeners", []):
        lst["address"]["socket_address"]["port_value"] = free_port()
    path = work / "bootstrap.json"
    path.write_text(json.dumps(b))
    t0 = time.monotonic()
    proc = subprocess.Popen([find_envoy(), "-c", str(path), "--concurrency", "1", "-l", "error",
                             "--base-id", str(free_port())], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while time.monotonic() - t0 < 180:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=1) as r:
                    if r.read().strip() == b"LIVE":
                        break
            except OSError:
                pass
            time.sleep(0.05)
        ready = time.monotonic() - t0
        time.sleep(2)
        status = Path(f"/proc/{proc.pid}/status").read_text()
        return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))) // 1024, ready
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    names = sys.argv[2].split(",") if len(sys.argv) > 2 else list(VARIANTS)
    resources = []
    for doc in [GATEWAY, *[d for i in range(n) for d in service(i)]]:
        r, _ = load_document(doc, "bench")
        assert r is not None
        resources.append(r)
    mesh = MeshConfig()
    pc, _ = translate_gateway(Snapshot(resources, mesh), mesh.gateways[0])
    boot = strip(static_bootstrap(pc, {}, admin_port=1), ("transport_socket",))
    boot["stats_config"] = build_bootstrap(BootstrapOptions("bench", "bench", "127.0.0.1", 1, "", 1))["stats_config"]
    print(f"| gateway at {n:,} services, static ({len(pc.clusters):,} clusters) | RSS MiB | ready s |")
    print("|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            rss, ready = run(variant(boot, name), Path(tmp))
            print(f"| {name} | {rss} | {ready:.2f} |", flush=True)


if __name__ == "__main__":
    main()
