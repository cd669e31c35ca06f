"""The analyzer record: an Istio (``IST0xxx``) or exitgate (``EG01xx``) message code, the
message's name, a one-line description (``exitgate analyze --list``) and the check itself, a
pure function of the analysis ``Context``."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from exitgate.analyze.model import Context, Finding


@dataclass(frozen=True)
class Analyzer:
    code: str
    name: str
    description: str
    check: Callable[[Context], Iterable[Finding]]
