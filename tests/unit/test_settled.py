"""What keeps a push from being slowed by the rest of the control plane: its objects frozen out of
later collections (``gcpause.Settled``), stats read before it only for a proxy whose listeners it
replaces (``SnapshotCache.replaces``), and the periodic stats reads held while it runs."""

from __future__ import annotations

import gc
import weakref

from envoy.config.listener.v3 import listener_pb2

from exitgate.gcpause import Settled
from exitgate.xds.cache import LISTENER_TYPE, SnapshotCache

NODE = "sidecar~127.0.0.1~sleep.default~default.svc.cluster.local"


class Cycle:
    def __init__(self) -> None:
        self.me = self


def test_a_push_freezes_and_an_idle_collection_frees_frozen_cycles() -> None:
    gc.unfreeze()
    try:
        settled = Settled(idle_s=60)
        garbage = weakref.ref(Cycle())  # only the cycle collector can free it
        settled.pushed(now=100.0)
        assert gc.get_freeze_count() > 0
        gc.collect()
        assert garbage() is not None  # frozen: out of the collector's sight
        assert not settled.idle(now=159.0)  # the last push is less than idle_s ago
        assert settled.idle(now=160.0)
        assert garbage() is None
        assert gc.get_freeze_count() > 0  # what is alive is frozen again
        assert not settled.idle(now=500.0)  # nothing pushed since: nothing to collect
    finally:
        gc.unfreeze()


def listeners(**ports: int) -> dict[str, listener_pb2.Listener]:
    return {name: listener_pb2.Listener(name=name, stat_prefix=str(port)) for name, port in ports.items()}


def test_replaces_tells_a_changed_or_removed_listener_from_an_added_one() -> None:
    cache = SnapshotCache()
    assert not cache.replaces(NODE, LISTENER_TYPE, listeners(a=1))  # nothing there yet
    cache.set_snapshot(NODE, {LISTENER_TYPE: listeners(a=1, b=2)})
    assert not cache.replaces(NODE, LISTENER_TYPE, listeners(a=1, b=2))
    assert not cache.replaces(NODE, LISTENER_TYPE, listeners(a=1, b=2, c=3))
    assert cache.replaces(NODE, LISTENER_TYPE, listeners(a=1, b=5))
    assert cache.replaces(NODE, LISTENER_TYPE, listeners(a=1))


def test_a_push_hands_freed_memory_back_on_glibc() -> None:
    settled = Settled()
    assert settled._trim is not None  # this machine's C library is glibc
    calls: list[int] = []
    settled._trim = lambda pad: calls.append(pad) or 1
    settled.pushed(now=1.0)
    gc.unfreeze()
    assert calls == [0]


def test_the_periodic_stats_reads_wait_while_the_control_plane_pushes() -> None:
    import threading

    from exitgate.monitoring import ControlPlaneMetrics, MonitoringServer, ScrapeTarget

    fetched = threading.Event()

    def fetch() -> str:
        fetched.set()
        return ""

    server = MonitoringServer(ControlPlaneMetrics(lambda: {}), lambda: [ScrapeTarget("sleep", "default", fetch)],
                              lambda: [], read_every_s=0.05)
    with server.quiet():
        server.start("127.0.0.1", 0)
        try:
            assert not fetched.wait(0.5)  # ten periods: none read while pushing
        except BaseException:
            server.stop()
            raise
    try:
        assert fetched.wait(5)
    finally:
        server.stop()


def test_the_periodic_stats_reads_wait_until_the_proxies_acknowledge_the_push() -> None:
    import threading

    from exitgate.monitoring import ControlPlaneMetrics, MonitoringServer, ScrapeTarget

    fetched = threading.Event()
    acknowledged = threading.Event()

    def fetch() -> str:
        fetched.set()
        return ""

    server = MonitoringServer(ControlPlaneMetrics(lambda: {}), lambda: [ScrapeTarget("sleep", "default", fetch)],
                              lambda: [], read_every_s=0.05, converging=lambda: not acknowledged.is_set(),
                              converge_wait_s=30)
    server.start("127.0.0.1", 0)
    try:
        assert not fetched.wait(0.5)  # Envoy's main thread is applying the push: no read
        acknowledged.set()
        assert fetched.wait(5)
    finally:
        server.stop()


def test_the_collector_stays_paused_until_the_last_of_two_threads_is_done() -> None:
    import threading

    from exitgate.gcpause import gc_paused

    assert gc.isenabled()
    inside, leave = threading.Event(), threading.Event()

    def other() -> None:
        with gc_paused():
            inside.set()
            leave.wait(5)

    t = threading.Thread(target=other)
    with gc_paused():
        t.start()
        assert inside.wait(5)
    try:
        assert not gc.isenabled()  # the other thread's pause still holds
    finally:
        leave.set()
        t.join(5)
    assert gc.isenabled()
