"""How long translation takes as the configuration grows: N ServiceEntries, each routed through
the egress gateway with TLS origination (Istio's task's pattern, N times: 3N resources).

Measured per proxy, from validated resources to Envoy protos: building the indexed snapshot,
translating the gateway (or the sidecar), and turning the IR into protos, with Python's cyclic
GC paused as the control plane pauses it during a push (and once with it on, for comparison). YAML parsing is left
out (its cost is the loader's, measured in issue 9's bench); the resources are validated by the
loader from plain dicts. Each size runs in its own process, so one run can put two versions of
exitgate side by side: ``--baseline DIR`` names the ``src`` of another checkout (for example
``git worktree add /tmp/base <commit>``), whose API (resources list instead of a snapshot) is
detected.

Run: .venv/bin/python bench/translate_bench.py [--baseline /tmp/base/src] [N ...]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"


def documents(n: int) -> list[dict[str, Any]]:
    gw = {"apiVersion": "networking.istio.io/v1", "kind": "Gateway", "metadata": {"name": "istio-egressgateway"},
          "spec": {"selector": {"istio": "egressgateway"}, "servers": [
              {"port": {"number": 80, "name": "https", "protocol": "HTTPS"}, "hosts": ["*"],
               "tls": {"mode": "ISTIO_MUTUAL"}}]}}
    docs = [gw]
    for i in range(n):
        host = f"svc-{i}.example.com"
        docs += [
            {"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry", "metadata": {"name": f"se-{i}"},
             "spec": {"hosts": [host], "resolution": "DNS",
                      "ports": [{"number": 80, "name": "http", "protocol": "HTTP"},
                                {"number": 443, "name": "https", "protocol": "HTTPS"}]}},
            {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": f"vs-{i}"},
             "spec": {"hosts": [host], "gateways": ["istio-egressgateway", "mesh"], "http": [
                 {"match": [{"gateways": ["mesh"], "port": 80}],
                  "route": [{"destination": {"host": "istio-egressgateway.istio-system.svc.cluster.local",
                                             "port": {"number": 80}}}]},
                 {"match": [{"gateways": ["istio-egressgateway"], "port": 80}],
                  "route": [{"destination": {"host": host, "port": {"number": 443}}}]}]}},
            {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule", "metadata": {"name": f"dr-{i}"},
             "spec": {"host": host, "trafficPolicy": {"portLevelSettings": [
                 {"port": {"number": 443}, "tls": {"mode": "SIMPLE"}}]}}},
        ]
    return docs


def worker(n: int, role: str) -> dict[str, Any]:
    """Runs in the child process, against whichever exitgate is first on sys.path."""
    from exitgate.api.loader import load_document
    from exitgate.envoy.snapshot import xds_resources
    from exitgate.mesh import MeshConfig

    resources = []
    for doc in documents(n):
        r, _ = load_document(doc, "bench")
        assert r is not None
        resources.append(r)
    mesh = MeshConfig()
    try:
        from exitgate.translate.gateway import translate_gateway
        from exitgate.translate.sidecar import translate_sidecar
        from exitgate.translate.snapshot import Snapshot

        def run() -> Any:
            snap = Snapshot(resources, mesh)
            if role == "gateway":
                return translate_gateway(snap, mesh.gateways[0])[0]
            return translate_sidecar(snap, mesh.workloads[0], 15001)[0]
        api = "snapshot"
    except ImportError:  # the baseline: translate.proxy over a resource list
        from exitgate.translate import proxy as old

        def run() -> Any:
            if role == "gateway":
                return old.translate_gateway(resources, mesh, mesh.gateways[0])[0]  # type: ignore[attr-defined]
            return old.translate_sidecar(resources, mesh, mesh.workloads[0], 15001)[0]  # type: ignore[attr-defined]
        api = "resource list"
    times = []
    for _ in range(3 if n <= 3000 else 1):
        # As the control plane pushes (gcpause.gc_paused): the cyclic collector waits.
        gc.disable()
        t0 = time.perf_counter()
        pc = run()
        t1 = time.perf_counter()
        xds_resources(pc, {})
        times.append((t1 - t0, time.perf_counter() - t1))
        gc.enable()
    t0 = time.perf_counter()
    run()
    with_gc = time.perf_counter() - t0
    tracemalloc.start()
    run()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    best = min(times)
    return {"n": n, "role": role, "api": api, "translate_s": best[0], "protos_s": best[1], "with_gc_s": with_gc,
            "clusters": len(pc.clusters), "peak_mib": peak / 2**20}


def measure(src: Path, n: int, role: str, timeout: float) -> dict[str, Any] | None:
    env = {**os.environ, "PYTHONPATH": str(src)}
    code = f"import json, sys; sys.path.insert(0, {str(HERE)!r}); import translate_bench as b; " \
           f"print(json.dumps(b.worker({n}, {role!r})))"
    try:
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=timeout,
                             check=True)
    except subprocess.TimeoutExpired:
        return None
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("sizes", nargs="*", type=int, default=[1000, 3000, 10000])
    ap.add_argument("--baseline", type=Path, help="src directory of another exitgate checkout")
    ap.add_argument("--baseline-timeout", type=float, default=120.0)
    args = ap.parse_args()
    print("| services (resources) | proxy | code | translate s | IR → protos s | translate s, GC on | clusters | peak MiB |")
    print("|---|---|---|---|---|---|---|---|")
    for n in args.sizes:
        for role in ("gateway", "sidecar"):
            runs = [("this", SRC, 3600.0)] + ([("baseline", args.baseline, args.baseline_timeout)] if args.baseline else [])
            for label, src, timeout in runs:
                r = measure(src, n, role, timeout)
                if r is None:
                    print(f"| {n:,} ({3 * n + 1:,}) | {role} | {label} | > {timeout:.0f} (stopped) | | | | |")
                    continue
                print(f"| {n:,} ({3 * n + 1:,}) | {role} | {label} ({r['api']}) | {r['translate_s']:.3f} | "
                      f"{r['protos_s']:.3f} | {r['with_gc_s']:.3f} | {r['clusters']:,} | {r['peak_mib']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
