"""What Envoy alone costs on this machine, against the data-path goals of issue 9.

The same topology as ``datapath_bench.py`` (wrk → sidecar → gateway over mutual TLS → nginx over
mutual TLS), three ways, alternating in one run:

- ``direct``: wrk straight to nginx over HTTPS (the goal's denominator);
- ``floor``: two Envoys with static, minimal configuration: an HTTP connection manager and its
  router, one cluster each, the same TLS on each hop (ECDSA P-256 keys, client certificates,
  verification), one worker each as exitgate runs them; no access log, no metrics, no RBAC, no
  xDS. No control plane can give Envoy less to do per request;
- ``exitgate``: the real path under ``exitgate up`` (the mutual TLS origination task).

Rows (``--rows``, all by default), each variant in turn in every round:

- ``throughput``: wrk -t2 -c16 flat out: requests per second, the ratio over ``direct``, and each
  proxy's CPU per request in µs (its vCPU over the rate). The ratio ``floor / direct`` is the
  best any Envoy-based path can do here: a goal above it is a goal about the machine and Envoy,
  not the configuration.
- ``fixed``: about 1,000 requests per second as ``datapath_bench.py`` makes them: each proxy's
  vCPU scaled to 1,000 rps, and the latency added over ``direct`` at p50 / p90 / p99.
- ``handshakes``: nginx closes every connection, so the second proxy originates a TLS handshake
  per request (ECDSA client keys, session resumption as Envoy does it by default): handshakes
  per second per core of that proxy.

Run: .venv/bin/python bench/datapath_floor.py [--seconds 8] [--rounds 3] [--rows throughput,fixed,handshakes]
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


def measured(url: str, seconds: float, host: str | None, pids: dict[str, int],
             lua: Path | None = None) -> dict[str, float]:
    before = {role: db.cpu_seconds(pid) for role, pid in pids.items()}
    t0 = time.monotonic()
    res = db.wrk(url, seconds, host=host, lua=lua)
    wall = time.monotonic() - t0
    for role, pid in pids.items():
        res[f"{role}_vcpu"] = vcpu = (db.cpu_seconds(pid) - before[role]) / wall
        res[f"{role}_us"] = vcpu / res["rps"] * 1e6
    return res


def med(rows: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def report(row: str, rows: dict[str, list[dict[str, float]]]) -> None:
    """One line per variant of ``row``, against ``direct`` where the row has it."""
    direct = rows.get("direct")
    for name, rs in rows.items():
        if name == "direct" and row != "throughput":
            continue
        out: dict[str, Any] = {"row": row, "path": name, "rps": [round(r["rps"]) for r in rs],
                               "errors": sum(r["errors"] for r in rs)}
        if row == "throughput" and direct:
            out["ratio"] = round(med(rs, "rps") / med(direct, "rps"), 3)
        for role in ("sidecar", "router"):
            if f"{role}_us" not in rs[0]:
                continue
            if row == "throughput":
                out[f"{role}_us_per_request"] = round(med(rs, f"{role}_us"), 1)
            elif row == "fixed":
                out[f"{role}_vcpu_per_1000rps"] = round(med(rs, f"{role}_vcpu") * 1000 / med(rs, "rps"), 3)
            elif role == "router":
                out["handshakes_per_router_core"] = round(med(rs, "rps") / med(rs, "router_vcpu"))
        if row == "fixed" and direct:
            for q in ("50", "90", "99"):
                out[f"added_p{q}_ms"] = round(med(rs, f"p{q}_ms") - med(direct, f"p{q}_ms"), 3)
        print(json.dumps(out), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rows", default="throughput,fixed,handshakes")
    args = ap.parse_args()
    wanted = args.rows.split(",")
    assert shutil.which("wrk"), "wrk is not installed (apt-get install wrk)"
    with tempfile.TemporaryDirectory() as tmp:
        p = db.Path3(Path(tmp), {})
        floor = Floor(Path(tmp), p.root, p.root_key, p.mtls_port)
        lua = Path(tmp) / "fixed.lua"
        lua.write_text(db.FIXED_RATE_LUA.format(ms=15))
        try:
            p.start_nginx(keepalive_requests=1000)
            p.start_exitgate()
            floor.start()
            print(f"# load: {os.getloadavg()}", flush=True)
            paths = {"direct": (p.direct_url, None, dict), "floor": (lambda: f"http://127.0.0.1:{floor.port}/",
                                                                      db.HOST, floor.pids),
                     "exitgate": (p.full_url, db.HOST, p.pids)}
            for row in ("throughput", "fixed"):
                if row not in wanted:
                    continue
                rows: dict[str, list[dict[str, float]]] = {name: [] for name in paths}
                for _ in range(args.rounds):
                    for name, (url, host, pids) in paths.items():
                        rows[name].append(measured(url(), args.seconds, host, pids(),
                                                   lua if row == "fixed" else None))
                report(row, rows)
            if "handshakes" in wanted:
                # nginx on the same port, now closing every connection; both paths reach it.
                p.start_nginx(keepalive_requests=1)
                rows = {"floor": [], "exitgate": []}
                for _ in range(args.rounds):
                    for name in rows:
                        url, host, pids = paths[name]
                        rows[name].append(measured(url(), args.seconds, host, pids()))
                report("handshakes", rows)
        finally:
            floor.stop()
            p.stop()


if __name__ == "__main__":
    main()
