"""``NginxServer``: nginx run in the foreground under a private prefix (the end-to-end tests'
mutual-TLS server), and ``find_nginx`` to locate the binary.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from typing import Self


def find_nginx() -> str | None:
    """The nginx binary on PATH or Debian's /usr/sbin/nginx (not on a normal user's PATH)."""
    found = shutil.which("nginx")
    if found:
        return found
    return "/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None


_TEMP_KINDS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


def _prepare_nginx_conf(conf: str, prefix: Path) -> str:
    """Make a rendered nginx.conf runnable as the current user inside ``prefix``.

    Debian's nginx has compiled-in temp and log paths under /var/lib/nginx and /var/log/nginx
    that a normal user cannot write; nginx refuses to start without them. They are pointed into
    the prefix unless the conf sets them itself.
    """

    def has(directive: str) -> bool:
        return re.search(rf"(?m)^\s*{directive}\s", conf) is not None

    http_extra = "".join(
        f"    {kind}_temp_path {prefix / 'tmp' / kind};\n"
        for kind in _TEMP_KINDS
        if not has(f"{kind}_temp_path")
    )
    if not has("access_log"):
        http_extra += f"    access_log {prefix / 'access.log'};\n"
    if http_extra:
        conf = re.sub(r"(?m)^(\s*http\s*\{)", lambda m: m.group(1) + "\n" + http_extra, conf, count=1)
    head = ""
    # Run as root, nginx switches its workers to "nobody", which cannot read the 0600 keys the
    # tests write; as anyone else the directive is ignored with a warning, so only add it as root.
    if os.geteuid() == 0 and not has("user"):
        head += "user root;\n"
    if not re.search(r"(?m)^\s*events\s*\{", conf):
        head += "events {}\n"
    return head + conf


@dataclass(eq=False)
class NginxServer:
    """nginx in the foreground under ``conf_dir`` (its prefix), for end-to-end tests.

    ``conf`` is a rendered nginx.conf without ``daemon``/``pid`` directives (they are given on
    the command line); relative paths in it resolve against ``conf_dir``. ``files`` (e.g.
    ``{"server.key": pem}``) are written there with mode 0600 first. ``start()`` returns once
    ``host:port`` accepts connections.
    """

    conf_dir: Path
    conf: str
    _: KW_ONLY
    port: int
    host: str = "127.0.0.1"
    files: Mapping[str, str | bytes] = field(default_factory=dict)
    nginx_binary: str | None = None
    start_timeout: float = 10.0
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def error_log(self) -> Path:
        return Path(self.conf_dir) / "error.log"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _write(self) -> Path:
        prefix = Path(self.conf_dir).resolve()
        prefix.mkdir(parents=True, exist_ok=True, mode=0o700)
        for kind in _TEMP_KINDS:
            (prefix / "tmp" / kind).mkdir(parents=True, exist_ok=True, mode=0o700)
        for name, data in self.files.items():
            path = prefix / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.unlink(missing_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data.encode() if isinstance(data, str) else data)
        conf_path = prefix / "nginx.conf"
        conf_path.write_text(_prepare_nginx_conf(self.conf, prefix))
        return conf_path

    def start(self) -> Self:
        if self.running:
            raise RuntimeError("nginx already started")
        binary = self.nginx_binary or find_nginx()
        if binary is None:
            raise FileNotFoundError("nginx not found (PATH, /usr/sbin/nginx)")
        conf_path = self._write()
        prefix = conf_path.parent
        error_log = prefix / "error.log"
        directives = f"daemon off; pid {prefix / 'nginx.pid'}; error_log {error_log};"
        # -e: the error log nginx opens before reading the conf (else /var/log/nginx/error.log).
        cmd = [binary, "-c", str(conf_path), "-p", f"{prefix}/", "-e", str(error_log), "-g", directives]
        with open(prefix / "nginx.out", "ab") as out:
            # A new session: nginx's workers share a process group we can signal as a whole if
            # the master does not stop, and Ctrl-C in a terminal does not reach them directly.
            self._proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                detail = error_log.read_text(errors="replace")[-2000:] if error_log.exists() else ""
                self._proc = None
                raise RuntimeError(f"nginx exited at startup: {detail}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"nginx did not listen on {self.host}:{self.port} within {self.start_timeout}s")

    def stop(self, timeout: float = 5.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # fast shutdown; the master waits for its workers
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                # The group is the one start_new_session made for this master: it and its
                # workers, nothing else.
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        else:
            proc.wait()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
