"""Stand-ins for the external world: DNS, an HTTP redirector, an HTTPS site, and nginx.

Istio's egress examples talk to ``edition.cnn.com``; the demo and the tests must not. These
servers play its parts on 127.0.0.1: ``DnsStandIn`` answers for the external names,
``RedirectServer`` answers port 80 the way edition.cnn.com does (301 to https), and
``TlsPageServer`` or nginx (``NginxServer``, the end-to-end tests' mutual-TLS server) serve the
page over TLS.

Each stand-in is a dataclass holding its settings; ``start()`` binds (port 0 picks a free port,
written back to ``port``) and serves from background threads, ``stop()`` closes the listening
sockets and any open connections and joins the threads, so a test can start and stop them
freely. Nothing runs at import time.
"""

from __future__ import annotations

import errno
import html
import ipaddress
import os
import re
import shutil
import signal
import socket
import socketserver
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import KW_ONLY, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlsplit

from dnslib import AAAA, QTYPE, RCODE, RR, A, DNSRecord
from dnslib.server import DNSHandler
from dnslib.server import TCPServer as DnsTCPServer
from dnslib.server import UDPServer as DnsUDPServer

DEFAULT_PAGE = (
    "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>exitgate stand-in</title></head>\n"
    "<body><h1>Hello from the external service</h1>\n"
    "<p>Served over TLS by an exitgate stand-in on the loopback interface.</p></body></html>\n"
)

# How long a connection may sit idle (or a TLS handshake may take) before its thread gives up;
# bounds how long a stuck client can hold a thread after stop().
_IO_TIMEOUT_S = 10.0
_JOIN_TIMEOUT_S = 5.0


def _serve(server: socketserver.BaseServer, name: str) -> threading.Thread:
    # Short poll interval: shutdown() waits for the loop to notice, and tests stop servers often.
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=name, daemon=True
    )
    thread.start()
    return thread


def _halt(server: socketserver.BaseServer, thread: threading.Thread) -> None:
    if thread.is_alive():
        server.shutdown()
        thread.join(_JOIN_TIMEOUT_S)
    server.server_close()


def _host_without_port(host_header: str) -> str:
    host = host_header.strip()
    if host.startswith("["):  # [v6]:port
        end = host.find("]")
        return host[: end + 1] if end != -1 else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


# ---------------------------------------------------------------------------------------- DNS


def _dns_key(name: str) -> str:
    return name.strip().rstrip(".").lower()


class _QuietDnsLogger:
    """dnslib logs every packet to stdout by default; the stand-in records queries instead."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("log_"):
            return lambda *args: None
        raise AttributeError(name)


class _StaticResolver:
    """Answers from a fixed name -> address table; called from the servers' handler threads."""

    def __init__(self, records: Mapping[str, str], ttl: int, on_query: Any) -> None:
        self._records = {_dns_key(k): ipaddress.ip_address(v) for k, v in records.items()}
        self._ttl = ttl
        self._on_query = on_query

    def resolve(self, request: DNSRecord, handler: Any) -> DNSRecord:
        reply = request.reply()
        question = request.q
        name = _dns_key(str(question.qname))
        self._on_query(name, QTYPE.get(question.qtype, str(question.qtype)))
        address = self._records.get(name)
        if address is None:
            reply.header.rcode = RCODE.NXDOMAIN
        elif address.version == 4 and question.qtype in (QTYPE.A, QTYPE.ANY):
            reply.add_answer(RR(question.qname, QTYPE.A, rdata=A(str(address)), ttl=self._ttl))
        elif address.version == 6 and question.qtype in (QTYPE.AAAA, QTYPE.ANY):
            reply.add_answer(RR(question.qname, QTYPE.AAAA, rdata=AAAA(str(address)), ttl=self._ttl))
        # Otherwise NOERROR with no answer ("no data"): the name exists, only not with this
        # type. NXDOMAIN here would tell a resolver asking AAAA first that the name is unknown.
        return reply


