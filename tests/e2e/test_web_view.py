"""The web view in a real headless Chromium, on live data after real requests through Istio's
TLS origination task: which workload identity reached which external host, through which
gateway, with which TLS on each hop, the codes and flags (explained), the proxies' sync state,
the certificates and the configuration changes. The page's DOM is read after its scripts ran;
a screenshot is kept in ``test-artifacts/web-view.png``."""

from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from exitgate.demo.standins import NginxServer, find_nginx

from tests.e2e.harness import EXAMPLES, Exitgate, until
from tests.e2e.test_metrics import DENY_FORBIDDEN, HOST, _code, running  # noqa: F401 - the fixture

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(find_nginx() is None, reason="nginx not installed"),
              pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (.ci/run installs it)")]


class Tables(HTMLParser):
    """The text of each table's body cells, by table id."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._table: str | None = None
        self._in_body = False
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self._table = dict(attrs).get("id") or ""
            self.tables[self._table] = []
        elif tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._in_body and self._table is not None:
            self.tables[self._table].append([])
        elif tag == "td" and self._in_body:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None and self._table is not None:
            self.tables[self._table][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tbody":
            self._in_body = False

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def _chromium(url: str, tmp: Path, *args: str) -> str:
    assert CHROMIUM is not None
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp / 'chromium-profile'}", "--virtual-time-budget=8000", *args, url]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_web_view_in_chromium(running: tuple[Exitgate, NginxServer], tmp_path: Path) -> None:  # noqa: F811
    eg, nginx = running
    eg.apply(EXAMPLES / "tls-origination")
    assert until(lambda: _code(eg, "/politics"), lambda o: o == "200") == "200"
    assert _code(eg, "/politics") == "200"
    deny = tmp_path / "deny.yaml"
    deny.write_text(DENY_FORBIDDEN)
    eg.apply(deny)
    assert until(lambda: _code(eg, "/forbidden"), lambda o: o == "403") == "403"
    nginx.stop()
    assert until(lambda: _code(eg, "/politics"), lambda o: o == "503") == "503"
    url = f"http://127.0.0.1:{eg.cp.monitoring_port}/"
    assert eg.cli("dashboard", "--no-open", check=True).stdout.strip() == url

    parser = Tables()
    dom = _chromium(url, tmp_path, "--dump-dom")
    assert 'data-loaded="true"' in dom, dom[:2000]
    parser.feed(dom)
    traffic = parser.tables["traffic"]
    flows = {(r[0], r[1], r[2], r[3], r[4]): r for r in traffic}
    key = ("spiffe://cluster.local/ns/default/sa/sleep", HOST, "istio-egressgateway.istio-system", "ISTIO_MUTUAL", "SIMPLE")
    assert key in flows, traffic
    row = flows[key]
    codes = dict(part.split(" × ") for part in row[6].split(", "))
    assert int(codes["200"]) >= 2 and int(codes["403"]) >= 1 and int(codes["503"]) >= 1, row
    assert "UF" in row[7] and "upstream connection failure" in row[7], row
    assert row[8].endswith(" ms") and row[9].endswith(" ms"), row

    proxies = {r[0]: r for r in parser.tables["proxies"]}
    assert proxies["istio-egressgateway.istio-system"][2:6] == ["SYNCED"] * 4, proxies
    assert proxies["sleep.default"][6] == "none"
    certs = {r[1]: r for r in parser.tables["certificates"]}
    assert certs["spiffe://cluster.local/ns/default/sa/sleep"][0] == "workload"
    assert certs["spiffe://cluster.local"][0] == "mesh root"
    changes = " ".join(r[3] for r in parser.tables["changes"])
    assert "created ServiceEntry default/cnn" in changes and "created AuthorizationPolicy istio-system/deny-forbidden" in changes

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "web-view.png"
    _chromium(url, tmp_path, f"--screenshot={shot}", "--window-size=1400,900", "--hide-scrollbars")
    assert shot.stat().st_size > 10_000
