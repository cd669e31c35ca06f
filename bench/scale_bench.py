"""Issue 9's table: N services, from ``exitgate apply`` until the newest host answers through the
sidecar, one more service at N, and the resident memory of the control plane and of each Envoy.

Each service is Istio's pattern through the egress gateway: a ServiceEntry (HTTP 80, a STATIC
endpoint: nginx on loopback), a VirtualService sending it from the sidecar to the gateway
(ISTIO_MUTUAL, as the gateway's server asks) and from the gateway to the service, and a
DestinationRule per host: 3N + 1 resources. ``exitgate up`` runs as its own process (capture off,
requests go to the sidecar's forward-proxy port), the CLI as the user runs it.

Side by side in one run: ``--baseline DIR`` names the ``src`` of another checkout (``git worktree
add /tmp/base <commit>``), run with the same Python; sizes alternate between the two. A size the
baseline cannot serve within ``--timeout`` is recorded as such.

Run: .venv/bin/python bench/scale_bench.py [--baseline /tmp/base/src] [--timeout 300]
     [--variant NAME='{"meshField": value}'] N ...
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
NGINX = """
events {{ worker_connections 1024; }}
http {{
  access_log off;
  server {{ listen 127.0.0.1:{port}; location / {{ return 200 "ok\\n"; }} }}
}}
"""


def service(i: int) -> list[dict[str, Any]]:
    host = f"svc-{i}.example.com"
    gw_host = "istio-egressgateway.istio-system.svc.cluster.local"
    return [
        {"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry", "metadata": {"name": f"se-{i}"},
         "spec": {"hosts": [host], "resolution": "STATIC", "endpoints": [{"address": "127.0.0.1"}],
                  "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}]}},
        {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": f"vs-{i}"},
         "spec": {"hosts": [host], "gateways": ["istio-egressgateway", "mesh"], "http": [
             {"match": [{"gateways": ["mesh"], "port": 80}],
              "route": [{"destination": {"host": gw_host, "port": {"number": 80}}}]},
             {"match": [{"gateways": ["istio-egressgateway"], "port": 80}],
              "route": [{"destination": {"host": host, "port": {"number": 80}}}]}]}},
        {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule", "metadata": {"name": f"dr-{i}"},
         "spec": {"host": host, "trafficPolicy": {"loadBalancer": {"simple": "ROUND_ROBIN"}}}},
    ]


GATEWAY = {"apiVersion": "networking.istio.io/v1", "kind": "Gateway", "metadata": {"name": "istio-egressgateway"},
           "spec": {"selector": {"istio": "egressgateway"}, "servers": [
               {"port": {"number": 80, "name": "https", "protocol": "HTTPS"}, "hosts": ["*"],
                "tls": {"mode": "ISTIO_MUTUAL"}}]}}


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def served(proxy_port: int, host: str) -> bool:
    out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-m", "2", "-x",
                          f"http://127.0.0.1:{proxy_port}", f"http://{host}/"], capture_output=True, text=True)
    return out.stdout == "200"


def knows_capture(src: Path) -> bool:
    """Code from before transparent capture refuses the mesh file's ``capture`` field."""
    return "capture:" in (src / "exitgate" / "mesh.py").read_text()


def measure(src: Path, n: int, nginx_port: int, timeout: float, work: Path,
            mesh_extra: dict[str, Any] | None = None) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(src), "EXITGATE_HOME": str(work / "state")}
    mesh: dict[str, Any] = {"externalPortMap": {80: nginx_port}, **(mesh_extra or {})}
    if knows_capture(src):
        mesh["capture"] = "off"
    (work / "state").mkdir(parents=True)
    (work / "mesh.yaml").write_text(yaml.safe_dump(mesh))
    config = work / "config.yaml"
    config.write_text(yaml.safe_dump_all([GATEWAY, *[d for i in range(n) for d in service(i)]]))
    one_more = work / "one-more.yaml"
    one_more.write_text(yaml.safe_dump_all(service(n)))
    # The command's entry point, as the installed `exitgate` runs it (an older checkout has only main).
    cli = [sys.executable, "-m", "exitgate.cli.fast" if (src / "exitgate" / "cli" / "fast.py").exists() else "exitgate.cli.main"]
    up = subprocess.Popen([*cli, "up", "--mesh", str(work / "mesh.yaml")], env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, start_new_session=True)
    out: dict[str, Any] = {"n": n, "resources": 3 * n + 1}
    try:
        runtime = work / "state" / "run" / "runtime.json"
        deadline = time.monotonic() + 60
        while not runtime.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        info = json.loads(runtime.read_text())
        sidecar = next(p for p in info["proxies"] if p["role"] == "sidecar")
        time.sleep(2)  # proxies connected and idle
        for label, path, host in (("apply", config, f"svc-{n - 1}.example.com"),
                                  ("one_more", one_more, f"svc-{n}.example.com")):
            t0 = time.monotonic()
            subprocess.run([*cli, "apply", "-f", str(path)], env=env, check=True, capture_output=True)
            out[f"{label}_cli_s"] = round(time.monotonic() - t0, 2)
            while not served(sidecar["proxy_port"], host):
                if time.monotonic() - t0 > timeout:
                    out[f"{label}_served_s"] = None
                    return out
                time.sleep(0.05)
            out[f"{label}_served_s"] = round(time.monotonic() - t0, 2)
        info = json.loads(runtime.read_text())
        out["control_plane_mib"] = round(rss_mib(up.pid))
        out["envoy_mib"] = {p["name"]: round(rss_mib(p["pid"])) for p in info["proxies"]}
        return out
    finally:
        stop_up(up)


def stop_up(up: subprocess.Popen[bytes]) -> None:
    """``exitgate up`` stopped as Ctrl-C stops it (its proxies with it), killed after 30 s."""
    os.killpg(up.pid, signal.SIGTERM)
    try:
        up.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(up.pid, signal.SIGKILL)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sizes", nargs="*", type=int, default=[100, 1000])
    ap.add_argument("--baseline", type=Path)
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=JSON",
                    help="also this code with more mesh file fields, e.g. sotw='{\"deltaXds\": false}'")
    args = ap.parse_args()
    sys.path.insert(0, str(SRC))
    from exitgate.demo.standins import NginxServer
    from exitgate.envoy.ports import free_port

    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        nginx = NginxServer(Path(tmp) / "nginx", NGINX.format(port=port), port=port).start()
        try:
            for i, n in enumerate(args.sizes):  # a size given twice is measured twice, alternating
                versions: list[tuple[str, Path, dict[str, Any]]] = [("this", SRC, {})]
                versions += [(v.split("=", 1)[0], SRC, json.loads(v.split("=", 1)[1])) for v in args.variant]
                versions += [("baseline", args.baseline, {})] if args.baseline else []
                for name, src, extra in versions:
                    work = Path(tmp) / f"{name}-{n}-{i}"
                    work.mkdir()
                    row = measure(src, n, port, args.timeout, work, extra)
                    print(json.dumps({"code": name, **row}), flush=True)
        finally:
            nginx.stop()


if __name__ == "__main__":
    main()
