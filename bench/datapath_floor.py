"""What Envoy alone costs on this machine, against the data-path goals of issue 9.

The same topology as ``datapath_bench.py`` (wrk → sidecar → gateway over mutual TLS → nginx over
mutual TLS), three ways, alternating in one run:

- ``direct``: wrk straight to nginx over HTTPS (the goal's denominator);
- ``floor``: two Envoys with static, minimal configuration: an HTTP connection manager and its
  router, one cluster each, the same TLS on each hop (ECDSA P-256 keys, client certificates,
  verification), one worker each as exitgate runs them; no access log, no metrics, no RBAC, no
  xDS. No control plane can give Envoy less to do per request;
- ``exitgate``: the real path under ``exitgate up`` (the mutual TLS origination task).

Printed per variant: requests per second, the ratio over ``direct``, and each proxy's CPU per
request in µs (its vCPU over the rate). The ratio ``floor / direct`` is the best any Envoy-based
path can do here: a goal above it is a goal about the machine and Envoy, not the configuration.

Run: .venv/bin/python bench/datapath_floor.py [--seconds 8] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

import datapath_bench as db  # noqa: E402

from exitgate.ca import certs  # noqa: E402
from exitgate.envoy.ports import free_port  # noqa: E402
from exitgate.envoy.supervisor import find_envoy  # noqa: E402

HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
UPSTREAM_TLS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
DOWNSTREAM_TLS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"


def _inline(pem: bytes) -> dict[str, str]:
    return {"inline_bytes": __import__("base64").b64encode(pem).decode()}


def _tls_common(cert: bytes, key: bytes, root: bytes) -> dict[str, Any]:
    return {"tls_certificates": [{"certificate_chain": _inline(cert), "private_key": _inline(key)}],
            "validation_context": {"trusted_ca": _inline(root)}}


def _proxy(admin: int, listen: int, upstream: int, sni: str, client: tuple[bytes, bytes], root: bytes,
           server: tuple[bytes, bytes] | None) -> dict[str, Any]:
    """One Envoy: a listener (TLS with a required client certificate when ``server``) whose
    every request goes to one cluster over TLS with a client certificate."""
    chain: dict[str, Any] = {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": {
        "@type": HCM, "stat_prefix": "floor", "codec_type": "AUTO",
        "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"],
                                            "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "up"}}]}]},
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}}]}}]}
    if server is not None:
        chain["transport_socket"] = {"name": "envoy.transport_sockets.tls", "typed_config": {
            "@type": DOWNSTREAM_TLS, "require_client_certificate": True,
            "common_tls_context": _tls_common(*server, root)}}
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        "static_resources": {
            "listeners": [{"name": "in", "address": {"socket_address": {"address": "127.0.0.1", "port_value": listen}},
                           "filter_chains": [chain]}],
            "clusters": [{"name": "up", "type": "STATIC", "connect_timeout": "5s",
                          "load_assignment": {"cluster_name": "up", "endpoints": [{"lb_endpoints": [{"endpoint": {
                              "address": {"socket_address": {"address": "127.0.0.1", "port_value": upstream}}}}]}]},
                          "transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": {
                              "@type": UPSTREAM_TLS, "sni": sni, "common_tls_context": _tls_common(*client, root)}}}],
        },
    }


class Floor:
    """The two minimal Envoys in front of the bench's nginx."""

    def __init__(self, work: Path, root: bytes, root_key: bytes, nginx_port: int) -> None:
        self.work = work
        leaf = certs.make_leaf
        gw_name = "gateway.floor.local"
        client = leaf(root, root_key, "client.example.com", [], client=True, key_type="ec256")
        gw_server = leaf(root, root_key, gw_name, [gw_name], key_type="ec256")
        gw_client = leaf(root, root_key, "gateway-client.example.com", [], client=True, key_type="ec256")
        self.port, gw_port = free_port(), free_port()
        self.configs = {
            "sidecar": _proxy(free_port(), self.port, gw_port, gw_name, client, root, None),
            "router": _proxy(free_port(), gw_port, nginx_port, db.HOST, gw_client, root, gw_server),
        }
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self) -> None:
        for role, config in self.configs.items():
            path = self.work / f"floor-{role}.json"
            path.write_text(json.dumps(config))
            os.chmod(path, 0o600)  # it holds private keys
            self.procs[role] = subprocess.Popen(
                [find_envoy(), "-c", str(path), "--concurrency", "1", "-l", "warning", "--disable-hot-restart"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", f"Host: {db.HOST}",
                              f"http://127.0.0.1:{self.port}/"], capture_output=True, text=True).stdout != "200":
            assert time.monotonic() < deadline, "the floor path never answered 200"
            time.sleep(0.2)

    def pids(self) -> dict[str, int]:
        # The wheel's launcher execs Envoy: the process is Envoy's.
        return {role: p.pid for role, p in self.procs.items()}

    def stop(self) -> None:
        for p in self.procs.values():
            p.terminate()
        for p in self.procs.values():
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def measured(url: str, seconds: float, host: str | None, pids: dict[str, int]) -> dict[str, float]:
    before = {role: db.cpu_seconds(pid) for role, pid in pids.items()}
    t0 = time.monotonic()
    res = db.wrk(url, seconds, host=host)
    wall = time.monotonic() - t0
    for role, pid in pids.items():
        res[f"{role}_us"] = (db.cpu_seconds(pid) - before[role]) / wall / res["rps"] * 1e6
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    assert shutil.which("wrk"), "wrk is not installed (apt-get install wrk)"
    with tempfile.TemporaryDirectory() as tmp:
        p = db.Path3(Path(tmp), {})
        floor = Floor(Path(tmp), p.root, p.root_key, p.mtls_port)
        try:
            p.start_nginx(keepalive_requests=1000)
            p.start_exitgate()
            floor.start()
            print(f"# load: {os.getloadavg()}", flush=True)
            rows: dict[str, list[dict[str, float]]] = {"direct": [], "floor": [], "exitgate": []}
            for _ in range(args.rounds):
                rows["direct"].append(measured(p.direct_url(), args.seconds, None, {}))
                rows["floor"].append(measured(f"http://127.0.0.1:{floor.port}/", args.seconds, db.HOST, floor.pids()))
                rows["exitgate"].append(measured(p.full_url(), args.seconds, db.HOST, p.pids()))
            direct = statistics.median(r["rps"] for r in rows["direct"])
            for name, rs in rows.items():
                out: dict[str, Any] = {"path": name, "rps": [round(r["rps"]) for r in rs],
                                       "ratio": round(statistics.median(r["rps"] for r in rs) / direct, 3),
                                       "errors": sum(r["errors"] for r in rs)}
                for role in ("sidecar", "router"):
                    if f"{role}_us" in rs[0]:
                        out[f"{role}_us_per_request"] = round(statistics.median(r[f"{role}_us"] for r in rs), 1)
                print(json.dumps(out), flush=True)
        finally:
            floor.stop()
            p.stop()


if __name__ == "__main__":
    main()
