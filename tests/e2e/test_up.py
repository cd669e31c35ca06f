"""``exitgate up`` as a user runs it: a foreground process that starts the proxies, restarts a
proxy that crashes, and stops everything on Ctrl-C (SIGINT) or SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from exitgate.envoy.ports import free_port

from tests.e2e.harness import alive, stop_process

pytestmark = pytest.mark.e2e


def wait_for(cond, timeout: float = 20.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.1)
    return False


def runtime(state: Path) -> dict:  # type: ignore[type-arg]
    try:
        return json.loads((state / "run" / "runtime.json").read_text())  # type: ignore[no-any-return]
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def ready(admin_port: int) -> bool:
    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/ready", timeout=1).read().strip() == b"LIVE"
    except OSError:
        return False


@pytest.fixture
def up(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    state = tmp_path / "state"
    mesh = tmp_path / "mesh.yaml"
    mesh.write_text(yaml.safe_dump({
        "gateways": [{
            "name": "istio-egressgateway", "namespace": "istio-system",
            "labels": {"istio": "egressgateway", "app": "istio-egressgateway"},
            "serviceAccount": "istio-egressgateway-service-account",
            "ports": [{"port": 80, "targetPort": free_port(), "protocol": "HTTP2"},
                      {"port": 443, "targetPort": free_port(), "protocol": "HTTPS"}],
        }],
        "workloads": [{"name": "sleep", "namespace": "default", "serviceAccount": "sleep", "proxyPort": free_port()}],
    }))
    proc = subprocess.Popen([sys.executable, "-m", "exitgate.cli.main", "up", "--state-dir", str(state), "--mesh", str(mesh)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    pids: list[int] = []
    try:
        assert wait_for(lambda: len(runtime(state).get("proxies", [])) == 2 and
                        all(p["pid"] for p in runtime(state)["proxies"])), "up did not start its proxies"
        pids += [p["pid"] for p in runtime(state)["proxies"]]
        yield proc, state
    finally:
        stop_process(proc, signal.SIGINT)
        for p in runtime(state).get("proxies", []):
            pids.append(p["pid"])
        for pid in pids:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_up_serves_then_ctrl_c_stops_everything(up: tuple[subprocess.Popen[str], Path]) -> None:
    proc, state = up
    info = runtime(state)
    assert all(wait_for(lambda p=p: ready(p["admin_port"])) for p in info["proxies"])
    sidecar = next(p for p in info["proxies"] if p["role"] == "sidecar")
    # No ServiceEntry and Istio's default ALLOW_ANY: the sidecar passes a host outside the
    # registry through; ".invalid" never resolves (RFC 6761). Without capture the sidecar
    # resolves it and answers 503; captured, the workload asks the sidecar's DNS proxy, which
    # forwards it upstream, and curl gets no address (exit status 6), as in an Istio pod.
    out = subprocess.run([sys.executable, "-m", "exitgate.cli.main", "exec", "--state-dir", str(state), "sleep", "--",
                          "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "http://unknown.invalid/"],
                         capture_output=True, text=True, timeout=30)
    if sidecar["netns"]:
        assert out.returncode == 6, out.stdout + out.stderr
    else:
        assert out.stdout == "503", out.stdout + out.stderr
        assert sidecar["proxy_port"] > 0
    pids = [p["pid"] for p in info["proxies"]]
    proc.send_signal(signal.SIGINT)
    proc.wait(15)
    assert proc.returncode == 0, proc.stdout.read() if proc.stdout else ""
    assert not any(alive(pid) for pid in pids)
    assert not (state / "run" / "runtime.json").exists()


def test_a_crashed_proxy_is_restarted_and_configured_again(up: tuple[subprocess.Popen[str], Path]) -> None:
    proc, state = up
    gw = next(p for p in runtime(state)["proxies"] if p["role"] == "router")
    assert wait_for(lambda: ready(gw["admin_port"]))
    os.kill(gw["pid"], signal.SIGKILL)
    assert wait_for(lambda: (runtime(state) and next(p for p in runtime(state)["proxies"] if p["role"] == "router")["pid"]
                             not in (None, gw["pid"])), timeout=20), "the gateway was not restarted"
    assert wait_for(lambda: ready(gw["admin_port"]), timeout=20)
    # It got its configuration again over xDS: the clusters of the mesh are there.
    clusters = urllib.request.urlopen(f"http://127.0.0.1:{gw['admin_port']}/clusters", timeout=5).read().decode()
    assert "outbound|80||istio-egressgateway.istio-system.svc.cluster.local" in clusters
    proc.send_signal(signal.SIGTERM)
    proc.wait(15)
    assert proc.returncode == 0


def test_a_killed_control_plane_is_replaced_without_a_gap(up: tuple[subprocess.Popen[str], Path],
                                                           tmp_path: Path) -> None:
    """SIGKILL leaves the proxies serving their last configuration (Istio's data plane without
    istiod); the next ``up`` of the state directory starts its own, and stops the old ones only
    once its own are ready. One ``up`` per state directory; a stop survives a second signal."""
    proc, state = up
    old = runtime(state)["proxies"]
    assert all(wait_for(lambda p=p: ready(p["admin_port"])) for p in old)
    proc.kill()
    proc.wait(10)
    time.sleep(1)
    assert all(alive(p["pid"]) and ready(p["admin_port"]) for p in old), "the data plane died with the control plane"
    cmd = [sys.executable, "-m", "exitgate.cli.main", "up", "--state-dir", str(state), "--mesh", str(tmp_path / "mesh.yaml")]
    second = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    new: list[dict] = []  # type: ignore[type-arg]
    try:
        assert wait_for(lambda: runtime(state).get("pid") == second.pid
                        and all(p["pid"] not in (None, o["pid"]) for p, o in zip(runtime(state)["proxies"], old)))
        new = runtime(state)["proxies"]
        # The old proxies go once the new ones are ready: never a moment with neither.
        assert wait_for(lambda: not any(alive(p["pid"]) for p in old), timeout=40), "old proxies still running"
        assert all(ready(p["admin_port"]) for p in new)
        third = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        assert third.returncode == 1 and "already running" in third.stdout + third.stderr, third.stdout + third.stderr
        # Two signals in a row: the stop still completes, within 10 s, leaving nothing running.
        started = time.monotonic()
        second.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        second.send_signal(signal.SIGINT)
        second.wait(15)
        assert time.monotonic() - started < 10
        assert not any(alive(p["pid"]) for p in new)
    finally:
        if second.poll() is None:
            second.kill()
            second.wait()
        for p in [*old, *new]:
            if alive(p["pid"]):
                os.kill(p["pid"], signal.SIGKILL)
