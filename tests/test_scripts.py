"""The host scripts and rendered host files, checked with real tools."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT
from tools import require_tool

from components.config import DockerEngineConfig
from components.host.docker_host import DROP_IN, systemd_drop_in

SCRIPTS = sorted((ROOT / "components").glob("*/scripts/*.sh"))


def test_there_are_scripts_to_check():
    assert {p.name for p in SCRIPTS} >= {"install-docker.sh", "host-setup.sh", "configure-docker.sh"}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_shellcheck_passes(script: Path):
    shellcheck = require_tool("shellcheck")
    result = subprocess.run([shellcheck, "--severity=style", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_is_strict_bash(script: Path):
    lines = script.read_text().splitlines()
    assert lines[0] == "#!/usr/bin/env bash", script.name
    assert "set -euo pipefail" in lines, script.name


def test_systemd_drop_in_verifies_with_systemd_analyze(tmp_path: Path):
    analyze = require_tool("systemd-analyze")
    unit = Path("/lib/systemd/system/docker.service")
    if not unit.exists():
        message = "docker.service is not installed (Debian's docker.io provides it; make deps installs it)"
        if os.environ.get("DELIVERY_REQUIRE_TOOLS") == "1":
            pytest.fail(message)
        pytest.skip(message)
    units = tmp_path / "units"
    (units / "docker.service.d").mkdir(parents=True)
    (units / "docker.service").write_text(unit.read_text())
    (units / "docker.service.d" / Path(DROP_IN).name).write_text(systemd_drop_in(DockerEngineConfig(package="docker.io")))
    for dep in ("docker.socket", "containerd.service"):
        src = Path("/lib/systemd/system") / dep
        if src.exists():
            (units / dep).write_text(src.read_text())
    env = dict(os.environ, SYSTEMD_UNIT_PATH=f"{units}:")
    result = subprocess.run(
        [analyze, "verify", "--man=no", str(units / "docker.service")], capture_output=True, text=True, env=env
    )
    problems = [l for l in (result.stdout + result.stderr).splitlines() if "docker.service" in l]
    assert result.returncode == 0 and not problems, result.stdout + result.stderr


def test_broken_drop_in_is_caught_by_systemd_analyze(tmp_path: Path):
    """The check above can fail: a drop-in pointing at a missing binary is reported."""
    analyze = require_tool("systemd-analyze")
    units = tmp_path / "units"
    (units / "docker.service.d").mkdir(parents=True)
    (units / "docker.service").write_text("[Service]\nType=notify\nExecStart=/bin/true\n")
    (units / "docker.service.d" / "10-delivery.conf").write_text("[Service]\nExecStart=\nExecStart=/nonexistent/dockerd\n")
    env = dict(os.environ, SYSTEMD_UNIT_PATH=f"{units}:")
    result = subprocess.run([analyze, "verify", "--man=no", str(units / "docker.service")], capture_output=True, text=True, env=env)
    assert result.returncode != 0, result.stdout + result.stderr
    assert "/nonexistent/dockerd" in result.stdout + result.stderr
