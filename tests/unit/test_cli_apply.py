"""`exitgate apply / delete / get` as a user runs them: kubectl-style output, all-or-nothing
batches, and mistakes reported with file and line."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner, Result

from exitgate.cli.main import build_app
from exitgate.store import SNAPSHOT_FILE, Store

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "tls-origination"

CREATED = [
    "serviceentry.networking.istio.io/cnn created",
    "gateway.networking.istio.io/istio-egressgateway created",
    "destinationrule.networking.istio.io/egressgateway-for-cnn created",
    "virtualservice.networking.istio.io/direct-cnn-through-egress-gateway created",
    "destinationrule.networking.istio.io/originate-tls-for-edition-cnn-com created",
]


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture(autouse=True)
def _no_ambient_state(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Never touch a developer's ./.exitgate or $EXITGATE_HOME if --state-dir were ignored.
    monkeypatch.delenv("EXITGATE_HOME", raising=False)
    monkeypatch.chdir(tmp_path)


def run(state: Path, *args: str) -> Result:
    return CliRunner().invoke(build_app(), [*args, "--state-dir", str(state)])


def flat(text: str) -> str:
    """Rich wraps long stderr lines at 80 columns when not on a terminal; compare unwrapped."""
    return re.sub(r"\s+", " ", text).strip()


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def snapshot_bytes(state: Path) -> bytes | None:
    p = state / SNAPSHOT_FILE
    return p.read_bytes() if p.exists() else None


GOOD_AND_BAD = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: good
spec:
  hosts:
  - good.example.com
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: bad
spec:
  hosts:
  - bad.example.com
  ports:
  - number: 443
    name: https
    protcol: HTTPS
  resolution: DNS
"""


def test_apply_examples_prints_kubectl_style_lines(state: Path) -> None:
    result = run(state, "apply", "-f", str(EXAMPLES))
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == CREATED
    assert result.stderr == ""
    assert Store(state).version() == 1


def test_reapply_is_unchanged_and_a_change_is_configured(state: Path, tmp_path: Path) -> None:
    assert run(state, "apply", "-f", str(EXAMPLES)).exit_code == 0
    again = run(state, "apply", "-f", str(EXAMPLES))
    assert again.exit_code == 0
    assert again.stdout.splitlines() == [line.replace(" created", " unchanged") for line in CREATED]
    assert Store(state).version() == 1
    changed = write(tmp_path / "se.yaml", (EXAMPLES / "01-serviceentry.yaml").read_text().replace("number: 80", "number: 8080"))
    result = run(state, "apply", "-f", str(changed))
    assert result.exit_code == 0
    assert result.stdout.splitlines() == ["serviceentry.networking.istio.io/cnn configured"]
    assert Store(state).version() == 2


def test_apply_into_another_namespace(state: Path) -> None:
    result = run(state, "apply", "-f", str(EXAMPLES / "01-serviceentry.yaml"), "-n", "egress")
    assert result.exit_code == 0
    assert Store(state).load().get("ServiceEntry", "egress", "cnn") is not None
    assert run(state, "get", "se", "cnn").exit_code == 1  # not in "default"
    assert run(state, "get", "se", "cnn", "-n", "egress").exit_code == 0


def test_one_bad_resource_fails_the_whole_file_and_the_store_is_unchanged(state: Path, tmp_path: Path) -> None:
    assert run(state, "apply", "-f", str(EXAMPLES)).exit_code == 0
    before = snapshot_bytes(state)
    assert before is not None
    f = write(tmp_path / "mixed.yaml", GOOD_AND_BAD)
    result = run(state, "apply", "-f", str(f))
    assert result.exit_code == 1
    assert result.stdout == ""  # no "created" line for the good one
    err = flat(result.stderr)
    assert f"{f}:20: Error [EG0004]" in err
    assert "(ServiceEntry default/bad) spec.ports[0].protcol: unknown field 'protcol'" in err
    assert "nothing was applied" in err
    assert snapshot_bytes(state) == before
    assert Store(state).load().get("ServiceEntry", "default", "good") is None


