"""Per-resource validation, case by case: every file under ``validation_cases/valid``,
``validation_cases/invalid`` and ``validation_cases/istio`` is loaded, and its diagnostics must be
exactly the ones its comments announce, on the very lines that carry them:

    - exmaple.com..bad   # expect: EG0005 spec.hosts[0] "not a valid host name"
    ingress:             # expect: EG0006 spec.ingress
    - '*'                # expect-warning: EG0005 spec.egress[0].hosts[1]
    - '*foo.com'         # expect-warning: EG0005 spec.hosts[1]  # expect: EG0006 spec.hosts[1]

``expect`` is an error, ``expect-warning`` a warning; several expectations of one kind on one
line are separated by ``;``, and a line may carry both kinds, each in its own comment; the quoted
text, if any, must appear in the message. A file's first comment ``# namespace: NAME`` loads it
as ``kubectl apply -n NAME`` would.

``validation_cases/istio`` holds cases of Istio's own validation tables
(``pkg/config/validation/validation_test.go`` and friends), each document naming the table and
the case it ports, with the verdict Istio gives it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from exitgate.api import diagnostics as dx
from exitgate.api.diagnostics import Diagnostic, Severity
from exitgate.api.loader import load_text

CASES = Path(__file__).parent / "validation_cases"
EXPECT = re.compile(r'#\s*expect(-warning)?:\s*((?:[^#"]|"[^"]*")+)')
ONE = re.compile(r'^(EG\d{4})\s+(\S+)(?:\s+"([^"]*)")?$')
NAMESPACE = re.compile(r"^#\s*namespace:\s*(\S+)\s*$", re.M)


@dataclass(frozen=True)
class Expected:
    severity: Severity
    code: str
    field: str
    line: int
    text: str | None


def expectations(text: str) -> list[Expected]:
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        for m in EXPECT.finditer(line):
            severity = Severity.WARNING if m.group(1) else Severity.ERROR
            for part in m.group(2).split(";"):
                one = ONE.match(part.strip())
                assert one is not None, f"line {n}: bad expectation {part!r}"
                out.append(Expected(severity, one.group(1), one.group(2), n, one.group(3)))
    return out


def files(kind: str) -> list[Path]:
    return sorted((CASES / kind).glob("*.yaml"))


def check(path: Path) -> tuple[list[Expected], list[Diagnostic]]:
    text = path.read_text()
    ns = NAMESPACE.search(text)
    result = load_text(text, path.name, ns.group(1) if ns else "default")
    expected = expectations(text)
    got = sorted((d.severity.value, d.code, d.field or "", d.line or 0) for d in result.diagnostics)
    want = sorted((e.severity.value, e.code, e.field, e.line) for e in expected)
    report = "\n".join(str(d) for d in result.diagnostics)
    assert got == want, f"{path.name}: diagnostics differ from the # expect comments\n{report}"
    for e in expected:
        if e.text is not None:
            messages = [d.message for d in result.diagnostics if (d.code, d.field, d.line) == (e.code, e.field, e.line)]
            assert any(e.text in m for m in messages), (path.name, e, messages)
    for d in result.diagnostics:
        assert d.file == path.name and d.resource and d.message and d.line
        assert not d.message.startswith(("Value error", "Input should be a valid dictionary")), d
    return expected, result.diagnostics


def test_there_are_cases_for_every_kind() -> None:
    kinds = {"ServiceEntry", "Gateway", "VirtualService", "DestinationRule", "AuthorizationPolicy", "Sidecar",
             "Secret"}
    for where in ("valid", "invalid"):
        found = {m for f in files(where) for m in re.findall(r"^kind:\s*(\w+)", f.read_text(), re.M)}
        assert kinds <= found, (where, kinds - found)


@pytest.mark.parametrize("path", files("valid"), ids=lambda p: p.stem)
def test_valid_resources_load_clean(path: Path) -> None:
    expected, diagnostics = check(path)
    # Valid as Istio judges it: the only errors are fields exitgate does not act on yet.
    assert all(d.code == dx.UNSUPPORTED for d in diagnostics if d.is_error)
    assert all(e.code == dx.UNSUPPORTED for e in expected if e.severity is Severity.ERROR)


@pytest.mark.parametrize("path", files("invalid"), ids=lambda p: p.stem)
def test_invalid_resources_report_each_mistake_at_its_line(path: Path) -> None:
    expected, diagnostics = check(path)
    assert any(e.severity is Severity.ERROR and e.code != dx.UNSUPPORTED for e in expected), \
        f"{path.name} announces no mistake"


ISTIO_CASE = re.compile(r'^# (?:validation|virtualservice)_test\.go Test\w+: "[^"]+"$', re.M)


def test_istio_cases_cover_every_kind_both_ways() -> None:
    kinds = {"ServiceEntry", "Gateway", "VirtualService", "DestinationRule", "AuthorizationPolicy", "Sidecar"}
    for kind in kinds:
        docs = [d for f in files("istio") for d in f.read_text().split("\n---\n")
                if re.search(rf"^kind:\s*{kind}\s*$", d, re.M)]
        valid = [d for d in docs if not re.search(r"#\s*expect:\s*EG000[1-5]", d)]
        assert len(valid) >= 3 and len(docs) - len(valid) >= 3, (kind, len(valid), len(docs) - len(valid))


@pytest.mark.parametrize("path", files("istio"), ids=lambda p: p.stem)
def test_istio_verdicts(path: Path) -> None:
    """Each case of Istio's tables gets Istio's verdict: no error, Istio's warning, or an error
    at the field Istio blames (plus EG0006 where exitgate does not act on a valid field)."""
    for doc in path.read_text().split("\n---\n"):
        assert ISTIO_CASE.search(doc), f"{path.name}: a case names no Istio test table and case:\n{doc[:200]}"
    check(path)
