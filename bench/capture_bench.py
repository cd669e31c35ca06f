"""What transparent capture costs against the http_proxy mode, side by side in one run.

The same request (``GET http://bench.example/``, a ServiceEntry with a STATIC endpoint: nginx on
loopback, a 13-byte body) is sent through sleep's sidecar by wrk (-t2 -c16) in the two modes,
and straight to nginx for reference:

* ``proxy-env``: wrk sends absolute-URI requests to the sidecar's forward-proxy port (what
  ``http_proxy`` makes a client do);
* ``captured``: wrk runs in sleep's network namespace and connects to ``bench.example:80``; the
  name resolves through the sidecar's DNS proxy, nftables redirects the connection to
  ``virtualOutbound``, which hands it to ``0.0.0.0_80``.

Rounds alternate the modes (A B A B ...) so that the machine's drift hits both alike; the table
gives each mode's median over the rounds and the ratio to direct nginx. It also times what
capture adds at start: creating a workload's namespace and its rules.

Needs root, nginx and wrk (``apt-get install nginx-light wrk``). Run:
``.venv/bin/python bench/capture_bench.py [--rounds 3] [--seconds 5]``
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from exitgate.api.loader import load_text
from exitgate.capture import NetnsCapture, support
from exitgate.controlplane import ControlPlane
from exitgate.demo.standins import NginxServer
from exitgate.envoy.ports import free_port
from exitgate.mesh import MeshConfig, WorkloadProxy
from exitgate.runtime import StateDir
from exitgate.store import Store

SERVICE_ENTRY = """\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: bench}
spec:
  hosts: [bench.example]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.1}]
"""

NGINX = """
events {{ worker_connections 1024; }}
http {{
  access_log off;
  server {{ listen 127.0.0.1:{port}; location / {{ return 200 "hello, bench\\n"; }} }}
}}
"""

PROXY_LUA = 'wrk.path = "http://bench.example/"\nwrk.headers["Host"] = "bench.example"\n'


def wrk(url: str, seconds: int, netns: str | None = None, script: Path | None = None) -> tuple[float, float, float]:
    """(requests/s, p50 ms, p99 ms) of wrk -t2 -c16 --latency."""
    cmd = ["wrk", "-t2", "-c16", f"-d{seconds}s", "--latency", *(["-s", str(script)] if script else []), url]
    if netns:
        cmd = NetnsCapture.exec_argv(netns, cmd)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]

    def pct(p: str) -> float:
        value, unit = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise RuntimeError(f"wrk saw {errors.group(1)} failed responses:\n{out}")
    return rps, pct("50"), pct("99")


def run_mode(capture: str, work: Path, nginx_port: int) -> ControlPlane:
    state = StateDir(work / f"state-{capture}")
    state.prepare()
    Store(state.root).apply(load_text(SERVICE_ENTRY, "bench.yaml").resources)
    mesh = MeshConfig(capture=capture, external_port_map={80: nginx_port}, access_log=True,  # type: ignore[arg-type]
                      workloads=[WorkloadProxy(name="sleep", service_account="sleep", labels={"app": "sleep"})])
    cp = ControlPlane(state, mesh, lambda m: None)
    cp.start()
    threading.Thread(target=cp.run, kwargs={"poll_s": 0.2}, daemon=True).start()
    if not cp.wait_ready(30):
        cp.stop()
        raise RuntimeError(f"{capture}: proxies not ready")
    return cp


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=5)
    args = ap.parse_args()
    found = support()
    if not found.available or shutil.which("wrk") is None:
        raise SystemExit(f"needs capture and wrk: {found.reason or 'wrk not installed'}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        port = free_port()
        nginx = NginxServer(work / "nginx", NGINX.format(port=port), port=port).start()
        script = work / "proxy.lua"
        script.write_text(PROXY_LUA)
        # What capture adds at start, per workload: its namespace, loopback, route and rules.
        nc = NetnsCapture(work)
        setups = []
        for i in range(5):
            t = time.perf_counter()
            nc.setup(nc.name(f"probe{i}", "bench"))
            setups.append(time.perf_counter() - t)
        nc.cleanup()
        cps = {m: run_mode(m, work, port) for m in ("off", "on")}
        try:
            results: dict[str, list[tuple[float, float, float]]] = {"direct": [], "proxy-env": [], "captured": []}
            for _ in range(args.rounds):
                results["direct"].append(wrk(f"http://127.0.0.1:{port}/", args.seconds))
                side = cps["off"].proxies[-1].record
                results["proxy-env"].append(wrk(f"http://127.0.0.1:{side.proxy_port}", args.seconds, script=script))
                results["captured"].append(wrk("http://bench.example/", args.seconds,
                                               netns=cps["on"].proxies[-1].record.netns))
        finally:
            for cp in cps.values():
                cp.stop()
            nginx.stop()
    direct = statistics.median(r[0] for r in results["direct"])
    print(f"namespace + rules per workload at start: median {statistics.median(setups) * 1000:.1f} ms")
    print(f"wrk -t2 -c16 -d{args.seconds}s, {args.rounds} alternating rounds, medians\n")
    print("| path | requests/s | / direct | p50 ms | p99 ms |")
    print("|---|---|---|---|---|")
    for name, rows in results.items():
        rps = statistics.median(r[0] for r in rows)
        print(f"| {name} | {rps:,.0f} | {rps / direct:.3f} | {statistics.median(r[1] for r in rows):.2f} "
              f"| {statistics.median(r[2] for r in rows):.2f} |")


if __name__ == "__main__":
    main()
