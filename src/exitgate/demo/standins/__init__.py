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

The stand-ins live in ``dns``, ``web`` and ``nginx`` (``serving`` holds their shared threading);
every public name is re-exported here.
"""

from __future__ import annotations

from exitgate.demo.standins.dns import DnsStandIn
from exitgate.demo.standins.nginx import NginxServer, find_nginx
from exitgate.demo.standins.web import (
    DEFAULT_PAGE,
    RedirectServer,
    SeenRequest,
    TlsPageServer,
    tls_server_context,
)

__all__ = [
    "DEFAULT_PAGE",
    "DnsStandIn",
    "NginxServer",
    "RedirectServer",
    "SeenRequest",
    "TlsPageServer",
    "find_nginx",
    "tls_server_context",
]