@dataclass(eq=False)
class DnsStandIn:
    """A DNS server (UDP and TCP on the same port) answering A/AAAA for ``records``.

    Names match case-insensitively, with or without the trailing dot; any other name gets
    NXDOMAIN. Every question is recorded in ``queries`` as (name, type).
    """

    records: Mapping[str, str]
    host: str = "127.0.0.1"
    port: int = 0
    ttl: int = 30
    _serving: list[tuple[socketserver.BaseServer, threading.Thread]] = field(
        default_factory=list, init=False, repr=False
    )
    _queries: list[tuple[str, str]] = field(default_factory=list, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    @property
    def queries(self) -> list[tuple[str, str]]:
        with self._lock:
            return list(self._queries)

    def _record(self, name: str, qtype: str) -> None:
        with self._lock:
            self._queries.append((name, qtype))

    def _bind(self) -> tuple[DnsUDPServer, DnsTCPServer]:
        # The UDP port the kernel picks may be taken for TCP; with port 0, try again.
        attempts = 20 if self.port == 0 else 1
        for attempt in range(attempts):
            udp = DnsUDPServer((self.host, self.port), DNSHandler)
            try:
                tcp = DnsTCPServer((self.host, int(udp.server_address[1])), DNSHandler)
            except OSError as exc:
                udp.server_close()
                if exc.errno != errno.EADDRINUSE or attempt == attempts - 1:
                    raise
                continue
            return udp, tcp
        raise AssertionError("unreachable")

    def start(self) -> Self:
        if self._serving:
            raise RuntimeError("DNS stand-in already started")
        resolver = _StaticResolver(self.records, self.ttl, self._record)
        udp, tcp = self._bind()
        for server in (udp, tcp):
            server.resolver = resolver  # dnslib's DNSHandler reads these two attributes
            server.logger = _QuietDnsLogger()
        self.port = int(udp.server_address[1])
        self._serving = [(udp, _serve(udp, f"dns-udp-{self.port}")), (tcp, _serve(tcp, f"dns-tcp-{self.port}"))]
        return self

    def stop(self) -> None:
        serving, self._serving = self._serving, []
        for server, thread in serving:
            _halt(server, thread)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ----------------------------------------------------------------------------------- HTTP(S)


@dataclass(frozen=True)
class SeenRequest:
    method: str
    host: str  # the Host header as received
    path: str
    client_cert_subject: str = ""


class _StandInHTTPServer(ThreadingHTTPServer):
    """ThreadingHTTPServer that can close its open connections and join their threads on stop.

    Keep-alive clients (Envoy's connection pools) hold connections open; without this, stop()
    would leave handler threads blocked on those sockets.
    """

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self._conns: set[socket.socket] = set()
        self._workers: set[threading.Thread] = set()
        self._state_lock = threading.Lock()
        self.seen: list[SeenRequest] = []
        super().__init__(address, handler)

    def track(self, sock: socket.socket) -> None:
        with self._state_lock:
            self._conns.add(sock)

    def untrack(self, sock: socket.socket) -> None:
        with self._state_lock:
            self._conns.discard(sock)

    def record(self, seen: SeenRequest) -> None:
        with self._state_lock:
            self.seen.append(seen)

    def seen_requests(self) -> list[SeenRequest]:
        with self._state_lock:
            return list(self.seen)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        with self._state_lock:
            self._workers.add(threading.current_thread())
            self._conns.add(request)
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._state_lock:
                self._workers.discard(threading.current_thread())
                self._conns.discard(request)

    def close_connections(self) -> None:
        with self._state_lock:
            conns, workers = list(self._conns), list(self._workers)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked reading from it
            except OSError:
                pass
        for worker in workers:
            worker.join(_JOIN_TIMEOUT_S)


class _TlsHTTPServer(_StandInHTTPServer):
    """Does each TLS handshake in the connection's own thread, not in the accept loop, so one
    slow or broken client cannot stall the server."""

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        context: ssl.SSLContext,
    ) -> None:
        self.context = context
        super().__init__(address, handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(_IO_TIMEOUT_S)
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return  # failed handshake (e.g. no client certificate): nothing to answer
        self.track(tls)
        try:
            handler: Any = self.RequestHandlerClass
            handler(tls, client_address, self)
        finally:
            self.untrack(tls)
            tls.close()


class _StandInHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a real site
    server_version = "exitgate-standin"
    timeout = _IO_TIMEOUT_S
    server: _StandInHTTPServer

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:
        pass  # requests are recorded in server.seen; stderr noise helps nobody in tests

    def _drain_body(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        if length > 0:
            self.rfile.read(length)

    def _target(self) -> tuple[str, str]:
        """(host without port, path) of the request, absolute-form or origin-form."""
        if self.path.startswith(("http://", "https://")):
            parts = urlsplit(self.path)
            path = parts.path or "/"
            return _host_without_port(parts.netloc), path + (f"?{parts.query}" if parts.query else "")
        host = self.headers.get("host") or self.server.server_address[0]
        return _host_without_port(str(host)), self.path

    def _send(self, status: int, body: bytes, headers: Mapping[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("content-type", "text/html; charset=utf-8")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


class _RedirectHandler(_StandInHandler):
    def _redirect(self) -> None:
        self._drain_body()
        host, path = self._target()
        self.server.record(SeenRequest(self.command, self.headers.get("host", ""), path))
        location = f"https://{host}{path}"
        body = (
            "<html><head><title>301 Moved Permanently</title></head>"
            f'<body><a href="{html.escape(location)}">Moved Permanently</a></body></html>\n'
        ).encode()
        self._send(301, body, {"location": location})

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _redirect


def _peer_subject(sock: Any) -> str:
    cert: dict[str, Any] | None = sock.getpeercert() if isinstance(sock, ssl.SSLSocket) else None
    if not cert:
        return ""
    parts = [f"{k}={v}" for rdn in cert.get("subject", ()) for k, v in rdn]
    uris = [v for kind, v in cert.get("subjectAltName", ()) if kind == "URI"]
    return ",".join(parts + [f"URI={u}" for u in uris])


class _PageHandler(_StandInHandler):
    page: bytes = b""

    def _page(self) -> None:
        self._drain_body()
        subject = _peer_subject(self.connection)
        _, path = self._target()
        self.server.record(SeenRequest(self.command, self.headers.get("host", ""), path, subject))
        headers = {"x-client-subject": subject} if subject else {}
        self._send(200, self.page, headers)

    do_GET = do_HEAD = _page


@dataclass(eq=False)
class _HttpStandIn:
    host: str = "127.0.0.1"
    port: int = 0
    _server: _StandInHTTPServer | None = field(default=None, init=False, repr=False)
    _thread: threading.Thread | None = field(default=None, init=False, repr=False)

    def _make_server(self) -> _StandInHTTPServer:
        raise NotImplementedError

    @property
    def requests(self) -> list[SeenRequest]:
        return self._server.seen_requests() if self._server is not None else []

    def start(self) -> Self:
        if self._server is not None:
            raise RuntimeError(f"{type(self).__name__} already started")
        self._server = self._make_server()
        self.port = int(self._server.server_address[1])
        self._thread = _serve(self._server, f"{type(self).__name__}-{self.port}")
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        # Stop accepting first, then cut open keep-alive connections and join their threads.
        if self._thread is not None and self._thread.is_alive():
            server.shutdown()
            self._thread.join(_JOIN_TIMEOUT_S)
        server.close_connections()
        server.server_close()
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass(eq=False)
class RedirectServer(_HttpStandIn):
    """Plain HTTP/1.1 that answers everything with ``301`` to ``https://<host><path>``, as
    edition.cnn.com does on port 80."""

    def _make_server(self) -> _StandInHTTPServer:
        return _StandInHTTPServer((self.host, self.port), _RedirectHandler)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"


def _pem_text(pem: str | bytes) -> str:
    return pem.decode("ascii") if isinstance(pem, bytes) else pem


def _write_private(path: Path, data: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(data)


def tls_server_context(
    cert_pem: str | bytes, key_pem: str | bytes, client_ca_pem: str | bytes | None = None
) -> ssl.SSLContext:
    """A server context: TLS 1.2+, ALPN http/1.1, client certificates required if a CA is given.

    ``ssl`` loads certificate chains only from files, so they go to a private temporary
    directory (0700, key 0600) that is removed as soon as they are loaded.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["http/1.1"])
    with tempfile.TemporaryDirectory(prefix="exitgate-tls-") as tmp:
        cert_file, key_file = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
        _write_private(cert_file, _pem_text(cert_pem))
        _write_private(key_file, _pem_text(key_pem))
        context.load_cert_chain(cert_file, key_file)
    if client_ca_pem is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cadata=_pem_text(client_ca_pem))
    return context


@dataclass(eq=False, kw_only=True)
class TlsPageServer(_HttpStandIn):
    """HTTPS (TLS 1.2+, ALPN http/1.1) answering every GET with 200 and an HTML page.

    With ``client_ca_pem`` the client must present a certificate signed by that CA (mutual
    TLS); the verified subject is echoed in an ``x-client-subject`` response header.
    """

    cert_pem: str | bytes
    key_pem: str | bytes
    body: str = DEFAULT_PAGE
    client_ca_pem: str | bytes | None = None

    def _make_server(self) -> _StandInHTTPServer:
        context = tls_server_context(self.cert_pem, self.key_pem, self.client_ca_pem)
        # A handler class per server: the page is per instance, the handler is built per request.
        handler = type("_Page", (_PageHandler,), {"page": self.body.encode()})
        return _TlsHTTPServer((self.host, self.port), handler, context)

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}/"


# -------------------------------------------------------------------------------------- nginx


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
