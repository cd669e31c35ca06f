"""Issue 9's data-path figures, side by side in one run: wrk through the whole path of Istio's
mutual TLS origination task (sidecar, mutual TLS with SPIFFE identities to the egress gateway,
mutual TLS with the client credential to nginx) against wrk straight to nginx over HTTPS.

Rows:
- ``throughput``: wrk -t2 -c16, requests per second, the full path over direct nginx HTTPS.
- ``fixed rate``: wrk at about 1,000 requests per second (16 connections, each pausing between
  requests with wrk's ``delay()``): the CPU each proxy used (vCPU, scaled to exactly 1,000 rps)
  and the latency wrk saw, full path minus direct at p50 / p90 / p99.
- ``handshakes``: nginx closes every connection (``keepalive_requests 1``), so the gateway
  originates a TLS handshake for every request: handshakes per second per gateway core, with
  the share nginx saw resumed (``$ssl_session_reused``), for an RSA-2048 and an ECDSA P-256
  client credential.
Each figure is measured for the mesh hop in HTTP/1.1 (Istio's default for an ``https`` port)
and in HTTP/2 (``h2UpgradePolicy: UPGRADE`` in the gateway's DestinationRule).

Everything is real: ``exitgate up`` as its own process (capture off: wrk talks to the sidecar's
forward-proxy port with the host in the Host header), the CLI, Envoy, nginx, wrk. The machine
has 2 cores shared by wrk, nginx and both proxies: compare the ratios, not the absolute numbers.

Run: .venv/bin/python bench/datapath_bench.py [--seconds 10] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from exitgate.ca import certs  # noqa: E402
from exitgate.demo.standins import NginxServer  # noqa: E402
from exitgate.envoy.ports import free_port  # noqa: E402

HOST = "my-nginx.mesh-external.svc.cluster.local"
GW_HOST = "istio-egressgateway.istio-system.svc.cluster.local"
MTLS = ROOT / "examples" / "mtls-origination"
CLI = [sys.executable, "-m", "exitgate.cli.main"]

NGINX = """
worker_processes 1;
events {{ worker_connections 4096; }}
http {{
  log_format hs '$connection_requests $ssl_session_reused';
  access_log {access};
  keepalive_requests {keepalive_requests};
  server {{
    listen 127.0.0.1:{mtls} ssl;
    server_name {host};
    ssl_certificate server.crt;
    ssl_certificate_key server.key;
    ssl_client_certificate ca.crt;
    ssl_verify_client on;
    ssl_session_cache shared:SSL:10m;
    location / {{ return 200 "ok\\n"; }}
  }}
  server {{
    listen 127.0.0.1:{direct} ssl;
    server_name {host};
    ssl_certificate server.crt;
    ssl_certificate_key server.key;
    location / {{ return 200 "ok\\n"; }}
  }}
}}
"""

# wrk at a fixed rate: each connection pauses so that 16 connections make about 1,000 rps.
FIXED_RATE_LUA = "function delay() return {ms} end\n"


def gateway_dr(h2: bool) -> dict[str, Any]:
    port: dict[str, Any] = {"port": {"number": 443}, "tls": {"mode": "ISTIO_MUTUAL", "sni": HOST}}
    if h2:
        port["connectionPool"] = {"http": {"h2UpgradePolicy": "UPGRADE"}}
    return {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
            "metadata": {"name": "egressgateway-for-nginx"},
            "spec": {"host": GW_HOST, "subsets": [{"name": "nginx", "trafficPolicy": {"portLevelSettings": [port]}}]}}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(url: str, seconds: float, connections: int = 16, host: str | None = None,
        lua: Path | None = None) -> dict[str, float]:
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{seconds:g}s", "--latency"]
    if host:
        cmd += ["-H", f"Host: {host}"]
    if lua:
        cmd += ["-s", str(lua)]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout
    res: dict[str, float] = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}  # type: ignore[union-attr]
    for pct in ("50", "90", "99"):
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        assert m, out
        res[f"p{pct}_ms"] = float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    res["errors"] = float(errors.group(1)) if errors else 0.0
    if socket_errors:
        res["errors"] += sum(int(n) for n in re.findall(r"\d+", socket_errors.group(1)))
    return res


class Path3:
    """nginx, exitgate up and the task, on free loopback ports."""

    def __init__(self, work: Path, mesh_extra: dict[str, Any]) -> None:
        self.work = work
        self.mesh_extra = mesh_extra
        self.root, self.root_key = certs.make_root("example.com", "example Inc.", key_type="ec256")
        self.server, self.server_key = certs.make_leaf(self.root, self.root_key, HOST, [HOST], key_type="ec256")
        self.mtls_port, self.direct_port, self.proxy_port = free_port(), free_port(), free_port()
        self.nginx: NginxServer | None = None
        self.access = work / "nginx-access.log"
        self.env = {**os.environ, "EXITGATE_HOME": str(work / "state")}
        self.up: subprocess.Popen[bytes] | None = None

    def start_nginx(self, keepalive_requests: int, log: bool = False) -> None:
        if self.nginx is not None:
            self.nginx.stop()
        self.access.unlink(missing_ok=True)
        conf = NGINX.format(mtls=self.mtls_port, direct=self.direct_port, host=HOST,
                            keepalive_requests=keepalive_requests,
                            access=f"{self.access} hs" if log else "off")
        self.nginx = NginxServer(self.work / "nginx", conf, port=self.mtls_port,
                                 files={"server.crt": self.server, "server.key": self.server_key, "ca.crt": self.root})
        self.nginx.start()

    def start_exitgate(self) -> None:
        mesh = self.work / "mesh.yaml"
        mesh.write_text(yaml.safe_dump({
            "capture": "off",
            "workloads": [{"name": "sleep", "serviceAccount": "sleep", "labels": {"app": "sleep"},
                           "proxyPort": self.proxy_port}],
            "gateways": [{"name": "istio-egressgateway", "namespace": "istio-system",
                          "labels": {"istio": "egressgateway", "app": "istio-egressgateway"},
                          "serviceAccount": "istio-egressgateway-service-account",
                          "ports": [{"port": 80, "targetPort": free_port(), "protocol": "HTTP2"},
                                    {"port": 443, "targetPort": free_port(), "protocol": "HTTPS"}]}],
            "services": [{"name": "my-nginx", "namespace": "mesh-external",
                          "ports": [{"port": 443, "targetPort": self.mtls_port, "protocol": "HTTPS"}]}],
            **self.mesh_extra,
        }))
        self.up = subprocess.Popen([*CLI, "up", "--mesh", str(mesh)], env=self.env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, start_new_session=True)
        runtime = self.work / "state" / "run" / "runtime.json"
        deadline = time.monotonic() + 60
        while not (runtime.exists() and all(p.get("pid") for p in json.loads(runtime.read_text())["proxies"])):
            assert time.monotonic() < deadline, "up did not start"
            time.sleep(0.2)
        self.credential("ec256")
        self.apply(MTLS / "01-gateway-and-destinationrule.yaml", MTLS / "02-virtualservice.yaml", wait=False)
        self.apply(MTLS / "03-originate-mtls.yaml", namespace="istio-system")

    def pids(self) -> dict[str, int]:
        info = json.loads((self.work / "state" / "run" / "runtime.json").read_text())
        return {p["role"]: p["pid"] for p in info["proxies"]}

    def apply(self, *files: Path, namespace: str | None = None, wait: bool = True) -> None:
        args = [a for f in files for a in ("-f", str(f))] + (["-n", namespace] if namespace else [])
        subprocess.run([*CLI, "apply", *args], env=self.env, check=True, capture_output=True)
        if wait:
            self.wait_served()

    def credential(self, key_type: str) -> None:
        crt, key = certs.make_leaf(self.root, self.root_key, "client.example.com", [], client=True,
                                   key_type=key_type)  # type: ignore[arg-type]
        d = self.work / f"client-{key_type}"
        d.mkdir(exist_ok=True)
        for name, data in (("tls.crt", crt), ("tls.key", key), ("ca.crt", self.root)):
            (d / name).unlink(missing_ok=True)
            certs.write_private(d / name, data)
        subprocess.run([*CLI, "create", "secret", "generic", "client-credential", "-n", "istio-system",
                        f"--from-file=tls.key={d / 'tls.key'}", f"--from-file=tls.crt={d / 'tls.crt'}",
                        f"--from-file=ca.crt={d / 'ca.crt'}"], env=self.env, check=True, capture_output=True)
        time.sleep(1.5)  # the control plane polls; the gateway gets the secret, then new connections use it

    def wait_served(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            r = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", f"Host: {HOST}",
                                f"http://127.0.0.1:{self.proxy_port}/"], capture_output=True, text=True)
            if r.stdout == "200":
                time.sleep(1)  # every proxy has the configuration, not just the one that answered
                return
            assert time.monotonic() < deadline, "the task never answered 200"
            time.sleep(0.2)

    def stop(self) -> None:
        if self.up is not None and self.up.poll() is None:
            os.killpg(self.up.pid, signal.SIGTERM)
            try:
                self.up.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.up.pid, signal.SIGKILL)
        if self.nginx is not None:
            self.nginx.stop()

    # ---- the measurements

    def full_url(self) -> str:
        return f"http://127.0.0.1:{self.proxy_port}/"

    def direct_url(self) -> str:
        return f"https://127.0.0.1:{self.direct_port}/"

    def measured(self, url: str, seconds: float, host: str | None, lua: Path | None = None) -> dict[str, float]:
        pids = self.pids()
        before = {role: cpu_seconds(pid) for role, pid in pids.items()}
        t0 = time.monotonic()
        res = wrk(url, seconds, host=host, lua=lua)
        wall = time.monotonic() - t0
        for role, pid in pids.items():
            res[f"{role}_vcpu"] = (cpu_seconds(pid) - before[role]) / wall
        return res


def median(rows: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--mesh", default="{}", help="more mesh file fields, as JSON (e.g. '{\"accessLog\": false}')")
    ap.add_argument("--only", choices=("throughput", "all"), default="all")
    args = ap.parse_args()
    assert shutil.which("wrk"), "wrk is not installed (apt-get install wrk)"
    with tempfile.TemporaryDirectory() as tmp:
        p = Path3(Path(tmp), json.loads(args.mesh))
        try:
            p.start_nginx(keepalive_requests=1000)
            p.start_exitgate()
            lua = Path(tmp) / "fixed.lua"
            lua.write_text(FIXED_RATE_LUA.format(ms=15))
            print(f"load: {os.getloadavg()}", flush=True)
            for h2 in (False, True):
                hop = "HTTP/2" if h2 else "HTTP/1.1"
                dr = Path(tmp) / "gw-dr.yaml"
                dr.write_text(yaml.safe_dump(gateway_dr(h2)))
                p.apply(dr)
                thr: dict[str, list[dict[str, float]]] = {"direct": [], "full": []}
                fixed: dict[str, list[dict[str, float]]] = {"direct": [], "full": []}
                for _ in range(args.rounds):  # alternate, so that noise hits both alike
                    thr["direct"].append(p.measured(p.direct_url(), args.seconds, None))
                    thr["full"].append(p.measured(p.full_url(), args.seconds, HOST))
                    if args.only == "throughput":
                        continue
                    fixed["direct"].append(p.measured(p.direct_url(), args.seconds, None, lua))
                    fixed["full"].append(p.measured(p.full_url(), args.seconds, HOST, lua))
                ratio = median(thr["full"], "rps") / median(thr["direct"], "rps")
                print(json.dumps({"row": "throughput", "mesh_hop": hop, "direct_rps": round(median(thr["direct"], "rps")),
                                  "full_rps": round(median(thr["full"], "rps")), "ratio": round(ratio, 3),
                                  "sidecar_vcpu": round(median(thr["full"], "sidecar_vcpu"), 2),
                                  "gateway_vcpu": round(median(thr["full"], "router_vcpu"), 2),
                                  "errors": sum(r["errors"] for r in thr["full"])}), flush=True)
                if args.only == "throughput":
                    continue
                rps = median(fixed["full"], "rps")
                print(json.dumps({
                    "row": "fixed rate", "mesh_hop": hop, "rps": round(rps),
                    "sidecar_vcpu_per_1000rps": round(median(fixed["full"], "sidecar_vcpu") * 1000 / rps, 3),
                    "gateway_vcpu_per_1000rps": round(median(fixed["full"], "router_vcpu") * 1000 / rps, 3),
                    **{f"added_p{q}_ms": round(median(fixed["full"], f"p{q}_ms") - median(fixed["direct"], f"p{q}_ms"), 3)
                       for q in ("50", "90", "99")},
                    "direct_p50_ms": round(median(fixed["direct"], "p50_ms"), 3),
                    "errors": sum(r["errors"] for r in fixed["full"])}), flush=True)
            if args.only == "throughput":
                return
            # Handshakes: nginx closes every connection; the mesh hop stays as last measured.
            p.start_nginx(keepalive_requests=1, log=True)
            for key_type in ("rsa2048", "ec256"):
                p.credential(key_type)
                rows = [p.measured(p.full_url(), args.seconds, HOST) for _ in range(args.rounds)]
                lines = p.access.read_text().split("\n")[-2000:-1]
                reused = sum(1 for line in lines if line.endswith(" r")) / max(1, len(lines))
                gw = median(rows, "router_vcpu")
                print(json.dumps({"row": "handshakes", "client_key": key_type, "rps": round(median(rows, "rps")),
                                  "gateway_vcpu": round(gw, 3),
                                  "handshakes_per_gateway_core": round(median(rows, "rps") / gw),
                                  "resumed_share": round(reused, 3),
                                  "new_connection_per_request": all(line.startswith("1 ") for line in lines),
                                  "errors": sum(r["errors"] for r in rows)}), flush=True)
        finally:
            p.stop()


if __name__ == "__main__":
    main()
