"""``JsonPlaceholderServer``: real nginx standing in for ``jsonplaceholder.typicode.com`` (the
proof of concept's external service, seeds/003), and a plain-HTTP "any other site" beside it.

* Its TLS port serves ``/todos/1`` as jsonplaceholder does (the same JSON document), with a
  certificate the caller makes (a demo CA whose root goes into the mesh's ``systemTrustStore``,
  so the gateway's SIMPLE origination verifies it the way it would verify the real site).
* Its plain-HTTP port serves the same for ``jsonplaceholder.typicode.com`` (the real site's port
  80 does too), and answers any other host name with a short text naming the host, so a test
  can point a name no ServiceEntry declares (``unregistered.test``) at it and see whether a
  sidecar let the request out (ALLOW_ANY) or not (REGISTRY_ONLY).

Every request is written to an access log with the SNI nginx saw (``$ssl_server_name``) and the
TLS protocol, and ``hits()`` reads it back: that is how a test proves the egress gateway really
originated TLS with the SNI the DestinationRule asks for. nginx writes the access log line as
the request completes (no ``buffer=``), so it is there by the time the client has its answer.
"""

from __future__ import annotations

import json
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from typing import Self

from exitgate.demo.standins.nginx import NginxServer
from exitgate.envoy.ports import free_port

HOST = "jsonplaceholder.typicode.com"
# jsonplaceholder.typicode.com/todos/1, as the real service returns it (pretty-printed, 2 spaces).
TODO_1: dict[str, object] = {"userId": 1, "id": 1, "title": "delectus aut autem", "completed": False}
TODO_1_JSON = json.dumps(TODO_1, indent=2) + "\n"
PLAIN_BODY_PREFIX = "plain HTTP stand-in for "

# The access log: Hit's fields and the nginx variables that fill them, separated by tabs (none
# of them can contain one; nginx escapes control characters). "-" is nginx's empty value.
_LOG_FIELDS = (("listener", "$listener"), ("sni", "$ssl_server_name"), ("tls", "$ssl_protocol"),
               ("host", "$host"), ("request", "$request"), ("status", "$status"))
_CONF = """
http {{
  log_format standin '{fields}';
  access_log {log} standin;
  server {{
    listen {host}:{tls_port} ssl;
    server_name {server_name};
    ssl_certificate server.crt;
    ssl_certificate_key server.key;
    set $listener tls;
    root {site};
    default_type application/json;
    # The SNI this TLS connection carried, for a person reading curl -D - (the log has it too).
    add_header X-Standin-Sni $ssl_server_name always;
    location / {{
      try_files $uri =404;
    }}
  }}
  server {{
    # jsonplaceholder answers plain HTTP on port 80 too (what a sidecar sends without a gateway).
    listen {host}:{http_port};
    server_name {server_name};
    set $listener plain;
    root {site};
    default_type application/json;
    location / {{
      try_files $uri =404;
    }}
  }}
  server {{
    listen {host}:{http_port} default_server;
    server_name _;
    set $listener plain;
    default_type text/plain;
    location / {{
      return 200 "{plain}$host\\n";
    }}
  }}
}}
"""


@dataclass(frozen=True)
class Hit:
    """One request nginx served, from its access log."""

    listener: str  # "tls" (the TLS port) or "plain" (the plain-HTTP port)
    sni: str  # the TLS server name the client sent; "" for plain HTTP or no SNI
    tls: str  # the TLS protocol ("TLSv1.3"); "" for plain HTTP
    host: str
    request: str  # "GET /todos/1 HTTP/1.1"
    status: int


@dataclass(eq=False)
class JsonPlaceholderServer:
    """nginx under ``conf_dir`` serving jsonplaceholder's ``/todos/1`` over TLS on ``tls_port``
    and over plain HTTP on ``http_port``, where any other host gets a short text (0: a free
    port, written back at start)."""

    conf_dir: Path
    cert_pem: bytes
    key_pem: bytes
    _: KW_ONLY
    host: str = "127.0.0.1"
    tls_port: int = 0
    http_port: int = 0
    server_name: str = HOST
    _nginx: NginxServer | None = field(default=None, init=False, repr=False)

    @property
    def access_log(self) -> Path:
        return Path(self.conf_dir).resolve() / "standin-access.log"

    @property
    def pid(self) -> int | None:
        return self._nginx.pid if self._nginx is not None else None

    def start(self) -> Self:
        if self._nginx is not None and self._nginx.running:
            raise RuntimeError("stand-in already started")
        self.tls_port = self.tls_port or free_port()
        self.http_port = self.http_port or free_port()
        prefix = Path(self.conf_dir).resolve()
        fields = "\\t".join(var for _, var in _LOG_FIELDS)
        conf = _CONF.format(fields=fields, log=self.access_log, host=self.host, tls_port=self.tls_port,
                            http_port=self.http_port, server_name=self.server_name, site=prefix / "site",
                            plain=PLAIN_BODY_PREFIX)
        nginx = NginxServer(prefix, conf, port=self.tls_port, host=self.host,
                            files={"server.crt": self.cert_pem, "server.key": self.key_pem,
                                   "site/todos/1": TODO_1_JSON})
        nginx.start()
        self._nginx = nginx
        return self

    def stop(self) -> None:
        nginx, self._nginx = self._nginx, None
        if nginx is not None:
            nginx.stop()

    def hits(self) -> list[Hit]:
        """Every request served so far, oldest first."""
        if not self.access_log.exists():
            return []
        out = []
        for line in self.access_log.read_text(errors="replace").splitlines():
            parts = [("" if p == "-" else p) for p in line.split("\t")]
            if len(parts) != len(_LOG_FIELDS):
                continue
            listener, sni, tls, host, request, status = parts
            out.append(Hit(listener, sni, tls, host, request, int(status or 0)))
        return out

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
