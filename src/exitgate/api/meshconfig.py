"""Istio's mesh configuration in its own form: the ``v1`` ConfigMap ``istio`` in ``istio-system``
whose ``data.mesh`` holds ``meshConfig`` as YAML text (what ``istioctl install --set
meshConfig...`` writes). exitgate acts on ``outboundTrafficPolicy``; every other meshConfig field
is reported as not supported yet, after the text has been parsed and the known fields checked.

A ConfigMap overrides the mesh file's setting for as long as it is applied, as editing Istio's
ConfigMap changes a running mesh.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from exitgate.api import diagnostics as dx
from exitgate.api.base import Issue, Spec, Where
from exitgate.api.core import key_problem

MESH_CONFIGMAP = ("istio-system", "istio")
MESH_KEY = "mesh"


class _MeshModel(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True, alias_generator=to_camel, frozen=True)


class MeshOutboundTrafficPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Literal["ALLOW_ANY", "REGISTRY_ONLY"] = "ALLOW_ANY"


class MeshConfigText(_MeshModel):
    """The part of ``meshConfig`` exitgate acts on; other fields land in ``model_extra``."""

    outbound_traffic_policy: MeshOutboundTrafficPolicy | None = None
    # The access log (``istioctl install --set meshConfig.accessLogFile=/dev/stdout``, Istio's
    # way to turn it on; "" off), its encoding and format, as the mesh file's fields.
    access_log_file: str | None = None
    access_log_encoding: Literal["TEXT", "JSON"] | None = None
    access_log_format: str | None = None


def access_log_format_problem(encoding: str, fmt: str) -> str | None:
    """Istio logs an error and falls back to its default fields; exitgate refuses the setting
    (the mesh file's, or the mesh ConfigMap's) and says why."""
    if fmt and encoding == "JSON":
        try:
            parsed = json.loads(fmt)
        except ValueError as e:
            return f"accessLogEncoding is JSON but accessLogFormat is not JSON: {e}"
        if not isinstance(parsed, dict) or not parsed:
            return "accessLogEncoding is JSON: accessLogFormat must be a JSON object of fields"
    return None


def parse_mesh_text(text: str) -> tuple[MeshConfigText | None, list[str], list[str]]:
    """(parsed, errors, fields not supported yet) for a ``data.mesh`` text."""
    try:
        doc: Any = YAML(typ="safe").load(io.StringIO(text))
    except YAMLError as e:
        return None, [f"the mesh text is not valid YAML: {e}"], []
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        return None, ["the mesh text must be a YAML mapping of meshConfig fields"], []
    try:
        parsed = MeshConfigText.model_validate(doc)
    except ValidationError as err:
        return None, [f"meshConfig.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors()], []
    problem = access_log_format_problem(str(parsed.access_log_encoding), parsed.access_log_format or "")
    if problem:
        return None, [f"meshConfig.accessLogFormat: {problem}"], []
    return parsed, [], sorted(str(k) for k in (parsed.model_extra or {}))


class ConfigMapSpec(Spec):
    """The top-level fields of a ConfigMap (Kubernetes keeps them outside ``spec``)."""

    data: dict[str, str] | None = None
    binary_data: dict[str, str] | None = None
    immutable: bool | None = None

    def mesh_config(self) -> MeshConfigText | None:
        parsed, _, _ = parse_mesh_text((self.data or {}).get(MESH_KEY, ""))
        return parsed

    def issues(self, where: Where) -> Iterable[Issue]:
        out: list[Issue] = []
        for field, values in (("data", self.data), ("binaryData", self.binary_data)):
            for key in values or {}:
                problem = key_problem(key)
                if problem:
                    out.append(Issue((field, key), problem))
        return out

    def mesh_issues(self) -> list[Issue]:
        """What is wrong or not supported in Istio's mesh ConfigMap (``istio`` in istio-system)."""
        out: list[Issue] = []
        if self.data and MESH_KEY in self.data:
            _, errors, unsupported = parse_mesh_text(self.data[MESH_KEY])
            out += [Issue(("data", MESH_KEY), e) for e in errors]
            out += [Issue(("data", MESH_KEY), f"meshConfig field {f} is not supported by exitgate yet",
                          code=dx.UNSUPPORTED) for f in unsupported]
        for key in sorted(set(self.data or {}) - {MESH_KEY}) + sorted(self.binary_data or {}):
            out.append(Issue(("data" if key in (self.data or {}) else "binaryData", key),
                             f"key {key} of Istio's mesh ConfigMap is not supported by exitgate yet (only {MESH_KEY})",
                             code=dx.UNSUPPORTED))
        return out
