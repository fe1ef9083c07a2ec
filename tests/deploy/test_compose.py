"""docker-compose.yml (no Docker engine here): every command is a real `trainctl` command line and
every TRAINCTL_* variable is a setting."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from typer.testing import CliRunner

from core.config import Settings
from trainctl.cli import app

ROOT = Path(__file__).resolve().parents[2]


def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def parse_trainctl(argv: list[str]) -> None:
    """Check a command line against the CLI: unknown commands and options fail the parse (exit 2)."""
    assert argv[0] == "trainctl", argv
    # --help is handled after parsing: the command and every option must exist, and nothing runs.
    outcome = CliRunner().invoke(app, [*argv[1:], "--help"])
    assert outcome.exit_code == 0, f"{argv}: {outcome.output}"
    assert f"trainctl {argv[1]}" in " ".join(outcome.output.split()), outcome.output


def test_services_run_real_trainctl_commands() -> None:
    services = compose()["services"]
    assert {"api", "worker", "reaper", "postgres", "redis", "minio"} <= set(services)
    trainctl_services = [svc for svc in services.values() if svc.get("command", [""])[0] == "trainctl"]
    assert len(trainctl_services) >= 3
    for service in trainctl_services:
        parse_trainctl(service["command"])


def test_parser_rejects_what_the_cli_rejects() -> None:
    for bad in (["trainctl", "wrker"], ["trainctl", "worker", "--gpus", "2"]):
        outcome = CliRunner().invoke(app, [*bad[1:], "--help"])
        assert outcome.exit_code == 2, f"{bad} was accepted"


def test_every_trainctl_variable_is_a_setting() -> None:
    fields = set(Settings.model_fields)
    for name, service in compose()["services"].items():
        for variable in service.get("environment") or {}:
            if variable.startswith("TRAINCTL_"):
                field = variable.removeprefix("TRAINCTL_").lower()
                assert field in fields, f"{name}: {variable} is not a setting"


def test_health_checks_and_gpu_reservation() -> None:
    services = compose()["services"]
    for name in ("api", "worker", "postgres", "redis", "minio"):
        assert "healthcheck" in services[name], name
    devices = services["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]


def test_flower_is_optional_and_reads_the_workers_broker() -> None:
    services = compose()["services"]
    flower = services["flower"]
    assert flower["profiles"] == ["monitoring"]  # not started by a plain `docker compose up`
    broker = services["api"]["environment"]["TRAINCTL_BROKER_URL"]
    assert f"--broker={broker}" in flower["command"] and "flower" in flower["command"]
    assert flower["ports"] == ["127.0.0.1:5555:5555"]  # no authentication: this host only
