"""``exitgate dns``: the DNS stand-in the demos and tests use, as a command, so that Istio's
egress YAML can be tried against local servers without the internet: it answers the given
external host names with local addresses (any other name: NXDOMAIN), and the mesh file's
``dns.resolvers`` points the proxies at it; ``externalPortMap`` ("HOST:PORT": local port)
sends each host's port to where its local server listens."""

from __future__ import annotations

import ipaddress
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated, Optional

import typer

from exitgate.cli.common import fail


def register(app: typer.Typer) -> None:
    @app.command(name="kube-inject")
    def kube_inject(files: Annotated[list[str], typer.Option("-f", "--filename", help="file, directory or - (stdin)")],
                    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="file (default: stdout)")] = None,
                    ) -> None:
        """istioctl kube-inject: the YAML with Istio's sidecar added to each Deployment's pod
        template and Pod (``exitgate apply -f <(exitgate kube-inject -f sleep.yaml)``)."""
        import yaml

        from exitgate.api.loader import expand_paths
        from exitgate.api.sources import STDIN
        from exitgate.inventory import kube_inject as inject

        paths, problems = expand_paths(files)
        for d in problems:
            typer.echo(str(d), err=True)
        if problems:
            raise typer.Exit(1)
        docs: list[object] = []
        for path in paths:
            try:
                text = sys.stdin.read() if str(path) == STDIN else path.read_text(encoding="utf-8")
                docs += [inject(d) if isinstance(d, dict) else d for d in yaml.safe_load_all(text) if d is not None]
            except (OSError, yaml.YAMLError) as e:
                raise fail(f"{path}: {e}") from None
        text = yaml.safe_dump_all(docs, sort_keys=False)
        if output is None:
            typer.echo(text, nl=False)
        else:
            output.write_text(text)

    @app.command()
    def dns(records: Annotated[list[str], typer.Argument(help="HOST=ADDRESS, e.g. edition.cnn.com=127.0.0.1")],
            address: Annotated[str, typer.Option("--address", help="address to listen on")] = "127.0.0.1",
            port: Annotated[int, typer.Option("--port", help="port (UDP and TCP); 0 picks a free one")] = 15353) -> None:
        """Answer external host names with local addresses, until Ctrl-C (the proxies' resolver
        for offline testing: dns.resolvers in the mesh file)."""
        table: dict[str, str] = {}
        for r in records:
            host, sep, ip = r.partition("=")
            try:
                ipaddress.ip_address(ip)
            except ValueError:
                raise fail(f"{r!r}: give HOST=ADDRESS with an IP address") from None
            if not sep or not host:
                raise fail(f"{r!r}: give HOST=ADDRESS")
            table[host] = ip
        from exitgate.demo.standins import DnsStandIn  # only this command runs one (20 ms to import)

        try:
            server = DnsStandIn(table, host=address, port=port).start()
        except OSError as e:
            raise fail(f"cannot listen on {address}:{port}: {e.strerror}") from None
        typer.echo(f"answering {', '.join(sorted(table))} on {address}:{server.port} (UDP and TCP); "
                   f"in the mesh file: dns: {{resolvers: [\"{address}:{server.port}\"]}}", err=True)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass
        finally:
            server.stop()
