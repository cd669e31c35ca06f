"""How long translation takes as the configuration grows: N ServiceEntries, each routed
through the egress gateway with TLS origination (Istio's task's pattern, N times).

Run: .venv/bin/python bench/translate_bench.py   (results go to bench/RESULTS.md by hand)
"""

from __future__ import annotations

import statistics
import sys
import time
import tracemalloc

from exitgate.api.loader import load_text
from exitgate.envoy.snapshot import xds_resources
from exitgate.mesh import MeshConfig
from exitgate.translate.proxy import translate_gateway, translate_sidecar

TEMPLATE = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: se-{i}}}
spec:
  hosts: [svc-{i}.example.com]
  ports: [{{number: 80, name: http, protocol: HTTP}}, {{number: 443, name: https, protocol: HTTPS}}]
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: vs-{i}}}
spec:
  hosts: [svc-{i}.example.com]
  gateways: [istio-egressgateway, mesh]
  http:
  - match: [{{gateways: [mesh], port: 80}}]
    route: [{{destination: {{host: istio-egressgateway.istio-system.svc.cluster.local, subset: s{i}, port: {{number: 80}}}}}}]
  - match: [{{gateways: [istio-egressgateway], port: 80}}]
    route: [{{destination: {{host: svc-{i}.example.com, port: {{number: 443}}}}}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: dr-{i}}}
spec:
  host: svc-{i}.example.com
  trafficPolicy: {{portLevelSettings: [{{port: {{number: 443}}, tls: {{mode: SIMPLE}}}}]}}
"""
GATEWAY = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: istio-egressgateway}
spec:
  selector: {istio: egressgateway}
  servers:
  - port: {number: 80, name: https, protocol: HTTPS}
    hosts: ["*"]
    tls: {mode: ISTIO_MUTUAL}
"""


def run(n: int, repeat: int = 3) -> dict[str, float]:
    text = GATEWAY + "---\n" + "---\n".join(TEMPLATE.format(i=i) for i in range(n))
    t0 = time.perf_counter()
    loaded = load_text(text, "bench.yaml")
    load_s = time.perf_counter() - t0
    assert loaded.ok, loaded.diagnostics[:3]
    mesh = MeshConfig()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        pc, _ = translate_gateway(loaded.resources, mesh, mesh.gateways[0])
        xds_resources(pc, {})
        sc, _ = translate_sidecar(loaded.resources, mesh, mesh.workloads[0], 15001)
        xds_resources(sc, {})
        times.append(time.perf_counter() - t0)
    tracemalloc.start()
    translate_gateway(loaded.resources, mesh, mesh.gateways[0])
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"n": n, "load_s": load_s, "translate_both_s": statistics.median(times), "peak_mib": peak / 2**20}


if __name__ == "__main__":
    sizes = [int(a) for a in sys.argv[1:]] or [1, 10, 100, 300]
    print("| services | load YAML s | translate gateway+sidecar → protos s (median of 3) | peak MiB (gateway) |")
    print("|---|---|---|---|")
    for n in sizes:
        r = run(n)
        print(f"| {n} | {r['load_s']:.3f} | {r['translate_both_s']:.3f} | {r['peak_mib']:.1f} |")
