"""The state directory's layout and the runtime file that lets one exitgate command find what
another (``exitgate up``) is running: proxies, their ports, PIDs and log files."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from exitgate.store import ensure_private_dir, write_private_atomic

DEFAULT_STATE_DIR = ".exitgate"
RUNTIME_FILE = "runtime.json"


def default_state_dir() -> Path:
    return Path(os.environ.get("EXITGATE_HOME", DEFAULT_STATE_DIR))


@dataclass
class ProxyRecord:
    name: str
    namespace: str
    role: str  # "sidecar" or "router"
    node_id: str
    admin_port: int
    log_path: str
    proxy_port: int = 0  # sidecars: the forward-proxy port the workload's HTTP_PROXY points at
    pid: int | None = None
    listen: list[str] = field(default_factory=list)
    # Captured sidecars: the workload's network namespace (``ip netns`` name), where
    # ``exitgate exec`` runs its commands; empty without capture.
    netns: str = ""


@dataclass
class RuntimeInfo:
    pid: int
    xds_port: int
    proxies: list[ProxyRecord]

    def proxy(self, name: str) -> ProxyRecord | None:
        """By name, or ``name.namespace``."""
        for p in self.proxies:
            if name in (p.name, f"{p.name}.{p.namespace}"):
                return p
        return None


class StateDir:
    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def ca_dir(self) -> Path:
        return self.root / "ca"

    @property
    def run_dir(self) -> Path:
        return self.root / "run"

    @property
    def log_dir(self) -> Path:
        return self.root / "logs"

    @property
    def runtime_path(self) -> Path:
        return self.run_dir / RUNTIME_FILE

    def prepare(self) -> None:
        for d in (self.root, self.run_dir, self.log_dir):
            ensure_private_dir(d)

    def write_runtime(self, info: RuntimeInfo) -> None:
        write_private_atomic(self.runtime_path, json.dumps(asdict(info), indent=2).encode())

    def read_runtime(self) -> RuntimeInfo | None:
        """The running control plane's record, or None when none is running."""
        try:
            data = json.loads(self.runtime_path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        info = RuntimeInfo(data["pid"], data["xds_port"], [ProxyRecord(**p) for p in data["proxies"]])
        try:
            os.kill(info.pid, 0)
        except ProcessLookupError:
            return None  # left behind by a control plane that was killed
        except PermissionError:
            pass
        return info

    def clear_runtime(self) -> None:
        self.runtime_path.unlink(missing_ok=True)
