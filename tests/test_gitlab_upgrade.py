"""Safe GitLab upgrades (components/operations/upgrade.py): the required stops, the refusal cases
(downgrade, a skipped stop) and the allowed path, at preview (the stack's previous output) and in
the pre-upgrade script on the host (run here with stand-ins of `docker` and `systemctl` that
report a running version and record calls), and the order: the container waits for the backup."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pulumi
import pytest
import yaml

from conftest import PRODUCTION_SECRETS, production_config, run_stack

from components.operations.upgrade import DATA, SCRIPT, stops_argument, upgrade_refusal, upgrade_stops

OWN_STACK = "organization/delivery/production"


def test_stops_are_data_with_their_source():
    data = yaml.safe_load(DATA.read_text())
    assert data["source"]["path"] == "config/upgrade_path.yml" and len(data["source"]["commit"]) == 40
    stops = upgrade_stops()
    assert list(stops) == sorted(stops)
    assert {(17, 11), (18, 2), (18, 5)} <= set(stops)


@pytest.mark.parametrize(
    "current,target",
    [("18.2.8-ce.0", "18.5.1-ce.0"), ("17.11.7-ce.0", "18.2.0-ce.0"), ("18.5.1-ce.0", "18.5.3-ce.0"), ("18.3.0-ce.0", "18.5.1-ce.0")],
)
def test_allowed_path(current: str, target: str):
    assert upgrade_refusal(current, target) is None


def test_downgrade_is_refused():
    message = upgrade_refusal("18.5.1-ce.0", "18.2.8-ce.0")
    assert message is not None and message.startswith("delivery:gitlabVersion:") and "downgrade" in message


def test_patch_downgrade_is_refused():
    assert upgrade_refusal("18.5.2-ce.0", "18.5.1-ce.0") is not None


def test_skipped_stop_is_refused_naming_the_next_allowed_version():
    message = upgrade_refusal("17.11.7-ce.0", "18.5.1-ce.0")
    assert message is not None
    assert "skips the required upgrade stop 18.2" in message and "the next allowed version is 18.2.x" in message


def test_the_first_skipped_stop_is_named():
    message = upgrade_refusal("17.3.0-ce.0", "18.5.1-ce.0")
    assert message is not None and "stop 17.5;" in message


def run_with(previous: str | None, version: str):
    outputs = {OWN_STACK: {"gitlabVersion": previous} if previous else {}}
    return run_stack(production_config(gitlabVersion=version), secrets=PRODUCTION_SECRETS, stack_outputs=outputs)


def test_preview_refuses_a_skipped_stop_before_anything_changes():
    with pytest.raises(Exception, match=r"delivery:gitlabVersion: upgrading GitLab from 17\.11\.7-ce\.0 to 18\.5\.1-ce\.0 skips"):
        run_with("17.11.7-ce.0", "18.5.1-ce.0")


def test_preview_refuses_a_downgrade():
    with pytest.raises(Exception, match=r"delivery:gitlabVersion: 18\.2\.8-ce\.0 is older than the running 18\.5\.1-ce\.0"):
        run_with("18.5.1-ce.0", "18.2.8-ce.0")


def test_allowed_upgrade_evaluates_and_exports_the_version():
    run = run_with("18.2.8-ce.0", "18.5.1-ce.0")
    assert run.outputs["gitlabVersion"] == "18.5.1-ce.0"


def test_fresh_stack_has_nothing_to_compare():
    run = run_with(None, "18.5.1-ce.0")
    assert run.outputs["gitlabVersion"] == "18.5.1-ce.0"


def test_container_waits_for_the_pre_upgrade_backup():
    run = run_stack(production_config(), secrets=PRODUCTION_SECRETS)
    step = run.named("gitlab-upgrade-pre-upgrade")
    container = run.named("gitlab-server-container")
    assert step.urn in container.dependencies, container.urn
    assert step.plain["stdin"] == "18.5.1-ce.0\n"


def test_pre_upgrade_runs_the_backup_unit_when_backups_are_configured():
    cfg = production_config(
        backupRepository="sftp:backup@192.0.2.40:/srv/r", backupPassword="Mock-restic-password-Hh7",
        backupSftpPrivateKey="-----BEGIN OPENSSH PRIVATE KEY-----\nK\n-----END OPENSSH PRIVATE KEY-----\n",
        backupSftpKnownHosts="192.0.2.40 ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTY=",
    )  # fmt: skip
    run = run_stack(cfg, secrets=PRODUCTION_SECRETS)
    step = run.named("gitlab-upgrade-pre-upgrade")
    assert step.plain["create"].endswith(" delivery-backup-gitlab.service"), step.urn
    assert run.named("services-backup-install").urn in step.dependencies


# -- the script on the host, with stand-ins of docker and systemctl -----------------------------------
def host_run(tmp_path: Path, running: str | None, new: str, unit: bool = True) -> tuple[int, str, list[str]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    calls = tmp_path / "calls"
    image = f"gitlab/gitlab-ce:{running}" if running else ""
    (bin_dir / "docker").write_text(
        f'#!/bin/bash\necho "docker $*" >>{calls}\n'
        f'if [ "$1" = inspect ]; then [ -n "{image}" ] || exit 1; echo sha256:0123abcd; fi\n'
        f'if [ "$1 $2" = "image inspect" ]; then echo gitlab/gitlab-ce:latest; echo "{image}"; echo; fi\n'
    )
    (bin_dir / "systemctl").write_text(f'#!/bin/bash\necho "systemctl $*" >>{calls}\n')
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    args = ["gitlab", stops_argument(), *(["delivery-backup-gitlab.service"] if unit else [])]
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    p = subprocess.run(["bash", str(SCRIPT), *args], input=new + "\n", capture_output=True, text=True, env=env, timeout=30)
    recorded = calls.read_text().splitlines() if calls.exists() else []
    return p.returncode, p.stdout + p.stderr, recorded


def test_script_refuses_a_skipped_stop_and_changes_nothing(tmp_path: Path):
    code, out, calls = host_run(tmp_path, "17.11.7-ce.0", "18.5.1-ce.0")
    assert code == 1 and "skips the required upgrade stop 18.2" in out, out
    assert not [c for c in calls if c.startswith("systemctl")], calls


def test_script_refuses_a_downgrade(tmp_path: Path):
    code, out, calls = host_run(tmp_path, "18.5.1-ce.0", "18.2.8-ce.0")
    assert code == 1 and "refusing to downgrade" in out, out
    assert not [c for c in calls if c.startswith("systemctl")], calls


def test_script_backs_up_before_an_allowed_upgrade(tmp_path: Path):
    code, out, calls = host_run(tmp_path, "18.2.8-ce.0", "18.5.1-ce.0")
    assert code == 0, out
    assert "systemctl start delivery-backup-gitlab.service" in calls
    assert "backed up (delivery-backup-gitlab.service) before upgrading GitLab from 18.2.8-ce.0 to 18.5.1-ce.0" in out


@pytest.mark.parametrize("running", [None, "18.5.1-ce.0"])
def test_script_is_unchanged_without_a_container_or_at_the_same_version(tmp_path: Path, running):
    code, out, calls = host_run(tmp_path, running, "18.5.1-ce.0")
    assert code == 0 and out.startswith("unchanged"), out
    assert not [c for c in calls if c.startswith("systemctl")], calls


@pytest.mark.parametrize(
    "current,target",
    [("17.11.7-ce.0", "18.5.1-ce.0"), ("18.5.1-ce.0", "18.2.8-ce.0"), ("18.2.8-ce.0", "18.5.1-ce.0"), ("16.11.2-ce.0", "17.1.0-ce.0"),
     ("16.7.0-ce.0", "17.3.0-ce.0"), ("18.4.0-ce.0", "18.8.1-ce.0")],
)
def test_script_and_preview_agree(tmp_path: Path, current: str, target: str):
    code, _, _ = host_run(tmp_path, current, target)
    assert (code == 0) == (upgrade_refusal(current, target) is None)


def test_script_backs_up_when_the_running_version_is_unknown(tmp_path: Path):
    # an image without a gitlab/gitlab-ce:<version> tag: only the preview check applied; still backed up
    code, out, calls = host_run(tmp_path, "not-a-version", "18.5.1-ce.0")
    assert code == 0 and "version is unknown" in out, out
    assert "systemctl start delivery-backup-gitlab.service" in calls
