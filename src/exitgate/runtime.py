"""The state directory's layout and the runtime file that lets one exitgate command find what
another (``exitgate up``) is running: proxies, their ports, PIDs and log files."""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from exitgate.pids import alive
from exitgate.privatefs import ensure_private_dir, write_private_atomic

DEFAULT_STATE_DIR = ".exitgate"
RUNTIME_FILE = "runtime.json"
UP_LOCK = "up.lock"


def default_state_dir() -> Path:
    return Path(os.environ.get("EXITGATE_HOME", DEFAULT_STATE_DIR))


class NoStateDir(RuntimeError):
    """No state directory was named or found: nothing is created behind the user's back."""


def user_dir() -> Path:
    """The per-user directory (XDG's state home) that records which ``up`` is running."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "exitgate"


def _current_file() -> Path:
    return user_dir() / "current.json"


def register_current(root: Path, pid: int) -> None:
    """``up`` records its state directory, so commands run from elsewhere find it (kubectl's
    current context)."""
    try:
        ensure_private_dir(user_dir())
        write_private_atomic(_current_file(), json.dumps({"state_dir": str(root.resolve()), "pid": pid}).encode())
    except OSError:
        pass  # a read-only home: commands then need --state-dir or EXITGATE_HOME


def clear_current(pid: int) -> None:
    try:
        if json.loads(_current_file().read_text()).get("pid") == pid:
            _current_file().unlink()
    except (OSError, ValueError):
        pass


def _running_current() -> Path | None:
    try:
        data = json.loads(_current_file().read_text())
    except (OSError, ValueError):
        return None
    root = Path(data.get("state_dir", ""))
    return root if isinstance(data.get("pid"), int) and alive(data["pid"]) and root.is_dir() else None


def _nearest(start: Path) -> Path | None:
    for d in (start, *start.parents):
        if (d / DEFAULT_STATE_DIR).is_dir():
            return d / DEFAULT_STATE_DIR
    return None


def user_default_state_dir() -> Path:
    """The per-user state directory (kubectl's ~/.kube/config): where `up` keeps its state when
    no other is named or found."""
    return user_dir() / "default"


def resolve_state_dir(explicit: Path | None, *, for_up: bool = False) -> Path:
    """Which state directory a command means, the way kubectl finds its context: the one named
    (``--state-dir``, or ``EXITGATE_HOME``); else ``.exitgate`` in this directory or the nearest
    parent that has one (a project's own); else the one the running ``up`` records; else the
    per-user default. ``up`` creates the per-user default when none of these exists; every other
    command says so instead of starting an empty store."""
    if explicit is not None:
        return explicit
    if os.environ.get("EXITGATE_HOME"):
        return Path(os.environ["EXITGATE_HOME"])
    found = _nearest(Path.cwd())
    if found is not None:
        return found
    running = _running_current()
    if running is not None:
        return running
    default = user_default_state_dir()
    if for_up or default.is_dir():
        return default
    raise NoStateDir(f"no exitgate state directory here: none named (--state-dir, EXITGATE_HOME), no {DEFAULT_STATE_DIR} "
                     f"in {Path.cwd()} or its parents, no `exitgate up` running and no per-user default ({default}). "
                     "Start one with `exitgate up`, or name the state directory")


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
    # The gateway (or workload) this proxy is a replica of: ``logs istio-egressgateway`` picks
    # the first of its replicas, as ``kubectl logs deploy/NAME`` does.
    deployment: str = ""


@dataclass
class RuntimeInfo:
    pid: int
    xds_port: int
    proxies: list[ProxyRecord]
    # The control plane's monitoring port (exitgate.monitoring); 0 before it listens.
    monitoring_port: int = 0

    def proxy(self, name: str) -> ProxyRecord | None:
        """By name, or ``name.namespace``."""
        for p in self.proxies:
            if name in (p.name, f"{p.name}.{p.namespace}"):
                return p
        for p in self.proxies:
            if p.deployment and name in (p.deployment, f"{p.deployment}.{p.namespace}"):
                return p
        return None


class AlreadyRunning(RuntimeError):
    pass


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

    def _read_record(self) -> RuntimeInfo | None:
        try:
            data = json.loads(self.runtime_path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        return RuntimeInfo(data["pid"], data["xds_port"], [ProxyRecord(**p) for p in data["proxies"]],
                           data.get("monitoring_port", 0))

    def orphans(self) -> list[ProxyRecord]:
        """PIDs of Envoys a control plane of this state directory started and left running when
        it was killed (its record is still here, its PID is gone). They keep serving their last
        configuration until the next ``up`` has its own proxies ready, then it stops them."""
        info = self._read_record()
        if info is None or alive(info.pid):
            return []
        out = []
        for p in info.proxies:
            if p.pid is None:
                continue
            try:
                cmdline = Path(f"/proc/{p.pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            # Ours: an Envoy started with a bootstrap file of this state directory (relative
            # paths are the process's own: resolved against its working directory).
            try:
                cwd = os.readlink(f"/proc/{p.pid}/cwd")
            except OSError:
                continue
            mine = self.run_dir.resolve()
            if any(arg.endswith(b".bootstrap.json") and (Path(cwd) / arg.decode(errors="replace")).resolve().parent == mine
                   for arg in cmdline):
                out.append(p)
        return out

    @contextmanager
    def up_lock(self) -> Iterator[None]:
        """Held by the one ``up`` of this state directory for as long as it runs (the kernel
        releases it when the process dies, however it dies)."""
        ensure_private_dir(self.run_dir)
        fd = os.open(self.run_dir / UP_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise AlreadyRunning(f"exitgate is already running with state directory {self.root}") from None
            yield
        finally:
            os.close(fd)

    def read_runtime(self) -> RuntimeInfo | None:
        """The running control plane's record, or None when none is running."""
        info = self._read_record()
        if info is None:
            return None
        try:
            os.kill(info.pid, 0)
        except ProcessLookupError:
            return None  # left behind by a control plane that was killed
        except PermissionError:
            pass
        return info

    def clear_runtime(self) -> None:
        self.runtime_path.unlink(missing_ok=True)
