"""The store wakes the control plane of its state directory, and no other."""

from __future__ import annotations

import time
from pathlib import Path

from exitgate.wake import Waker, wake


def test_a_wake_up_arrives_at_once_and_only_for_its_state_directory(tmp_path: Path) -> None:
    mine, other = Waker(tmp_path / "a"), Waker(tmp_path / "b")
    try:
        assert mine.listening and other.listening
        assert mine.wait(0) is False
        wake(tmp_path / "a")
        wake(tmp_path / "a")
        t0 = time.monotonic()
        assert mine.wait(5) is True and time.monotonic() - t0 < 1
        assert mine.wait(0) is False  # both wake-ups were taken by one wait
        assert other.wait(0) is False
    finally:
        mine.close()
        other.close()


def test_waking_when_no_control_plane_runs_is_harmless(tmp_path: Path) -> None:
    wake(tmp_path / "nobody")


def test_the_store_wakes_its_control_plane(tmp_path: Path) -> None:
    from exitgate.api.loader import load_text
    from exitgate.store import Store

    waker = Waker(tmp_path)
    try:
        text = ("apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: a}\n"
                "spec: {hosts: [a.example.com], resolution: DNS, ports: [{number: 80, name: http, protocol: HTTP}]}\n")
        assert Store(tmp_path).apply(load_text(text, "a.yaml").resources).ok
        assert waker.wait(2) is True
        assert Store(tmp_path).apply(load_text(text, "a.yaml").resources).ok  # unchanged: nothing written
        assert waker.wait(0.2) is False
    finally:
        waker.close()
