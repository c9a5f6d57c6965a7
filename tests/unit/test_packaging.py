"""What Chalice ships: requirements.txt, pyproject's dependencies and the stages in .chalice/config.json."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==([^\s;#]+)$")
# Lambda's Python runtimes provide these; a copy in the package only adds size and version drift.
RUNTIME_PROVIDED = {"boto3", "botocore", "s3transfer", "jmespath"}


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins(lines: list[str], where: str) -> dict[str, str]:
    pins: dict[str, str] = {}
    for raw in lines:
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = PIN.match(line)
        assert match, f"{where}: {line!r} is not an exact pin (name==version)"
        name = _normalise(match.group(1))
        assert name not in pins, f"{where}: {name} listed twice"
        pins[name] = match.group(3)
    return pins


def requirements() -> dict[str, str]:
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    assert not any(line.strip().startswith("-") for line in lines), "requirements.txt: no pip options"
    return _pins(lines, "requirements.txt")


def project_dependencies() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return _pins(project.get("dependencies", []), "pyproject.toml [project.dependencies]")


def test_requirements_and_pyproject_pin_the_same_versions():
    assert requirements() == project_dependencies()
    assert requirements(), "requirements.txt lists nothing: the app needs its dependencies"


def test_runtime_provided_packages_are_not_shipped():
    for name in RUNTIME_PROVIDED:
        assert name not in requirements(), f"{name} comes with the Lambda runtime: not in requirements.txt"
        assert name not in project_dependencies(), f"{name}: not a runtime dependency in pyproject.toml"


def test_dev_requirements_install_what_lambda_gets():
    lines = [line.strip() for line in (ROOT / "requirements-dev.txt").read_text().splitlines()]
    assert "-r requirements.txt" in lines


def test_chalice_stages():
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    assert config["app_name"] == "identity-broker"
    stages = config["stages"]
    assert {"local", "dev", "prod"} <= set(stages)
    assert stages["local"]["environment_variables"]["BROKER_STAGE"] == "local"
    for stage in ("dev", "prod"):
        settings = stages[stage]
        env = settings["environment_variables"]
        assert env["BROKER_STAGE"] == stage
        assert env["BROKER_ALLOW_INSECURE_LOOPBACK"] == "false"
        assert settings["autogen_policy"] is False
        assert settings["iam_policy_file"] == f"policy-{stage}.json"
        assert (ROOT / ".chalice" / settings["iam_policy_file"]).is_file()
        # API Gateway gives up on an integration after 29 s: the handler must finish first.
        assert 3 <= settings["lambda_timeout"] < 29
        assert settings["lambda_memory_size"] >= 256
        for name, function in settings.get("lambda_functions", {}).items():
            assert name == "deliver_backchannel_logout", f"no such Lambda function: {name}"
            assert function["lambda_timeout"] <= settings["lambda_timeout"]
        # never a secret in the config (it ends up in the Lambda's plain environment)
        for key in env:
            assert not re.search(r"SECRET(?!_NAME|_PREFIX)|PASSWORD|TOKEN", key), key
