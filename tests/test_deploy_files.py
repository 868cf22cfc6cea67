"""The deployment files say what they must: docker-compose.yml validated by the
real `docker-compose config` (no daemon needed), the Procfile's processes run
with an emptied multi-process metrics directory, and `.dockerignore` keeps local
state out of the image."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.integration._require import require_binaries

ROOT = Path(__file__).resolve().parents[1]
REQUIRED = {"SECRET_KEY": "s" * 40, "WEBHOOK_TOKENS": "alertmanager=t", "FLOWER_BASIC_AUTH": "ops:pw"}
IRAS_SERVICES = ("web", "worker-analysis", "worker-ops", "beat", "flower")


def _compose_config(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    binary = require_binaries("docker-compose")["docker-compose"]
    clean = {k: v for k, v in os.environ.items() if k not in REQUIRED}
    return subprocess.run(
        [binary, "-f", str(ROOT / "docker-compose.yml"), "config"],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def _yaml_to_json(text: str) -> dict[str, Any]:
    """Parsed by the YAML library of docker-compose's own interpreter (Debian's
    python3-yaml, installed with it): IRAS itself has no YAML dependency."""
    binary = require_binaries("docker-compose")["docker-compose"]
    interpreter = Path(binary).read_text(errors="replace").splitlines()[0].removeprefix("#!").split()[0]
    done = subprocess.run(
        [interpreter, "-c", "import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)"],
        input=text,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return dict(json.loads(done.stdout))


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    done = _compose_config(REQUIRED)
    assert done.returncode == 0, done.stderr
    return _yaml_to_json(done.stdout)


def test_compose_starts_every_iras_service_after_the_migration_completes(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["migrate"]["depends_on"] == {
        "postgres": {"condition": "service_healthy"},
        "redis": {"condition": "service_healthy"},
    }
    for name in IRAS_SERVICES:
        assert services[name]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}, (
            name
        )
        assert services[name]["depends_on"]["postgres"] == {"condition": "service_healthy"}, name
        assert services[name]["restart"] == "unless-stopped", name
    assert services["migrate"]["restart"] == "no"


def test_compose_web_has_a_healthcheck_and_multiprocess_metrics(compose: dict[str, Any]) -> None:
    web = compose["services"]["web"]
    assert "/health" in " ".join(web["healthcheck"]["test"])
    for name in ("web", "worker-ops"):  # several processes per container
        service = compose["services"][name]
        directory = service["environment"]["PROMETHEUS_MULTIPROC_DIR"]
        assert directory in service["tmpfs"], f"{name}: the metrics directory must start empty"


def test_compose_flower_needs_a_password_and_listens_on_loopback_only(compose: dict[str, Any]) -> None:
    flower = compose["services"]["flower"]
    assert "--basic-auth=ops:pw" in flower["command"]
    published = flower["ports"]
    assert all(str(p).startswith("127.0.0.1:") or p.get("host_ip") == "127.0.0.1" for p in published), (
        published
    )
    without = _compose_config({k: v for k, v in REQUIRED.items() if k != "FLOWER_BASIC_AUTH"})
    assert without.returncode != 0 and "FLOWER_BASIC_AUTH" in without.stderr


def test_dockerignore_keeps_local_state_out_of_the_image() -> None:
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    for entry in (".git", ".venv", ".env", "*.db", "__pycache__", "test-artifacts"):
        assert entry in ignored, entry


def _procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return dict(line.split(": ", 1) for line in lines if line.strip())


@pytest.mark.parametrize("process", ["web", "worker_ops"])
def test_procfile_multi_process_entries_get_an_emptied_metrics_directory(
    process: str, tmp_path: Path
) -> None:
    command = _procfile()[process]
    head, _, _ = command.partition("exec ")
    assert head, f"{process} must exec its server after preparing the directory"
    stale = tmp_path / f"iras-metrics-{'web' if process == 'web' else 'ops'}"
    stale.mkdir()
    (stale / "counter_1234.db").write_bytes(b"stale")
    # The entry as a Procfile runner starts it (sh -c), with its server swapped for `env`.
    done = subprocess.run(
        ["sh", "-c", head + "exec env"],
        env={"PATH": os.environ["PATH"], "TMPDIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    env = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    assert env["PROMETHEUS_MULTIPROC_DIR"] == str(stale)
    assert stale.is_dir() and list(stale.iterdir()) == [], "stale metric files are removed at start"


def test_the_documented_defaults_match_the_settings() -> None:
    """README's configuration table and .env.example agree with the code."""
    from iras.config import Settings

    readme = (ROOT / "README.md").read_text()
    default = ",".join(Settings.model_fields["remediation_allowed_commands"].default_factory())  # type: ignore[misc]
    assert f"| `REMEDIATION_ALLOWED_COMMANDS` | `{default}` |" in readme
    example = (ROOT / ".env.example").read_text()
    active = next(line for line in example.splitlines() if line.startswith("REMEDIATION_ALLOWED_COMMANDS="))
    narrowed = active.split("=", 1)[1].split(",")
    assert set(narrowed) <= set(default.split(",")), ".env.example may only narrow the default"
    assert f"# The default, {default}, narrowed" in example, ".env.example says it narrows the default"
    assert (
        "| `IRAS_MOCK_EVIDENCE` | `false` |" in readme
        and Settings.model_fields["mock_evidence"].default is False
    )


def test_every_data_folder_of_the_package_is_a_declared_package_with_its_data() -> None:
    """setuptools warns once per file (and may stop installing them) when a folder of
    package data is not itself in `packages`: templates, static files, demo scenarios."""
    import configparser

    from setuptools import find_namespace_packages

    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    assert cfg["options"]["packages"].strip() == "find_namespace:"
    found = cfg["options.packages.find"]
    packages = set(
        find_namespace_packages(
            where=str(ROOT),
            include=found["include"].replace(",", " ").split(),
            exclude=found["exclude"].split(),
        )
    )
    declared = {key.strip() for key in cfg["options.package_data"]}
    for folder in (ROOT / "iras").rglob("*"):
        if not folder.is_dir() or folder.name == "__pycache__":
            continue
        data = [p for p in folder.iterdir() if p.is_file() and p.suffix not in (".py", ".pyc")]
        name = ".".join(folder.relative_to(ROOT).parts)
        if data:
            assert name in packages, f"{name} holds data but is not a package"
            assert name in declared, f"{name}'s files are not declared as package data"
    assert not any("__pycache__" in p for p in packages)
