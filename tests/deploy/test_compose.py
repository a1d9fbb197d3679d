"""compose.yaml is checked here, since `docker compose` itself is not on every
machine: with the Compose CLI, by `docker compose config`; everywhere, by a check
of the structure the deployment relies on and of its agreement with
deploy/nginx.conf and the Dockerfile."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose.yaml"


def _compose_cli() -> bool:
    if not shutil.which("docker"):
        return False
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=20)
    return probe.returncode == 0


@pytest.mark.skipif(not _compose_cli(), reason="the Docker Compose CLI is not installed here; "
                    "the structure check below runs instead")
def test_docker_compose_config_accepts_the_file() -> None:
    env = {**os.environ, "JWT_SECRET": "compose-config-check-" + "x" * 20}
    result = subprocess.run(["docker", "compose", "-f", str(COMPOSE), "config", "--quiet"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def _services() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE.read_text())  # resolves the x-roomcast anchors
    assert isinstance(document, dict) and isinstance(document.get("services"), dict)
    services: dict[str, Any] = document["services"]
    return services


def test_compose_structure_is_what_the_deployment_relies_on() -> None:
    document = yaml.safe_load(COMPOSE.read_text())
    services = _services()
    assert set(services) == {"redis", "worker", "gateway-a", "gateway-b", "lb"}
    known = {"image", "build", "command", "environment", "volumes", "ports", "depends_on",
             "healthcheck", "restart", "stop_grace_period"}
    for name, service in services.items():
        assert set(service) <= known, (name, set(service) - known)
        assert ("image" in service) != ("build" in service), name
        for dependency in service.get("depends_on", []):
            assert dependency in services, (name, dependency)
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), (name, volume)
            else:
                assert source in (document.get("volumes") or {}), (name, volume)

    redis = services["redis"]
    assert "--appendonly" in redis["command"] and "yes" in redis["command"]  # AOF: SPEC §8
    assert redis["healthcheck"]["test"]
    for name in ("worker", "gateway-a", "gateway-b"):
        service = services[name]
        assert service["build"] == "." and (ROOT / "Dockerfile").exists()
        assert service["command"][0] == "roomcast"
        assert service["depends_on"]["redis"]["condition"] == "service_healthy"
        env = service["environment"]
        assert env["REDIS_URL"].startswith("redis://redis:")
        assert env["JWT_SECRET"].startswith("${JWT_SECRET:?"), "fails loudly when unset"
    assert services["worker"]["command"][1] == "worker"
    ids = {services[g]["environment"]["GATEWAY_INSTANCE_ID"] for g in ("gateway-a", "gateway-b")}
    assert len(ids) == 2, "two live gateways never share an instance id"

    lb = services["lb"]
    assert lb["image"].startswith("nginx:")
    assert lb["ports"] == ["8000:8000"]
    assert lb["volumes"] == ["./deploy/nginx.conf:/etc/nginx/nginx.conf:ro"]
    assert set(lb["depends_on"]) == {"gateway-a", "gateway-b"}


def test_nginx_upstreams_are_the_compose_gateways_on_their_ports() -> None:
    services = _services()
    conf = (ROOT / "deploy" / "nginx.conf").read_text()
    upstreams = set(re.findall(r"server (\S+):(\d+) ", conf))
    expected = set()
    for name in ("gateway-a", "gateway-b"):
        command = services[name]["command"]
        assert command[1] == "gateway"
        assert command[command.index("--host") + 1] == "0.0.0.0"
        expected.add((name, command[command.index("--port") + 1]))
    assert upstreams == expected
    assert re.search(r"listen (\d+);", conf).group(1) == "8000"  # type: ignore[union-attr]
