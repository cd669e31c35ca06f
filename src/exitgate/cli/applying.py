"""What ``exitgate apply`` does with the files' text, wherever it runs: in the command itself,
or in the running control plane the command hands it to (``handoff``). Both give the same
answer, which ``handoff.print_answer`` prints: the diagnostics, what changed, and the notes."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from exitgate.api.diagnostics import Diagnostic
from exitgate.api.loader import load_sources
from exitgate.api.meshconfig import MESH_CONFIGMAP
from exitgate.api.resources import Resource
from exitgate.cli import forked
from exitgate.cli.kubectl import kind_name
from exitgate.gcpause import gc_paused
from exitgate.handoff import Answer
from exitgate.store import Store


def answer_request(store: Store, message: dict[str, Any], lock: AbstractContextManager[Any] | None = None,
                   keep: Callable[[object], None] | None = None) -> Answer:
    """The answer to a request of ``handoff.apply_request``. ``lock``: held while the store changes
    (the control plane's, so that a push never reads a half-updated store object). ``keep``:
    given what the parse made, to free it later (see ``apply_sources``)."""
    if message.get("verb") != "apply":
        return {"ok": False, "diagnostics": [[True, f"unknown request {message.get('verb')!r}"]]}
    sources = [(str(name), str(text)) for name, text in message.get("sources", ())]
    return apply_sources(store, sources, str(message.get("namespace") or "default"), lock, keep)


def apply_sources(store: Store, sources: list[tuple[str, str]], namespace: str,
                  lock: AbstractContextManager[Any] | None = None,
                  keep: Callable[[object], None] | None = None, jobs: int = 1) -> Answer:
    """Load every resource of ``sources`` and apply them all to ``store``, or none. ``keep``
    (the control plane's): takes what loading made, which is freed when the caller drops it;
    30,000 documents' parse took 1 s to free, in the middle of the push the apply set off.
    ``jobs``: the command's 2, a large file loaded on two cores (``cli.forked``)."""
    with gc_paused():
        # Paused throughout: with 30,000 resources just loaded, collections set off by what
        # follows walked them all again and again.
        loaded = load_sources(sources, default_namespace=namespace,
                              split=forked.load_in_two if jobs > 1 else None)
        if keep is not None:
            keep(loaded)
        diags: list[Diagnostic] = list(loaded.diagnostics)
        if not loaded.ok:
            return _answer(diags, None)
        if not loaded.resources:
            # kubectl's words for files with no resource in them (empty, or comments only).
            return {**_answer(diags, None), "error": "no objects passed to apply"}
        with lock if lock is not None else nullcontext():
            result = store.apply(loaded.resources)
        diags += result.diagnostics
        return _answer(diags, result.changes if result.ok else None)


def _answer(diags: list[Diagnostic], changes: tuple[tuple[Resource, str], ...] | None) -> Answer:
    answer: Answer = {"ok": changes is not None, "diagnostics": [[d.is_error, str(d)] for d in diags]}
    if changes is not None:
        answer["out"] = [f"{kind_name(r.kind)}/{r.name} {what}" for r, what in changes]
        answer["notes"] = _notes(changes)
    return answer


def _notes(changes: tuple[tuple[Resource, str], ...]) -> list[str]:
    notes = []
    kept = [r for r, what in changes if r.kind == "ConfigMap" and what != "unchanged"
            and (r.namespace, r.name) != MESH_CONFIGMAP]
    if kept:
        notes.append(f"exitgate keeps {', '.join(r.ref for r in kept)} as Kubernetes does; of ConfigMaps it reads "
                     f"only Istio's mesh config ({MESH_CONFIGMAP[1]} in {MESH_CONFIGMAP[0]})")
    workloads = [r for r, what in changes if r.kind in ("Deployment", "Pod") and what == "created"]
    if workloads:
        # Said, not silently skipped: a pod template's containers are not run here.
        notes.append(f"exitgate runs the sidecar or gateway each of {', '.join(r.ref for r in workloads)} declares, "
                     "not its containers: run a workload's process with "
                     "`exitgate exec deploy/NAME [-n NAMESPACE] -- COMMAND`")
    return notes
