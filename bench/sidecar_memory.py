"""What a Sidecar scope saves in Envoy: the sidecar's configuration for a mesh of N services
(Istio's task N times, as in translate_bench.py), translated without a Sidecar (it sees every
service) and with one whose egress hosts import K of them, each loaded into a real Envoy (the
static rendering of what xDS would send, with real certificates), side by side in one run.
Reports the Envoy's resident memory once it is ready, and the configuration's size.

Run: .venv/bin/python bench/sidecar_memory.py [N] [K]
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from exitgate import ir, names
from exitgate.api.loader import load_document
from exitgate.ca import certs
from exitgate.envoy.bootstrap import BootstrapOptions, build_bootstrap
from exitgate.envoy.ports import free_port
from exitgate.envoy.snapshot import static_bootstrap
from exitgate.mesh import MeshConfig
from exitgate.translate.sidecar import translate_sidecar
from exitgate.translate.snapshot import Snapshot

sys.path.insert(0, str(Path(__file__).resolve().parent))
from translate_bench import documents  # noqa: E402


def sidecar_doc(hosts: list[str]) -> dict[str, object]:
    return {"apiVersion": "networking.istio.io/v1", "kind": "Sidecar", "metadata": {"name": "default"},
            "spec": {"egress": [{"hosts": hosts}]}}


def secrets_for(pc: ir.ProxyConfig) -> dict[str, ir.SecretData]:
    root, root_key = certs.make_root("bench root", "exitgate bench", key_type="ec256")
    leaf, key = certs.make_leaf(root, root_key, "leaf", ["leaf.test"], key_type="ec256")
    return {n: (ir.SecretData(n, cert_pem=leaf, key_pem=key) if n == names.WORKLOAD_CERT_SECRET
                else ir.SecretData(n, ca_pem=root)) for n in pc.secret_names}


def rss_of_envoy(pc: ir.ProxyConfig, work: Path) -> tuple[float, float]:
    """(resident MiB once ready, seconds until ready) of an Envoy holding ``pc``."""
    admin = free_port()
    boot = static_bootstrap(pc, secrets_for(pc), admin_port=admin)
    boot["node"] = {"id": "bench", "cluster": "bench"}
    # The stats configuration exitgate's proxies run with (Istio's inclusion list).
    boot["stats_config"] = build_bootstrap(BootstrapOptions("bench", "bench", "127.0.0.1", 1, "", admin))["stats_config"]
    path = work / "bootstrap.json"
    path.write_text(json.dumps(boot))
    envoy = shutil.which("envoy") or str(Path(sys.executable).parent / "envoy")
    t0 = time.monotonic()
    proc = subprocess.Popen([envoy, "-c", str(path), "--disable-hot-restart", "--concurrency", "1", "-l", "error"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{admin}/ready", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() - t0 > 120:
                raise RuntimeError("envoy did not become ready")
            time.sleep(0.1)
        ready = time.monotonic() - t0
        time.sleep(2)  # let DNS clusters settle
        status = Path(f"/proc/{proc.pid}/status").read_text()
        rss_kib = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))
        return rss_kib / 1024, ready
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    k = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    base = []
    for doc in documents(n):
        r, _ = load_document(doc, "bench")
        assert r is not None
        base.append(r)
    scoped_doc, _ = load_document(sidecar_doc([f"./svc-{i}.example.com" for i in range(k)]), "bench")
    assert scoped_doc is not None
    mesh = MeshConfig()
    print(f"| sidecar ({n:,} services in the mesh) | clusters | virtual hosts | config JSON KiB | Envoy RSS MiB | ready s |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for label, resources in (("no Sidecar (sees all)", base), (f"Sidecar importing {k} hosts", [*base, scoped_doc])):
            pc, _ = translate_sidecar(Snapshot(resources, mesh), mesh.workloads[0], free_port())
            size = len(json.dumps(static_bootstrap(pc, {}))) / 1024
            rss, ready = rss_of_envoy(pc, Path(tmp))
            vhosts = sum(len(rc.virtual_hosts) for rc in pc.route_configs)
            print(f"| {label} | {len(pc.clusters):,} | {vhosts:,} | {size:,.0f} | {rss:.0f} | {ready:.1f} |", flush=True)


if __name__ == "__main__":
    main()
