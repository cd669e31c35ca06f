"""``HttpbinStandIn``: the "external ingress gateway in front of httpbin" of Alibaba Cloud ASM's
egress guide (seeds/002), played on 127.0.0.1 by real nginx and a small httpbin.

The guide's external service is another mesh's ingress gateway: it serves plain HTTP on port
80, requires a client certificate on port 443 (mutual TLS), and its own AuthorizationPolicy
keeps the ``test.client`` certificate away from ``/status/418``. Here nginx is that gateway
(``ssl_verify_client on``; a ``map`` on the client certificate's subject answers the denied
paths with Envoy's RBAC denial, 403 ``RBAC: access denied``) and ``HttpbinServer`` is the
httpbin behind it (``/status/<code>`` with httpbin's teapot for 418, ``/headers``, ``/get``,
``/delay/<n>``).

nginx and httpbin listen on free unprivileged ports; a mesh file's ``externalPortMap``
(``{80: http_port, 443: https_port}``) sends a ServiceEntry's ports 80 and 443 there.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self
from urllib.parse import parse_qsl, urlsplit

from exitgate.demo.standins.nginx import NginxServer
from exitgate.demo.standins.web import SeenRequest, _HttpStandIn, _StandInHandler, _StandInHTTPServer
from exitgate.envoy.ports import free_port

# httpbin's own /status/418 body (httpbin/helpers.py ASCII_ART), so the guide's expected output
# is what comes back.
TEAPOT = r'''
    -=[ teapot ]=-

       _...._
     .'  _ _ `.
    | ."` ^ `". _,
    \_;`"---"`|//
      |       ;/
      \_     _/
        `"""`
'''

# Envoy's RBAC filter denies with exactly this body (no trailing newline: the guide's output
# ends in zsh's "%" mark for that reason).
RBAC_DENIED = "RBAC: access denied"


class _HttpbinHandler(_StandInHandler):
    """The few httpbin endpoints the guide uses, answering as httpbin does."""

    server_version = "gunicorn/19.9.0"  # what httpbin's image reports; the gateways replace it

    def _reply(self, status: int, body: bytes, content_type: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        self.send_header("access-control-allow-origin", "*")
        self.send_header("access-control-allow-credentials", "true")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _headers_json(self) -> dict[str, str]:
        # httpbin shows header names in Title-Case, sorted.
        titled = {"-".join(p.capitalize() for p in k.split("-")): v for k, v in self.headers.items()}
        return dict(sorted(titled.items()))

    def _json(self, doc: dict[str, Any]) -> None:
        self._reply(200, (json.dumps(doc, indent=2) + "\n").encode(), "application/json")

    def _handle(self) -> None:
        self._drain_body()
        host, target = self._target()
        parts = urlsplit(target)
        path = parts.path
        self.server.record(SeenRequest(self.command, self.headers.get("host", ""), target,
                                       self.headers.get("x-forwarded-client-cert", "")))
        m = re.fullmatch(r"/status/(\d{3})", path)
        if m:
            code = int(m.group(1))
            if code == 418:
                self._reply(418, TEAPOT.encode(), "text/plain",
                            {"x-more-info": "http://tools.ietf.org/html/rfc2324"})
            else:
                self._reply(code, b"", "text/html; charset=utf-8")
        elif path == "/headers":
            self._json({"headers": self._headers_json()})
        elif path == "/get":
            self._json({"args": dict(parse_qsl(parts.query)), "headers": self._headers_json(),
                        "url": f"http://{host}{target}"})
        elif re.fullmatch(r"/delay/\d+", path):
            # httpbin's /delay/<n>: answers like /get after n seconds, at most 10 (Istio's
            # "Accessing External Services" task times it out with a VirtualService timeout).
            time.sleep(min(int(path.rsplit("/", 1)[1]), 10))
            self._json({"args": dict(parse_qsl(parts.query)), "headers": self._headers_json(),
                        "url": f"http://{host}{target}"})
        elif path == "/":
            self._reply(200, b"<!DOCTYPE html>\n<html><body><h1>httpbin (exitgate stand-in)</h1></body></html>\n",
                        "text/html; charset=utf-8")
        else:
            self._reply(404, b"<h1>Not Found</h1>\n", "text/html; charset=utf-8")

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = _handle


@dataclass(eq=False)
class HttpbinServer(_HttpStandIn):
    """httpbin over plain HTTP/1.1 (the backend behind the external ingress gateway).

    ``requests`` records each request; its ``client_cert_subject`` is the
    ``X-Forwarded-Client-Cert`` the gateway in front of it added, if any.
    """

    def _make_server(self) -> _StandInHTTPServer:
        return _StandInHTTPServer((self.host, self.port), _HttpbinHandler)


_NGINX_CONF = """
http {{
  # The client certificates the external gateway's AuthorizationPolicy denies (by subject CN).
  map $ssl_client_s_dn $denied_client {{
    default 0;
    "~(^|,)CN={denied_cn}(,|$)" 1;
  }}
  upstream httpbin {{
    server {host}:{backend};
    keepalive 8;
  }}
  server {{
    listen {host}:{http_port};
    server_name {server_name};
    location / {{
      proxy_pass http://httpbin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
    }}
  }}
  server {{
    listen {host}:{https_port} ssl;
    server_name {server_name};
    ssl_certificate server.crt;
    ssl_certificate_key server.key;
    ssl_client_certificate ca.crt;
    ssl_verify_client on;
    # Istio's gateways pass the verified client certificate on as X-Forwarded-Client-Cert.
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header Host $http_host;
    proxy_set_header X-Forwarded-Client-Cert "Subject=\\"$ssl_client_s_dn\\"";
{denied_locations}
    location / {{
      proxy_pass http://httpbin;
    }}
  }}
}}
"""

_DENIED_LOCATION = """    location = {path} {{
      if ($denied_client) {{
        return 403 "{body}";
      }}
      proxy_pass http://httpbin;
    }}
"""


@dataclass(eq=False, kw_only=True)
class HttpbinStandIn:
    """nginx as the guide's external ingress gateway, in front of ``HttpbinServer``.

    ``http_port`` serves plain HTTP (the ServiceEntry's port 80); ``https_port`` requires a
    client certificate signed by ``client_ca_pem`` (port 443) and presents
    ``server_cert_pem``. A client whose certificate's subject CN is ``denied_client_cn`` gets
    403 ``RBAC: access denied`` on ``denied_paths``, as the guide's prerequisite policy does;
    every other request goes to httpbin. Ports 0 pick free ones at ``start()``.
    """

    conf_dir: Path
    server_cert_pem: bytes
    server_key_pem: bytes
    client_ca_pem: bytes
    server_name: str = "test.com"
    denied_client_cn: str = "test.client"
    denied_paths: tuple[str, ...] = ("/status/418",)
    host: str = "127.0.0.1"
    http_port: int = 0
    https_port: int = 0
    httpbin: HttpbinServer = field(init=False, repr=False)
    _nginx: NginxServer | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.httpbin = HttpbinServer(self.host)

    @property
    def nginx_pid(self) -> int | None:
        return self._nginx.pid if self._nginx is not None else None

    def render_conf(self) -> str:
        denied = "".join(_DENIED_LOCATION.format(path=p, body=RBAC_DENIED) for p in self.denied_paths)
        return _NGINX_CONF.format(host=self.host, backend=self.httpbin.port, http_port=self.http_port,
                                  https_port=self.https_port, server_name=self.server_name,
                                  denied_cn=re.escape(self.denied_client_cn), denied_locations=denied)

    def start(self) -> Self:
        if self._nginx is not None:
            raise RuntimeError("httpbin stand-in already started")
        self.http_port = self.http_port or free_port()
        self.https_port = self.https_port or free_port()
        self.httpbin.start()
        nginx = NginxServer(self.conf_dir, self.render_conf(), port=self.https_port, host=self.host,
                            files={"server.crt": self.server_cert_pem, "server.key": self.server_key_pem,
                                   "ca.crt": self.client_ca_pem})
        try:
            nginx.start()  # the master binds every listen socket before it answers on any
        except BaseException:
            self.httpbin.stop()
            raise
        self._nginx = nginx
        return self

    def stop(self) -> None:
        nginx, self._nginx = self._nginx, None
        if nginx is not None:
            nginx.stop()
        self.httpbin.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
