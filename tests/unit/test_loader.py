"""The loader: Istio's own YAML loads clean, and every user mistake is a diagnostic with the right
code, the file, the exact 1-based line and the field path."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from exitgate.api import diagnostics as dx
from exitgate.api.diagnostics import Diagnostic
from exitgate.api.loader import NETWORKING_VERSIONS, LoadResult, load_document, load_paths, load_text
from exitgate.api.networking import DestinationRuleSpec, GatewaySpec, ServiceEntrySpec, VirtualServiceSpec
from exitgate.api.resources import Resource

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "tls-origination"

EXPECTED_EXAMPLE_RESOURCES = [
    ("ServiceEntry", "default", "cnn"),
    ("Gateway", "default", "istio-egressgateway"),
    ("DestinationRule", "default", "egressgateway-for-cnn"),
    ("VirtualService", "default", "direct-cnn-through-egress-gateway"),
    ("DestinationRule", "default", "originate-tls-for-edition-cnn-com"),
]


def y(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def load(text: str, filename: str = "user.yaml", **kw: str) -> LoadResult:
    return load_text(y(text), filename, **kw)


def only(result: LoadResult) -> Diagnostic:
    """The single diagnostic of a rejected document (and no resource)."""
    assert result.resources == []
    assert len(result.diagnostics) == 1, [str(d) for d in result.diagnostics]
    return result.diagnostics[0]


def line_of(text: str, needle: str) -> int:
    """1-based line of the only line of ``text`` containing ``needle`` (keeps the expected lines
    in the tests honest when a fixture is edited)."""
    hits = [i for i, line in enumerate(y(text).splitlines(), 1) if needle in line]
    assert len(hits) == 1, (needle, hits)
    return hits[0]


SE = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: cnn
spec:
  hosts:
  - edition.cnn.com
  ports:
  - number: 443
    name: https
    protocol: HTTPS
  resolution: DNS
"""


# --- Istio's examples ------------------------------------------------------------------------


def test_examples_directory_loads_clean_in_file_and_document_order() -> None:
    result = load_paths([EXAMPLES])
    assert result.diagnostics == []
    assert result.ok
    assert [r.key for r in result.resources] == EXPECTED_EXAMPLE_RESOURCES


def test_examples_have_typed_specs_and_sources() -> None:
    result = load_paths([EXAMPLES])
    by_name = {r.name: r for r in result.resources}
    se = by_name["cnn"].spec
    assert isinstance(se, ServiceEntrySpec)
    assert se.hosts == ["edition.cnn.com"]
    assert [(p.number, p.protocol, p.name) for p in se.ports or []] == [(80, "HTTP", "http"), (443, "HTTPS", "https")]
    assert se.resolution == "DNS"
    gw = by_name["istio-egressgateway"].spec
    assert isinstance(gw, GatewaySpec)
    assert gw.selector == {"istio": "egressgateway"}
    assert gw.servers[0].tls is not None and gw.servers[0].tls.mode == "ISTIO_MUTUAL"
    vs = by_name["direct-cnn-through-egress-gateway"].spec
    assert isinstance(vs, VirtualServiceSpec)
    assert vs.http is not None and vs.http[1].route is not None
    assert vs.http[1].route[0].destination.port is not None and vs.http[1].route[0].destination.port.number == 443
    dr = by_name["originate-tls-for-edition-cnn-com"].spec
    assert isinstance(dr, DestinationRuleSpec)
    pls = dr.traffic_policy.port_level_settings if dr.traffic_policy else None
    assert pls and pls[0].tls is not None and pls[0].tls.mode == "SIMPLE"
    # Each resource remembers the file and the line its document starts on.
    second_dr = by_name["originate-tls-for-edition-cnn-com"]
    assert second_dr.source is not None
    assert second_dr.source.file.endswith("03-virtualservice-and-tls-origination.yaml")
    text = Path(second_dr.source.file).read_text()
    assert text.splitlines()[second_dr.source.line - 1] == "apiVersion: networking.istio.io/v1alpha3"
    assert second_dr.source.line > 1


