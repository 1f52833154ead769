"""components/services/scripts/apply-on-change.sh with a recording `docker` on PATH: a new
container only records, the same container applies a new fingerprint once, a re-run is
`unchanged`, a failed reconfigure records nothing."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from components.services.in_place import SCRIPT

ID_A, ID_B = "a" * 64, "b" * 64
FP1, FP2 = "1" * 64, "2" * 64

FAKE_DOCKER = """#!/bin/sh
echo "$*" >> "$DOCKER_LOG"
case "$1 $2" in
  "inspect -f") case "$3" in *Running*) echo true ;; *) cat "$DOCKER_ID" ;; esac ;;
  "exec "*) [ -f "$DOCKER_FAIL" ] && { echo "reconfigure broke" >&2; exit 1; } ; echo ok ;;
esac
exit 0
"""


@pytest.fixture
def env(tmp_path: Path) -> dict:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(FAKE_DOCKER)
    (bin_dir / "docker").chmod(0o755)
    (tmp_path / "id").write_text(ID_A + "\n")
    return {"PATH": f"{bin_dir}:/usr/bin:/bin", "DOCKER_LOG": str(tmp_path / "log"), "DOCKER_ID": str(tmp_path / "id"),
            "DOCKER_FAIL": str(tmp_path / "fail"), "TMP": str(tmp_path)}


def run(env: dict, action: str, container_id: str, fingerprint: str) -> subprocess.CompletedProcess:
    stamp = f"{env['TMP']}/stamp"
    return subprocess.run(["bash", str(SCRIPT), stamp, "edge", action], input=f"{container_id} {fingerprint}\n",
                          env=env, capture_output=True, text=True, timeout=30)


def calls(env: dict) -> list[str]:
    log = Path(env["DOCKER_LOG"])
    return [c for c in log.read_text().splitlines() if not c.startswith("inspect")] if log.exists() else []


def test_a_new_container_records_then_a_change_restarts_it_once(env):
    assert run(env, "restart", ID_A, FP1).stdout.startswith("recorded: edge")
    assert calls(env) == []
    assert run(env, "restart", ID_A, FP1).stdout.strip() == "unchanged"
    assert run(env, "restart", ID_A, FP2).stdout.strip() == "restarted: edge"
    assert calls(env) == ["restart --time 30 edge"]
    assert run(env, "restart", ID_A, FP2).stdout.strip() == "unchanged"
    assert calls(env) == ["restart --time 30 edge"]


def test_a_replaced_container_only_records(env):
    run(env, "restart", ID_A, FP1)
    Path(env["DOCKER_ID"]).write_text(ID_B + "\n")
    assert run(env, "restart", ID_B, FP2).stdout.startswith("recorded: edge")
    assert calls(env) == []


def test_reconfigure_execs_gitlab_ctl_and_a_failure_records_nothing(env):
    run(env, "reconfigure", ID_A, FP1)
    Path(env["DOCKER_FAIL"]).write_text("")
    failed = run(env, "reconfigure", ID_A, FP2)
    assert failed.returncode == 1 and "reconfigure broke" in failed.stderr
    Path(env["DOCKER_FAIL"]).unlink()
    assert run(env, "reconfigure", ID_A, FP2).stdout.strip() == "reconfigured: edge", "the next run tries again"
    assert calls(env) == ["exec edge gitlab-ctl reconfigure"] * 2


def test_another_container_under_the_name_stops_the_step(env):
    out = run(env, "restart", ID_B, FP1)
    assert out.returncode == 1 and "not " + ID_B in out.stderr


@pytest.mark.parametrize("line", ["", "xyz " + FP1, ID_A, ID_A + " not-hex"])
def test_bad_stdin_is_refused(env, line):
    out = subprocess.run(["bash", str(SCRIPT), f"{env['TMP']}/stamp", "edge", "restart"], input=line,
                         env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode == 2, out
