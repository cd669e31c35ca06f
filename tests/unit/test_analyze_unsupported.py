"""``analyze`` judges YAML written for Istio even where exitgate cannot run it yet: fields that
are not supported are warnings there (``apply`` still refuses them), and analysis goes on."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from exitgate.cli.main import build_app

PASSTHROUGH_WITH_HTTP_ROUTE = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: istio-egressgateway}
spec:
  selector: {istio: egressgateway}
  servers:
  - port: {number: 443, name: tls, protocol: TLS}
    hosts: [edition.cnn.com]
    tls: {mode: AUTO_PASSTHROUGH}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: cnn}
spec:
  hosts: [edition.cnn.com]
  ports: [{number: 80, name: http, protocol: HTTP}, {number: 443, name: https, protocol: HTTPS}]
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: cnn}
spec:
  hosts: [edition.cnn.com]
  gateways: [istio-egressgateway, mesh]
  http:
  - match: [{gateways: [mesh], port: 80}]
    route: [{destination: {host: istio-egressgateway.istio-system.svc.cluster.local, port: {number: 443}}}]
  - match: [{gateways: [istio-egressgateway], port: 443}]
    route: [{destination: {host: edition.cnn.com, port: {number: 443}}}]
"""


def test_unsupported_fields_are_warnings_and_analysis_goes_on(tmp_path: Path) -> None:
    f = tmp_path / "passthrough.yaml"
    f.write_text(PASSTHROUGH_WITH_HTTP_ROUTE)
    runner = CliRunner()
    result = runner.invoke(build_app(), ["analyze", "--state-dir", str(tmp_path / "state"), "-f", str(f)])
    assert "Warning [EG0006]" in result.output
    # The PASSTHROUGH pitfall is found because the Gateway was kept for analysis.
    assert "[EG0101]" in result.output, result.output
    applied = runner.invoke(build_app(), ["apply", "--state-dir", str(tmp_path / "state"), "-f", str(f)])
    assert applied.exit_code == 1 and "nothing was applied" in applied.output
