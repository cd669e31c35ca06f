"""``exitgate demo`` (what `make demo` runs) passes every step and leaves nothing running."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.e2e


def envoy_pids() -> set[str]:
    out = subprocess.run(["pgrep", "-x", "envoy"], capture_output=True, text=True)
    return set(out.stdout.split())


def test_demo_passes_and_cleans_up() -> None:
    before = envoy_pids()
    proc = subprocess.run([sys.executable, "-m", "exitgate.cli.main", "demo"], capture_output=True, text=True,
                          timeout=300, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "demo passed" in proc.stdout
    for expected in ("HTTP/1.1 301 Moved Permanently", "HTTP/1.1 200 OK", "outbound|443||edition.cnn.com",
                     "kubernetes://client-credential", "Welcome to nginx!"):
        assert expected in proc.stdout, expected
    assert envoy_pids() <= before, "the demo left Envoy processes running"