@pytest.mark.parametrize("version", NETWORKING_VERSIONS)
def test_examples_load_clean_in_every_served_version(version: str) -> None:
    assert set(NETWORKING_VERSIONS) == {"v1alpha3", "v1beta1", "v1"}
    resources: list[Resource] = []
    for f in sorted(EXAMPLES.glob("*.yaml")):
        text = f.read_text()
        assert "networking.istio.io/v1alpha3" in text
        result = load_text(text.replace("networking.istio.io/v1alpha3", f"networking.istio.io/{version}"), f.name)
        assert result.diagnostics == [], [str(d) for d in result.diagnostics]
        resources.extend(result.resources)
    assert [r.key for r in resources] == EXPECTED_EXAMPLE_RESOURCES
    assert {r.api_version for r in resources} == {f"networking.istio.io/{version}"}
    assert {r.raw["apiVersion"] for r in resources} == {f"networking.istio.io/{version}"}


def test_unserved_version_of_a_known_kind_is_rejected_at_the_apiversion_line() -> None:
    d = only(load(SE.replace("networking.istio.io/v1", "networking.istio.io/v2")))
    assert (d.code, d.line, d.field) == (dx.UNKNOWN_KIND, 1, "apiVersion")
    assert "networking.istio.io/v2" in d.message


# --- files, directories, documents -----------------------------------------------------------


def test_multi_document_file_keeps_every_document_and_skips_empty_ones(tmp_path: Path) -> None:
    f = tmp_path / "all.yaml"
    f.write_text("---\n" + y(SE) + "---\n# only a comment\n---\n" + y(SE).replace("name: cnn", "name: cnn2"))
    result = load_paths([f])
    assert result.diagnostics == []
    assert [r.name for r in result.resources] == ["cnn", "cnn2"]
    # Lines count from the top of the file, not of the document.
    assert [r.source.line for r in result.resources if r.source] == [2, 2 + len(y(SE).splitlines()) + 3]


def test_directory_is_expanded_recursively_sorted_and_only_yaml(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "2.yml").write_text(y(SE).replace("name: cnn", "name: two"))
    (tmp_path / "a.yaml").write_text(y(SE).replace("name: cnn", "name: one"))
    (tmp_path / "c.json").write_text(
        '{"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry", "metadata": {"name": "three"},'
        ' "spec": {"hosts": ["x.example.com"], "resolution": "DNS"}}'
    )
    (tmp_path / "notes.txt").write_text("this: is [not yaml")
    (tmp_path / "README.md").write_text("# kind: Nonsense")
    result = load_paths([tmp_path])
    assert result.diagnostics == []
    assert [r.name for r in result.resources] == ["one", "two", "three"]
    assert {Path(r.source.file).name for r in result.resources if r.source} == {"a.yaml", "2.yml", "c.json"}


