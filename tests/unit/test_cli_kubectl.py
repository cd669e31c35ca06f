"""kubectl's habits: flags before or after the verb, ``get -o json|yaml|name|wide|jsonpath``,
kubectl's columns, ``delete KIND NAME``, ``describe``, ``logs --tail``, ``exec`` errors,
``version``, completion, and a state directory found as kubectl finds its context (never a
new, empty store behind the user's back)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner, Result

from exitgate.cli.main import build_app, normalize_argv
from exitgate.cli.kubectl import jsonpath
from exitgate.runtime import ProxyRecord, RuntimeInfo, StateDir

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "tls-origination"


@pytest.fixture(autouse=True)
def _no_ambient_state(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("EXITGATE_HOME", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    monkeypatch.chdir(tmp_path)


def run(*args: str) -> Result:
    return CliRunner().invoke(build_app(), normalize_argv(list(args)))


@pytest.fixture
def state(tmp_path: Path) -> Path:
    root = tmp_path / "state"
    assert run("apply", "--state-dir", str(root), "-f", str(EXAMPLES)).exit_code == 0
    return root


def test_flags_before_the_verb_or_between_group_and_command(state: Path, tmp_path: Path) -> None:
    crt = tmp_path / "c.pem"
    crt.write_text("x")
    result = run("--state-dir", str(state), "-n", "istio-system", "create", "secret", "generic", "client-credential",
                 f"--from-file=tls.crt={crt}")
    assert result.exit_code == 0, result.output
    assert "secret/client-credential created" in result.stdout
    result = run("create", "-n", "istio-system", "secret", "generic", "other", f"--from-file=ca.crt={crt}",
                 "--state-dir", str(state))
    assert result.exit_code == 0, result.output
    got = run("get", "secret", "-n", "istio-system", "--state-dir", str(state)).stdout.splitlines()
    assert got[0].split() == ["NAME", "TYPE", "DATA", "AGE"]
    assert [line.split()[:3] for line in got[1:]] == [["client-credential", "Opaque", "1"], ["other", "Opaque", "1"]]
    # `--` ends the options: what follows is the command's own.
    assert normalize_argv(["-n", "a", "exec", "sleep", "--", "sh", "-n", "x"]) == ["exec", "sleep", "--namespace", "a",
                                                                                  "--", "sh", "-n", "x"]


def test_get_outputs_and_columns(state: Path) -> None:
    s = ["--state-dir", str(state)]
    table = run("get", "se", *s).stdout.splitlines()
    assert table[0].split() == ["NAME", "HOSTS", "LOCATION", "RESOLUTION", "AGE"]
    assert table[1].split() == ["cnn", '["edition.cnn.com"]', "DNS", "<unknown>"]
    assert run("get", "vs", *s).stdout.splitlines()[0].split() == ["NAME", "GATEWAYS", "HOSTS", "AGE"]
    one = json.loads(run("get", "serviceentry", "cnn", "-o", "json", *s).stdout)
    assert one["kind"] == "ServiceEntry" and one["spec"]["hosts"] == ["edition.cnn.com"]
    many = json.loads(run("get", "dr", "-o", "json", *s).stdout)
    assert many["kind"] == "List" and len(many["items"]) == 2
    assert yaml.safe_load(run("get", "dr", "-o", "yaml", *s).stdout)["items"][0]["kind"] == "DestinationRule"
    assert run("get", "dr", "-o", "name", *s).stdout.splitlines() == [
        "destinationrule.networking.istio.io/egressgateway-for-cnn",
        "destinationrule.networking.istio.io/originate-tls-for-edition-cnn-com"]
    assert run("get", "se", "cnn", "-o", "jsonpath={.spec.hosts[0]}", *s).stdout == "edition.cnn.com"
    assert run("get", "dr", "-o", "jsonpath={.items[*].metadata.name}", *s).stdout == \
        "egressgateway-for-cnn originate-tls-for-edition-cnn-com"
    assert run("get", "dr", "-o", 'jsonpath={range .items[*]}{.spec.host}{"\\n"}{end}', *s).stdout == \
        "istio-egressgateway.istio-system.svc.cluster.local\nedition.cnn.com\n"
    assert run("get", "se", "-o", "wide", *s).stdout == run("get", "se", *s).stdout
    bad = run("get", "se", "-o", "xml", *s)
    assert bad.exit_code == 1 and 'unable to match a printer suitable for the output format "xml"' in bad.stderr
    wide = run("get", "all", "-A", *s).stdout
    assert "NAMESPACE" in wide and "serviceentry.networking.istio.io/cnn" in wide
    long_name = "istio-egressgateway.istio-system.svc.cluster.local"
    # A pipe gets whole names, however long the line.
    assert long_name in run("get", "dr", "-o", "jsonpath={.items[0].spec.host}", *s).stdout
    assert run("get", "nosuchkind", *s).exit_code == 1


def test_delete_by_kind_and_name_and_describe(state: Path) -> None:
    s = ["--state-dir", str(state)]
    described = run("describe", "dr", "originate-tls-for-edition-cnn-com", *s).stdout
    assert "Name:         originate-tls-for-edition-cnn-com" in described and "Mode:  SIMPLE" in described
    result = run("delete", "serviceentry", "cnn", *s)
    assert result.exit_code == 0 and result.stdout == 'serviceentry.networking.istio.io "cnn" deleted\n'
    again = run("delete", "se", "cnn", *s)
    assert again.exit_code == 1 and "NotFound" in again.stderr
    assert run("delete", "se", *s).exit_code == 1  # a kind without a name


def test_no_state_directory_is_created_behind_the_users_back(tmp_path: Path) -> None:
    result = run("apply", "-f", str(EXAMPLES))
    assert result.exit_code == 1 and "no exitgate state directory here" in result.stderr
    assert not (tmp_path / ".exitgate").exists()
    # The nearest .exitgate of this directory or a parent is the one meant, as git finds its repository.
    (tmp_path / ".exitgate").mkdir()
    (tmp_path / "sub").mkdir()
    os.chdir(tmp_path / "sub")
    assert run("apply", "-f", str(EXAMPLES / "01-serviceentry.yaml")).exit_code == 0
    assert (tmp_path / ".exitgate" / "config.yaml").exists() and not (tmp_path / "sub" / ".exitgate").exists()


def test_the_running_up_is_found_from_anywhere(tmp_path: Path) -> None:
    from exitgate.runtime import clear_current, register_current

    root = tmp_path / "elsewhere" / "state"
    root.mkdir(parents=True)
    register_current(root, os.getpid())
    assert run("apply", "-f", str(EXAMPLES / "01-serviceentry.yaml")).exit_code == 0
    assert (root / "config.yaml").exists()
    clear_current(os.getpid())
    assert run("get", "se").exit_code == 1
    # The per-user default, once `up` has made it, is the one meant when nothing else is.
    from exitgate.runtime import resolve_state_dir, user_default_state_dir

    assert resolve_state_dir(None, for_up=True) == user_default_state_dir()
    user_default_state_dir().mkdir(parents=True)
    assert run("apply", "-f", str(EXAMPLES / "01-serviceentry.yaml")).exit_code == 0
    assert (user_default_state_dir() / "config.yaml").exists()


def _fake_running(root: Path) -> None:
    st = StateDir(root)
    st.prepare()
    log = st.log_dir / "sleep.default.log"
    log.write_text("one\ntwo\nthree\n")
    st.write_runtime(RuntimeInfo(os.getpid(), 1, [ProxyRecord("sleep", "default", "sidecar", "n", 1, str(log), proxy_port=9)]))


def test_logs_tail_and_exec_errors(tmp_path: Path) -> None:
    root = tmp_path / "state"
    _fake_running(root)
    s = ["--state-dir", str(root)]
    assert run("logs", "sleep", "--tail", "0", *s).stdout == ""
    assert run("logs", "sleep", "--tail", "2", *s).stdout == "two\nthree\n"
    assert run("logs", "deploy/sleep", *s).stdout == "one\ntwo\nthree\n"
    missing = run("exec", "sleep", "-it", *s, "--", "no-such-command-here")
    assert missing.exit_code == 127 and 'exec: "no-such-command-here": executable file not found in $PATH' in missing.stderr
    assert "Traceback" not in missing.output
    assert run("exec", "nobody", *s, "--", "true").exit_code == 1


def test_version_and_completion(tmp_path: Path) -> None:
    out = run("version").stdout
    assert out.startswith("client version: ") and "control plane version: none running" in out
    script = run("completion", "bash").stdout
    assert "_EXITGATE_COMPLETE=complete_bash" in script
    assert run("completion", "tcsh").exit_code == 1


def test_jsonpath_subset() -> None:
    data = {"items": [{"a": {"b": [1, 2]}}, {"a": {"b": [3]}}]}
    assert jsonpath("{.items[*].a.b[0]}", data) == "1 3"
    assert jsonpath("{.items[-1].a}", data) == '{"b":[3]}'
    assert jsonpath("x={.items[0].a.b[1]}", data) == "x=2"


def test_dns_stand_in_as_a_command() -> None:
    """`exitgate dns HOST=ADDRESS` answers those names (and NXDOMAIN for others) until SIGTERM."""
    import signal
    import subprocess
    import sys


    from dnslib import DNSRecord

    from exitgate.envoy.ports import free_port

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "exitgate.cli.main", "dns", "edition.cnn.com=127.0.0.7",
                             "--port", str(port)], stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline() if proc.stderr else ""
        assert f"127.0.0.1:{port}" in line and 'resolvers: ["127.0.0.1:' in line
        answer = DNSRecord.parse(DNSRecord.question("edition.cnn.com").send("127.0.0.1", port, timeout=5))
        assert [str(r.rdata) for r in answer.rr] == ["127.0.0.7"]
        other = DNSRecord.parse(DNSRecord.question("example.org").send("127.0.0.1", port, timeout=5))
        assert other.header.rcode == 3  # NXDOMAIN
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    bad = run("dns", "edition.cnn.com=not-an-ip")
    assert bad.exit_code == 1 and "HOST=ADDRESS" in bad.stderr



def test_external_port_map_per_host() -> None:
    from exitgate.mesh import MeshConfig

    mesh = MeshConfig.model_validate({"externalPortMap": {443: 18443, "edition.cnn.com:443": 28443}})
    assert mesh.external_port(443, "edition.cnn.com") == 28443
    assert mesh.external_port(443, "other.example") == 18443 and mesh.external_port(80) == 80
    with pytest.raises(ValueError, match="neither a port nor HOST:PORT"):
        MeshConfig.model_validate({"externalPortMap": {"edition.cnn.com": 1}})