def test_bad_file_on_an_empty_store_writes_nothing(state: Path, tmp_path: Path) -> None:
    f = write(tmp_path / "mixed.yaml", GOOD_AND_BAD)
    result = run(state, "apply", "-f", str(f))
    assert result.exit_code == 1
    assert snapshot_bytes(state) is None
    assert Store(state).version() == 0


def test_a_bad_file_among_good_files_fails_the_batch(state: Path, tmp_path: Path) -> None:
    d = tmp_path / "dir"
    d.mkdir()
    for src in EXAMPLES.glob("*.yaml"):
        (d / src.name).write_text(src.read_text())
    write(d / "04-bad.yaml", GOOD_AND_BAD)
    result = run(state, "apply", "-f", str(d))
    assert result.exit_code == 1
    assert f"{d / '04-bad.yaml'}:20:" in flat(result.stderr)
    assert snapshot_bytes(state) is None


def test_duplicate_resource_in_a_batch_is_refused(state: Path, tmp_path: Path) -> None:
    se = EXAMPLES / "01-serviceentry.yaml"
    result = run(state, "apply", "-f", str(se), "-f", str(se))
    assert result.exit_code == 1
    assert "[EG0007]" in flat(result.stderr)
    assert "nothing was applied" in flat(result.stderr)
    assert snapshot_bytes(state) is None


def test_missing_file(state: Path, tmp_path: Path) -> None:
    result = run(state, "apply", "-f", str(tmp_path / "nope.yaml"))
    assert result.exit_code == 1
    assert "nope.yaml" in flat(result.stderr) and "no such file" in flat(result.stderr)


def test_delete(state: Path) -> None:
    assert run(state, "apply", "-f", str(EXAMPLES)).exit_code == 0
    result = run(state, "delete", "-f", str(EXAMPLES / "01-serviceentry.yaml"))
    assert result.exit_code == 0
    assert result.stdout.splitlines() == ['serviceentry.networking.istio.io "cnn" deleted']
    assert Store(state).load().get("ServiceEntry", "default", "cnn") is None
    assert Store(state).version() == 2
    assert len(Store(state).load().resources) == len(CREATED) - 1


def test_delete_of_something_not_there_says_not_found(state: Path) -> None:
    assert run(state, "apply", "-f", str(EXAMPLES / "01-serviceentry.yaml")).exit_code == 0
    assert run(state, "delete", "-f", str(EXAMPLES / "01-serviceentry.yaml")).exit_code == 0
    result = run(state, "delete", "-f", str(EXAMPLES / "01-serviceentry.yaml"))
    assert result.stdout == ""
    assert "NotFound" in flat(result.stderr) and "cnn" in flat(result.stderr)
    assert Store(state).version() == 2


def test_get_se_yaml_shows_the_resource(state: Path) -> None:
    assert run(state, "apply", "-f", str(EXAMPLES)).exit_code == 0
    result = run(state, "get", "se", "-o", "yaml")
    assert result.exit_code == 0
    listed = yaml.safe_load(result.stdout)
    assert listed["kind"] == "List"
    (item,) = listed["items"]
    assert item == {
        "apiVersion": "networking.istio.io/v1alpha3",
        "kind": "ServiceEntry",
        "metadata": {"name": "cnn", "namespace": "default"},
        "spec": {
            "hosts": ["edition.cnn.com"],
            "ports": [{"number": 80, "name": "http", "protocol": "HTTP"},
                      {"number": 443, "name": "https", "protocol": "HTTPS"}],
            "resolution": "DNS",
        },
    }
    one = run(state, "get", "serviceentry", "cnn", "-o", "yaml")
    assert one.exit_code == 0
    assert yaml.safe_load(one.stdout) == item


def test_get_output_can_be_applied_again_unchanged(state: Path, tmp_path: Path) -> None:
    assert run(state, "apply", "-f", str(EXAMPLES)).exit_code == 0
    out = run(state, "get", "dr", "originate-tls-for-edition-cnn-com", "-o", "yaml").stdout
    f = write(tmp_path / "dr.yaml", out)
    result = run(state, "apply", "-f", str(f))
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["destinationrule.networking.istio.io/originate-tls-for-edition-cnn-com unchanged"]


