"""Where the time of "one more ServiceEntry at N" goes: the control plane runs in this process
(as ``exitgate up`` runs it, real Envoys), the CLI as the user runs it. N services of
scale_bench.py are applied and served; then one more, and the timeline of that change is read
from the control plane's own records: the CLI's exit, the end of the push (the store's new
version applied), and, for each proxy and type, when the xDS server sent the new version and
when Envoy acknowledged it, then the first 200 through the sidecar.

Run: .venv/bin/python bench/one_more_breakdown.py [N]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

from scale_bench import GATEWAY, NGINX, served, service  # noqa: E402

from exitgate.controlplane import ControlPlane  # noqa: E402
from exitgate.demo.standins import NginxServer  # noqa: E402
from exitgate.envoy.ports import free_port  # noqa: E402
from exitgate.mesh import load_mesh  # noqa: E402
from exitgate.runtime import StateDir  # noqa: E402


PHASES: list[tuple[str, float, float]] = []


def timed(owner: object, attr: str, label: str) -> None:
    """Record each call of ``owner.attr`` in PHASES (wall-clock start and end)."""
    fn = getattr(owner, attr)

    def wrapper(*a: object, **kw: object) -> object:
        t = time.time()
        try:
            return fn(*a, **kw)
        finally:
            PHASES.append((label, t, time.time()))
    setattr(owner, attr, wrapper)


def instrument(cp: ControlPlane) -> None:
    import gc
    started: list[float] = []

    def on_gc(phase: str, info: dict[str, int]) -> None:
        # Full collections only: what walks every live object of the configuration.
        if info["generation"] == 2:
            if phase == "start":
                started.append(time.time())
            elif started:
                PHASES.append(("gc gen2", started.pop(), time.time()))
    gc.callbacks.append(on_gc)
    import exitgate.controlplane as m
    for attr in ("translate_gateway", "translate_sidecar", "xds_resources", "resolve_secrets", "Snapshot"):
        timed(m, attr, attr)
    timed(cp.store, "load", "store.load")
    timed(cp.store, "apply", "store.apply")
    if getattr(cp, "_handoff", None) is not None:  # the apply handed to the control plane, whole
        timed(cp._handoff, "handle", "handoff")
    timed(cp.cache, "set_snapshot", "cache.set_snapshot")
    for attr in ("_use_inventory", "_replan", "_record_change"):
        timed(cp, attr, attr)
    if cp.monitoring is not None:
        timed(cp.monitoring, "read_all", "monitoring.read_all")


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        port = free_port()
        nginx = NginxServer(work / "nginx", NGINX.format(port=port), port=port).start()
        (work / "state").mkdir()
        (work / "mesh.yaml").write_text(yaml.safe_dump({"externalPortMap": {80: port}, "capture": "off"}))
        (work / "config.yaml").write_text(yaml.safe_dump_all([GATEWAY, *[d for i in range(n) for d in service(i)]]))
        (work / "one-more.yaml").write_text(yaml.safe_dump_all(service(n)))
        # The command of this checkout, not the installed one (an editable install is main's).
        env = {**os.environ, "EXITGATE_HOME": str(work / "state"), "PYTHONPATH": str(HERE.parent / "src")}
        cli = [sys.executable, "-m", "exitgate.cli.fast"]  # the installed `exitgate`'s entry point
        mesh, diags = load_mesh(work / "mesh.yaml")
        assert mesh is not None, diags
        cp = ControlPlane(StateDir(work / "state"), mesh, lambda s: None)
        try:
            cp.start()
            instrument(cp)
            threading.Thread(target=cp.run, kwargs={"poll_s": 0.3}, daemon=True).start()
            assert cp.wait_ready(60)
            sidecar = next(p for p in cp.proxies if p.record.role == "sidecar")
            for label, path, host in (("apply", "config.yaml", f"svc-{n - 1}.example.com"),
                                      ("one_more", "one-more.yaml", f"svc-{n}.example.com")):
                PHASES.clear()
                before = cp.applied_version
                t0 = time.time()
                subprocess.run([*cli, "apply", "-f", str(work / path)], env=env, check=True, capture_output=True)
                cli_done = time.time()
                while cp.applied_version == before:
                    time.sleep(0.005)
                pushed = time.time()
                while not served(sidecar.record.proxy_port, host):
                    time.sleep(0.01)
                ok = time.time()
                rows: dict[str, object] = {"cli": round(cli_done - t0, 3), "pushed": round(pushed - t0, 3),
                                           "served": round(ok - t0, 3)}
                assert cp.ads is not None
                for node, st in cp.ads.statuses().items():
                    for url, ts in st.types.items():
                        if ts.sent_time and ts.sent_time >= t0:
                            short = url.rsplit(".", 1)[-1]
                            rows[f"{node.split('~')[2]} {short}"] = (round(ts.sent_time - t0, 3),
                                                                    round((ts.acked_time or 0) - t0, 3))
                rows["phases"] = [(name, round(a - t0, 3), round(b - a, 3)) for name, a, b in PHASES]
                print(json.dumps({label: rows}), flush=True)
        finally:
            cp.stop()
            nginx.stop()


if __name__ == "__main__":
    main()
