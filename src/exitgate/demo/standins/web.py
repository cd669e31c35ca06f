"""The HTTP(S) stand-ins: ``RedirectServer`` (plain HTTP, 301 to https, as edition.cnn.com on
port 80) and ``TlsPageServer`` (an HTML page over TLS, optionally mutual TLS), with the threaded
server that records the requests it saw and closes keep-alive connections on stop.
"""

from __future__ import annotations

import html
import os
import socket
import ssl
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlsplit

from exitgate.demo.standins.serving import _IO_TIMEOUT_S, _JOIN_TIMEOUT_S, _serve

DEFAULT_PAGE = (
    "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>exitgate stand-in</title></head>\n"
    "<body><h1>Hello from the external service</h1>\n"
    "<p>Served over TLS by an exitgate stand-in on the loopback interface.</p></body></html>\n"
)


def _host_without_port(host_header: str) -> str:
    host = host_header.strip()
    if host.startswith("["):  # [v6]:port
        end = host.find("]")
        return host[: end + 1] if end != -1 else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


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
