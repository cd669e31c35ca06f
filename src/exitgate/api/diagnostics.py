"""Diagnostics: user mistakes as data, with a code, a severity, a place and a message.

Every layer that judges user input (loader, validation, analysis, translation) returns these
instead of raising, so the CLI can print all of them at once and refuse a bad batch whole.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Severity(str, Enum):
    ERROR = "Error"
    WARNING = "Warning"
    INFO = "Info"


# exitgate's own codes. Istio's analyzer codes (IST0101, ...) are used where the meaning is the same.
YAML_SYNTAX = "EG0001"
UNKNOWN_KIND = "EG0002"
MISSING_FIELD = "EG0003"
UNKNOWN_FIELD = "EG0004"
INVALID_VALUE = "EG0005"
UNSUPPORTED = "EG0006"
DUPLICATE = "EG0007"
NOT_FOUND = "EG0008"


@dataclass(frozen=True)
class Diagnostic:
    code: str
    severity: Severity
    message: str
    file: str | None = None
    line: int | None = None
    resource: str | None = None  # "Kind namespace/name"
    field: str | None = None  # "spec.http[0].route[0].destination.host"

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR

    def place(self) -> str:
        if self.file is None:
            return ""
        return f"{self.file}:{self.line}" if self.line is not None else self.file

    def __str__(self) -> str:
        parts = []
        place = self.place()
        if place:
            parts.append(f"{place}:")
        parts.append(f"{self.severity.value} [{self.code}]")
        if self.resource:
            parts.append(f"({self.resource})")
        if self.field:
            parts.append(f"{self.field}:")
        parts.append(self.message)
        return " ".join(parts)

    def to_dict(self) -> dict[str, object]:
        return {
            "code": self.code,
            "level": self.severity.value,
            "message": self.message,
            "file": self.file,
            "line": self.line,
            "resource": self.resource,
            "field": self.field,
        }


def has_errors(diagnostics: list[Diagnostic] | tuple[Diagnostic, ...]) -> bool:
    return any(d.is_error for d in diagnostics)