def test_missing_path_is_a_diagnostic_not_an_exception(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    result = load_paths([missing])
    assert not result.ok
    assert [(d.code, d.file) for d in result.diagnostics] == [(dx.NOT_FOUND, str(missing))]


def test_errors_in_one_file_do_not_hide_good_resources_of_another(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(y(SE))
    (tmp_path / "b.yaml").write_text(y(SE).replace("number: 443", "number: 99999"))
    result = load_paths([tmp_path])
    assert [r.name for r in result.resources] == ["cnn"]
    assert [(Path(d.file or "").name, d.code) for d in result.diagnostics] == [("b.yaml", dx.INVALID_VALUE)]
    assert not result.ok


# --- YAML syntax -----------------------------------------------------------------------------


def test_bad_indentation_is_a_yaml_error_at_the_offending_line() -> None:
    text = """
    apiVersion: networking.istio.io/v1
    kind: ServiceEntry
    metadata:
      name: cnn
    spec:
      hosts:
      - edition.cnn.com
       ports:
      - number: 80
    """
    d = only(load(text, "se.yaml"))
    assert d.code == dx.YAML_SYNTAX
    assert d.file == "se.yaml"
    assert d.line == line_of(text, " ports:") == 8
    assert d.place() == "se.yaml:8"
    assert d.message.startswith("invalid YAML")


def test_unclosed_bracket_names_where_it_was_noticed_and_where_it_opened() -> None:
    text = """
    apiVersion: networking.istio.io/v1
    kind: ServiceEntry
    metadata:
      name: cnn
    spec:
      hosts: [edition.cnn.com
      resolution: DNS
    """
    d = only(load(text, "se.yaml"))
    assert d.code == dx.YAML_SYNTAX
    assert d.line == line_of(text, "resolution") == 7
    assert f"line {line_of(text, '[edition')}" in d.message
    assert d.file == "se.yaml"


def test_tab_indentation_is_a_yaml_error_on_its_line() -> None:
    text = "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n\tname: cnn\n"
    d = only(load_text(text, "tab.yaml"))
    assert (d.code, d.line, d.file) == (dx.YAML_SYNTAX, 4, "tab.yaml")


def test_duplicate_key_is_a_yaml_error_at_the_duplicate() -> None:
    text = """
    apiVersion: networking.istio.io/v1
    kind: ServiceEntry
    metadata:
      name: cnn
      name: cnn2
    spec:
      hosts: [a.example.com]
      resolution: DNS
    """
    d = only(load(text))
    assert (d.code, d.line) == (dx.YAML_SYNTAX, 5)
    assert "duplicate key" in d.message


def test_syntax_error_in_a_later_document_counts_lines_from_the_top_of_the_file() -> None:
    text = y(SE) + "---\n" + y(SE).replace("  hosts:\n", "  hosts: [\n", 1)
    d = only(load_text(text, "two.yaml"))
    assert d.code == dx.YAML_SYNTAX
    assert d.line is not None and d.line > len(y(SE).splitlines()) + 1


def test_a_document_that_is_not_a_mapping_is_rejected() -> None:
    d = only(load("- just\n- a list\n"))
    assert (d.code, d.line) == (dx.YAML_SYNTAX, 1)


# --- kinds -----------------------------------------------------------------------------------


def test_unknown_kind() -> None:
    text = """
    apiVersion: networking.istio.io/v1
    kind: ServiceEntri
    metadata:
      name: cnn
    spec:
      hosts: [a.example.com]
    """
    d = only(load(text, "k.yaml"))
    assert (d.code, d.line, d.field, d.file) == (dx.UNKNOWN_KIND, 2, "kind", "k.yaml")
    assert "ServiceEntri" in d.message and "ServiceEntry" in d.message


def test_known_but_unsupported_kind_is_eg0006_not_unknown() -> None:
    text = """
    apiVersion: security.istio.io/v1beta1
    kind: PeerAuthentication
    metadata:
      name: default
      namespace: istio-system
    spec: {mtls: {mode: STRICT}}
    """
    d = only(load(text, "peer.yaml"))
    assert (d.code, d.line, d.field, d.file) == (dx.UNSUPPORTED, 2, "kind", "peer.yaml")
    assert "PeerAuthentication" in d.message


@pytest.mark.parametrize("missing", ["apiVersion", "kind", "metadata"])
def test_missing_top_level_field(missing: str) -> None:
    drop = (missing,) if missing != "metadata" else ("metadata", "  name:")
    text = "\n".join(line for line in y(SE).splitlines() if not line.startswith(drop)) + "\n"
    result = load_text(text, "m.yaml")
    assert result.resources == []
    assert (dx.MISSING_FIELD, missing) in [(d.code, d.field) for d in result.diagnostics]


def test_missing_spec() -> None:
    text = """
    apiVersion: networking.istio.io/v1
    kind: ServiceEntry
    metadata:
      name: cnn
    """
    d = only(load(text))
    assert (d.code, d.field, d.line) == (dx.MISSING_FIELD, "spec", 1)


def test_unknown_top_level_field() -> None:
    d = only(load(y(SE) + "specs: {}\n"))
    assert (d.code, d.field, d.line) == (dx.UNKNOWN_FIELD, "specs", len(y(SE).splitlines()) + 1)


# --- missing, unknown and invalid fields -----------------------------------------------------


def test_serviceentry_without_hosts() -> None:
    text = """
    apiVersion: networking.istio.io/v1
    kind: ServiceEntry
    metadata:
      name: cnn
    spec:
      ports:
      - number: 443
        name: https
        protocol: HTTPS
      resolution: DNS
    """
    d = only(load(text, "se.yaml"))
    assert (d.code, d.field, d.file) == (dx.MISSING_FIELD, "spec.hosts", "se.yaml")
    # The deepest part of the path that exists: spec.
    assert d.line == line_of(text, "spec:") == 5
    assert "hosts" in d.message


def test_serviceentry_with_empty_hosts_is_an_invalid_value() -> None:
    d = only(load(SE.replace("  hosts:\n  - edition.cnn.com\n", "  hosts: []\n")))
    assert (d.code, d.field, d.line) == (dx.INVALID_VALUE, "spec.hosts", 6)


VS = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: cnn
spec:
  hosts:
  - edition.cnn.com
  http:
  - route:
    - destination:
        host: edition.cnn.com
        port:
          number: 443
"""


def test_virtualservice_loads() -> None:
    result = load(VS)
    assert result.diagnostics == []
    assert [r.key for r in result.resources] == [("VirtualService", "default", "cnn")]


def test_destination_without_host() -> None:
    text = VS.replace("        host: edition.cnn.com\n", "")
    d = only(load(text, "vs.yaml"))
    assert (d.code, d.field, d.file) == (dx.MISSING_FIELD, "spec.http[0].route[0].destination.host", "vs.yaml")
    assert d.line == line_of(text, "destination:") == 10


def test_virtualservice_without_hosts_is_a_delegate() -> None:
    # Istio takes a VirtualService without hosts as a delegate; exitgate does not route by them yet.
    text = VS.replace("  hosts:\n  - edition.cnn.com\n", "")
    d = only(load(text))
    assert (d.code, d.field, d.line) == (dx.UNSUPPORTED, "spec", 5)
    assert "delegate" in d.message


def test_typo_hots_in_a_virtualservice() -> None:
    text = VS.replace("  hosts:", "  hots:")
    result = load(text, "vs.yaml")
    assert result.resources == []
    found = {(d.code, d.field, d.line) for d in result.diagnostics}
    assert (dx.UNKNOWN_FIELD, "spec.hots", line_of(text, "hots:")) in found
    assert all(d.file == "vs.yaml" for d in result.diagnostics)
    hots = next(d for d in result.diagnostics if d.field == "spec.hots")
    assert "'hots'" in hots.message


def test_typo_protcol_in_a_port() -> None:
    text = SE.replace("protocol: HTTPS", "protcol: HTTPS")
    result = load(text, "se.yaml")
    assert result.resources == []
    # (A ServiceEntry port's protocol is optional, as in Istio, so the typo is the only problem.)
    unknown = only(result)
    assert (unknown.code, unknown.field, unknown.file) == (dx.UNKNOWN_FIELD, "spec.ports[0].protcol", "se.yaml")
    assert unknown.line == line_of(text, "protcol") == 11
    assert "protcol" in unknown.message
    assert str(unknown).startswith("se.yaml:11: Error [EG0004] (ServiceEntry default/cnn) spec.ports[0].protcol:")


def test_port_out_of_range() -> None:
    text = SE.replace("number: 443", "number: 99999")
    d = only(load(text, "se.yaml"))
    assert (d.code, d.field, d.file) == (dx.INVALID_VALUE, "spec.ports[0].number", "se.yaml")
    assert d.line == line_of(text, "99999") == 9
    assert "65535" in d.message


@pytest.mark.parametrize("number", ["0", "-1", "65536", "443.5", "https"])
def test_other_bad_port_numbers(number: str) -> None:
    d = only(load(SE.replace("number: 443", f"number: {number}")))
    assert (d.code, d.field, d.line) == (dx.INVALID_VALUE, "spec.ports[0].number", 9)


def test_invalid_enum_value() -> None:
    text = SE.replace("resolution: DNS", "resolution: DNSS")
    d = only(load(text, "se.yaml"))
    assert (d.code, d.field, d.line, d.file) == (dx.INVALID_VALUE, "spec.resolution", 12, "se.yaml")
    assert "DNS" in d.message and "STATIC" in d.message


def test_invalid_protocol() -> None:
    d = only(load(SE.replace("protocol: HTTPS", "protocol: HTTPZ")))
    assert (d.code, d.field, d.line) == (dx.INVALID_VALUE, "spec.ports[0].protocol", 11)


def test_route_weights_are_relative() -> None:
    text = """
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata:
      name: split
    spec:
      hosts:
      - edition.cnn.com
      http:
      - route:
        - destination:
            host: a.example.com
          weight: 50
        - destination:
            host: b.example.com
          weight: 40
    """
    # Istio's validateHTTPRouteDestinations: any weights but all zero (Envoy splits by their sum).
    relative = load(text, "vs.yaml")
    assert relative.diagnostics == [] and len(relative.resources) == 1
    d = only(load(text.replace("weight: 50", "weight: 0").replace("weight: 40", "weight: 0"), "vs.yaml"))
    assert (d.code, d.field, d.file) == (dx.INVALID_VALUE, "spec.http[0]", "vs.yaml")
    assert d.line == line_of(text, "- route:") == 9
    assert "add up to 0" in d.message


def test_negative_weight() -> None:
    text = VS.replace("          number: 443\n", "          number: 443\n      weight: -1\n")
    d = only(load(text))
    assert (d.code, d.field, d.line) == (dx.INVALID_VALUE, "spec.http[0].route[0].weight", line_of(text, "weight"))


def test_every_problem_of_a_document_is_reported_at_once() -> None:
    text = SE.replace("number: 443", "number: 99999").replace("resolution: DNS", "resolution: DNSS").replace(
        "name: https", "nmae: https")
    result = load(text)
    assert result.resources == []
    assert sorted((d.code, d.field, d.line) for d in result.diagnostics) == sorted([
        (dx.INVALID_VALUE, "spec.ports[0].number", 9),
        (dx.MISSING_FIELD, "spec.ports[0].name", 9),
        (dx.UNKNOWN_FIELD, "spec.ports[0].nmae", 10),
        (dx.INVALID_VALUE, "spec.resolution", 12),
    ])


def test_invalid_metadata_name() -> None:
    text = SE.replace("name: cnn", "name: CNN_Edition")
    d = only(load(text))
    assert (d.code, d.field, d.line) == (dx.INVALID_VALUE, "metadata.name", 4)


def test_unknown_metadata_field() -> None:
    text = SE.replace("  name: cnn\n", "  name: cnn\n  lables: {a: b}\n")
    d = only(load(text))
    assert (d.code, d.field, d.line) == (dx.UNKNOWN_FIELD, "metadata.lables", 5)


# --- fields exitgate does not support yet ----------------------------------------------------


def test_virtualservice_cors_policy_is_unsupported() -> None:
    text = VS + "    corsPolicy:\n      allowMethods: [GET]\n"
    d = only(load(text, "vs.yaml"))
    assert (d.code, d.field, d.file) == (dx.UNSUPPORTED, "spec.http[0].corsPolicy", "vs.yaml")
    assert d.line == line_of(text, "corsPolicy:")
    assert "not supported" in d.message


def test_destinationrule_unsupported_field_is_named() -> None:
    text = """
    apiVersion: networking.istio.io/v1
    kind: DestinationRule
    metadata:
      name: limits
    spec:
      host: edition.cnn.com
      trafficPolicy:
        retryBudget:
          percent: 20
    """
    d = only(load(text, "dr.yaml"))
    assert (d.code, d.field, d.file) == (dx.UNSUPPORTED, "spec.trafficPolicy.retryBudget", "dr.yaml")
    assert d.line == line_of(text, "retryBudget:") == 8
    assert "not supported" in d.message


def test_unsupported_value_in_the_example_is_named_at_its_line() -> None:
    f = EXAMPLES / "03-virtualservice-and-tls-origination.yaml"
    text = f.read_text()
    # The second ROUND_ROBIN is the DestinationRule's, in the second document.
    bad = text[::-1].replace("ROUND_ROBIN"[::-1], "PASSTHROUGH"[::-1], 1)[::-1]
    assert bad != text and bad.count("PASSTHROUGH") == 1
    result = load_text(bad, f.name)
    assert [r.kind for r in result.resources] == ["VirtualService"]
    d = only(LoadResult([], result.diagnostics))
    assert (d.code, d.field, d.file) == (dx.UNSUPPORTED, "spec.trafficPolicy.loadBalancer.simple", f.name)
    assert d.resource == "DestinationRule default/originate-tls-for-edition-cnn-com"
    assert d.line == [i for i, line in enumerate(bad.splitlines(), 1) if "PASSTHROUGH" in line][0]


def test_serviceentry_resolution_none_and_its_default_load_clean() -> None:
    # NONE (also when resolution is left out): each request goes to the host it names.
    for text in (SE.replace("resolution: DNS", "resolution: NONE"), SE.replace("  resolution: DNS\n", "")):
        result = load(text, "se.yaml")
        assert result.diagnostics == [] and len(result.resources) == 1


def test_unsupported_field_in_a_nested_list() -> None:
    text = SE.replace("  resolution: DNS\n", "  resolution: DNS\n  endpoints:\n  - address: cnn.example\n"
                                                "    locality: us-east1/a\n")
    d = only(load(text))
    assert (d.code, d.field, d.line) == (dx.UNSUPPORTED, "spec.endpoints[0].locality", 15)


def test_supported_optional_fields_are_not_reported() -> None:
    text = SE.replace("  resolution: DNS\n", "  resolution: DNS\n  location: MESH_EXTERNAL\n  exportTo: ['.']\n")
    result = load(text)
    assert result.diagnostics == []
    assert len(result.resources) == 1


# --- namespaces and stored data --------------------------------------------------------------


def test_namespace_defaults_to_default() -> None:
    (r,) = load(SE).resources
    assert r.namespace == "default"
    assert r.raw["metadata"]["namespace"] == "default"
    assert r.ref == "ServiceEntry default/cnn"


def test_namespace_defaults_to_the_given_default_namespace() -> None:
    (r,) = load(SE, default_namespace="egress").resources
    assert r.namespace == "egress"
    assert r.raw["metadata"]["namespace"] == "egress"


def test_explicit_namespace_wins_over_the_default() -> None:
    (r,) = load(SE.replace("  name: cnn\n", "  name: cnn\n  namespace: istio-system\n"),
                default_namespace="egress").resources
    assert r.key == ("ServiceEntry", "istio-system", "cnn")


def test_invalid_namespace() -> None:
    d = only(load(SE.replace("  name: cnn\n", "  name: cnn\n  namespace: Istio.System\n")))
    assert (d.code, d.field, d.line) == (dx.INVALID_VALUE, "metadata.namespace", 5)


def test_raw_is_plain_data_without_status() -> None:
    text = """
    apiVersion: networking.istio.io/v1
    kind: ServiceEntry
    metadata:
      name: cnn
      annotations:
        note: |
          two
          lines
      creationTimestamp: 2024-01-01T00:00:00Z
    spec:
      hosts: [edition.cnn.com]
      ports:
      - {number: 0x1bb, name: https, protocol: HTTPS}
      resolution: DNS
    status: {}
    """
    (r,) = load(text).resources
    assert "status" not in r.raw
    note = r.raw["metadata"]["annotations"]["note"]
    assert note == "two\nlines\n" and type(note) is str
    number = r.raw["spec"]["ports"][0]["number"]
    assert number == 443 and type(number) is int
    assert type(r.raw["spec"]) is dict and type(r.raw["spec"]["hosts"]) is list


def test_the_walks_look_only_at_fields_that_may_hold_models() -> None:
    from exitgate.api.base import nesting_fields
    from exitgate.api.networking.destinationrule import DestinationRuleSpec
    from exitgate.api.networking.serviceentry import ServiceEntrySpec, ServicePort, WorkloadEntry

    assert [a for _, a in nesting_fields(ServiceEntrySpec)] == ["ports", "endpoints", "workloadSelector"]
    assert nesting_fields(ServicePort) == () and nesting_fields(WorkloadEntry) == ()  # scalars, Literals, maps of strings
    assert {"trafficPolicy", "subsets"} <= {a for _, a in nesting_fields(DestinationRuleSpec)}
    assert "host" not in {a for _, a in nesting_fields(DestinationRuleSpec)}


def test_with_source_copies_a_resource_with_another_line() -> None:
    from exitgate.api.resources import Source

    r, _ = load_document({"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry", "metadata": {"name": "a"},
                          "spec": {"hosts": ["a.example.com"], "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}]}},
                         "a.yaml")
    assert r is not None
    moved = r.with_source(Source("b.yaml", 7))
    assert moved == r and moved.spec is r.spec and moved.raw is r.raw
    assert moved.source == Source("b.yaml", 7) and r.source != moved.source


def test_a_stored_document_is_built_without_its_checks_a_new_one_is_checked() -> None:
    # The store holds only documents that passed every check: reading one back builds its
    # models, and neither Istio's rules nor the field checks run again (a sixth of a load).
    doc = {"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry", "metadata": {"name": "se"},
           "spec": {"hosts": ["bad..host"], "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}]}}
    fresh, diags = load_document(doc, "f.yaml")
    assert fresh is None and any("bad..host" in d.message for d in diags)
    stored, diags = load_document(doc, "config.yaml", checked=True)
    assert stored is not None and not diags and stored.spec.hosts == ["bad..host"]
    # A value of the wrong type still fails: the models are built, and a broken file is refused.
    wrong = {**doc, "spec": {**doc["spec"], "ports": [{"number": "eighty", "name": "http"}]}}
    stored, diags = load_document(wrong, "config.yaml", checked=True)
    assert stored is None and diags
