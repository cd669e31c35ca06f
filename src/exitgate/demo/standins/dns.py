"""``DnsStandIn``: a DNS server (UDP and TCP, dnslib) answering A/AAAA from a fixed table, so
the external names of Istio's examples resolve to the loopback stand-ins.
"""

from __future__ import annotations

import errno
import ipaddress
import socketserver
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Self

from dnslib import AAAA, QTYPE, RCODE, RR, A, DNSRecord
from dnslib.server import DNSHandler
from dnslib.server import TCPServer as DnsTCPServer
from dnslib.server import UDPServer as DnsUDPServer

from exitgate.demo.standins.serving import _halt, _serve


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
