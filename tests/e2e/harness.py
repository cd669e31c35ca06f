"""What the end-to-end tests share: a running exitgate (control plane, egress gateway, sidecar)
on free loopback ports, with a DNS stand-in, driven through the real CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from exitgate.capture import support
from exitgate.controlplane import ControlPlane
from exitgate.demo.scenario import wait_applied
from exitgate.envoy.admin import alive  # noqa: F401 (the tests' import of it)
from exitgate.envoy.ports import free_port
from exitgate.mesh import (
    DnsSettings,
    ExternalService,
    GatewayProxy,
    MeshConfig,
    ServicePortMap,
    WorkloadProxy,
    default_egress_gateway,
)
from exitgate.runtime import StateDir

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def make_gateway() -> GatewayProxy:
    g = default_egress_gateway()
    ports = [ServicePortMap(port=p.port, target_port=free_port(), name=p.name, protocol=p.protocol) for p in g.ports]
    return g.model_copy(update={"ports": ports})


def make_mesh(trust_store: Path, dns_port: int, port_map: dict[int, int],
              services: list[ExternalService] | None = None, capture: str = "auto") -> MeshConfig:
    """``capture`` as the mesh file's: "auto" runs workloads captured where this machine can."""
    return MeshConfig(
        capture=capture,  # type: ignore[arg-type]
        system_trust_store=str(trust_store),
        dns=DnsSettings(resolvers=[f"127.0.0.1:{dns_port}"]),
        external_port_map=port_map,
        gateways=[make_gateway()],
        workloads=[WorkloadProxy(name="sleep", service_account="sleep", labels={"app": "sleep"})],
        services=services or [],
    )


@dataclass
class Exitgate:
    """A started control plane; ``cli`` runs the real ``exitgate`` command against it."""

    state_dir: Path
    cp: ControlPlane
    events: list[str] = field(default_factory=list)

    def cli(self, *argv: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        # The state directory travels in EXITGATE_HOME, as a user's shell would set it.
        env = {**os.environ, "EXITGATE_HOME": str(self.state_dir)}
        proc = subprocess.run([sys.executable, "-m", "exitgate.cli.main", *argv], capture_output=True, text=True,
                              timeout=60, env=env)
        if check:
            assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc

    def apply(self, *files: Path) -> str:
        args = [a for f in files for a in ("-f", str(f))]
        out = self.cli("apply", *args, check=True).stdout
        assert wait_applied(self.cp), "proxies did not acknowledge the new configuration"
        return out

    def delete(self, *files: Path) -> str:
        args = [a for f in files for a in ("-f", str(f))]
        out = self.cli("delete", *args, check=True).stdout
        assert wait_applied(self.cp), "proxies did not acknowledge the new configuration"
        return out

    def curl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.cli("exec", "sleep", "--", "curl", "-sS", *args)

    def gateway_log(self) -> str:
        return Path(self.cp.proxies[0].record.log_path).read_text(errors="replace")


CAPTURE_MODES = [pytest.param("off", id="proxy-env"),
                 pytest.param("on", id="captured", marks=pytest.mark.skipif(
                     not support().available, reason=f"capture unavailable: {support().reason}"))]


def stop_process(proc: subprocess.Popen[Any], sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
    """``sig``, then SIGKILL if it has not exited within ``timeout``."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def until(action: Callable[[], str], ok: Callable[[str], bool], timeout: float = 10.0) -> str:
    """Repeat ``action`` until ``ok`` holds (DNS, log flushes) or time runs out; the last output."""
    deadline = time.monotonic() + timeout
    while True:
        out = action()
        if ok(out) or time.monotonic() > deadline:
            return out
        time.sleep(0.25)


def start_exitgate(state_dir: Path, mesh: MeshConfig) -> Exitgate:
    eg = Exitgate(state_dir, ControlPlane(StateDir(state_dir), mesh, lambda m: None))
    eg.cp.emit = eg.events.append
    try:
        eg.cp.start()
        threading.Thread(target=eg.cp.run, kwargs={"poll_s": 0.1}, daemon=True).start()
        assert eg.cp.wait_ready(30), "proxies not ready: " + "\n".join(eg.events)
    except BaseException:
        eg.cp.stop()
        raise
    return eg