def test_get_table_lists_names(state: Path) -> None:
    assert run(state, "apply", "-f", str(EXAMPLES)).exit_code == 0
    result = run(state, "get", "se")
    assert result.exit_code == 0
    assert "cnn" in result.stdout and "edition.cnn.com" in result.stdout
    assert "istio-egressgateway" not in result.stdout


def test_get_nonexistent_is_notfound(state: Path) -> None:
    assert run(state, "apply", "-f", str(EXAMPLES)).exit_code == 0
    result = run(state, "get", "vs", "nonexistent")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert flat(result.stderr) == 'Error from server (NotFound): virtualservice.networking.istio.io "nonexistent" not found'


def test_get_unknown_type(state: Path) -> None:
    result = run(state, "get", "replicasets")
    assert result.exit_code == 1
    assert 'doesn\'t have a resource type "replicasets"' in flat(result.stderr)


# --- a new user's mistakes -------------------------------------------------------------------

NEW_USER_SE = """
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


@pytest.mark.parametrize(("mistake", "old", "new", "line", "code", "field"), [
    ("typo in a field name", "    protocol: HTTPS", "    protocl: HTTPS", 11, "EG0004", "spec.ports[0].protocl"),
    ("typo at the top", "  resolution: DNS", "  resolutoin: DNS", 12, "EG0004", "spec.resolutoin"),
    ("port out of range", "number: 443", "number: 99999", 9, "EG0005", "spec.ports[0].number"),
    ("indentation: key under a list item", "    name: https", "     name: https", 10, "EG0001", None),
    ("indentation: field dedented out of its port", "    protocol: HTTPS", "  protocol: HTTPS", 11, "EG0004",
     "spec.protocol"),
    ("indentation: spec's fields at the top level", NEW_USER_SE.split("spec:\n")[1],
     "\n".join(line[2:] for line in NEW_USER_SE.split("spec:\n")[1].splitlines()) + "\n", 6, "EG0004", "hosts"),
    ("lower-case enum", "resolution: DNS", "resolution: dns", 12, "EG0005", "spec.resolution"),
])
def test_new_user_mistakes_name_the_exact_line(state: Path, tmp_path: Path, mistake: str, old: str, new: str,
                                               line: int, code: str, field: str | None) -> None:
    text = NEW_USER_SE.replace(old, new)
    assert text != NEW_USER_SE, mistake
    f = write(tmp_path / "cnn.yaml", text)
    result = run(state, "apply", "-f", str(f))
    assert result.exit_code == 1, mistake
    err = flat(result.stderr)
    assert f"{f}:{line}: Error [{code}]" in err, (mistake, err)
    if field is not None:
        assert f" {field}:" in err, (mistake, err)
    assert "nothing was applied" in err
    assert snapshot_bytes(state) is None


def test_apply_of_yaml_with_block_scalars_and_hex_numbers_is_stored(state: Path, tmp_path: Path) -> None:
    # ruamel keeps these as special types; the store once crashed writing them.
    text = NEW_USER_SE.replace("  name: cnn\n", "  name: cnn\n  annotations:\n    owner: |\n      team egress\n      on call\n")
    f = write(tmp_path / "cnn.yaml", text.replace("number: 443", "number: 0x1bb"))
    result = run(state, "apply", "-f", str(f))
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["serviceentry.networking.istio.io/cnn created"]
    shown = yaml.safe_load(run(state, "get", "se", "cnn", "-o", "yaml").stdout)
    assert shown["metadata"]["annotations"] == {"owner": "team egress\non call\n"}
    assert shown["spec"]["ports"][0]["number"] == 443
    assert run(state, "apply", "-f", str(f)).stdout.splitlines() == ["serviceentry.networking.istio.io/cnn unchanged"]


def test_files_without_a_resource_are_kubectls_error(state: Path, tmp_path: Path) -> None:
    empty = write(tmp_path / "empty.yaml", "# nothing here yet\n---\n")
    result = run(state, "apply", "-f", str(empty))
    assert result.exit_code == 1
    assert "error: no objects passed to apply" in result.stderr
    assert snapshot_bytes(state) is None
