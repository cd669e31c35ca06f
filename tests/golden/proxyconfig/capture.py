"""Captures the config dumps the ``proxy-config`` goldens read: Istio's TLS origination task
through the egress gateway, on real Envoys, with nginx as edition.cnn.com. Run from the repo
root when the translation changes what proxies hold, then regenerate the goldens:

    .venv/bin/python tests/golden/proxyconfig/capture.py
    .venv/bin/python -m pytest tests/golden/test_proxyconfig_golden.py --update-golden

The xDS token in each bootstrap is replaced (it is a credential, even a test run's)."""

from __future__ import annotations

import json
import re
import sys
import tempfile
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))

from tests.e2e import test_metrics as scenario  # noqa: E402


def main() -> None:
    tmp = Path(tempfile.mkdtemp())
    gen = scenario.running.__wrapped__(tmp)  # type: ignore[attr-defined]
    eg, _ = next(gen)
    try:
        eg.apply(scenario.EXAMPLES / "tls-origination")
        scenario.until(lambda: scenario._code(eg, "/politics"), lambda o: o == "200")
        for p in eg.cp.proxies:
            base = f"http://127.0.0.1:{p.record.admin_port}"
            out = HERE / p.record.name
            out.mkdir(exist_ok=True)
            dump = urllib.request.urlopen(f"{base}/config_dump?include_eds", timeout=10).read().decode()
            dump = re.sub(r'("key": "x-exitgate-token",\s*"value": )"[^"]*"', r'\1"REDACTED"', dump)
            assert p.token not in dump
            (out / "config_dump.json").write_text(json.dumps(json.loads(dump), indent=2) + "\n")
            clusters = urllib.request.urlopen(f"{base}/clusters?format=json", timeout=10).read().decode()
            (out / "clusters.json").write_text(json.dumps(json.loads(clusters), indent=2) + "\n")
            print("captured", out)
    finally:
        try:
            next(gen)
        except StopIteration:
            pass


if __name__ == "__main__":
    main()
