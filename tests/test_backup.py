"""Backups (components/operations/backup.py, components/config/backup.py): opt-in, placement by
role, what the install step sends (secrets only in its secret stdin), the units (checked with
systemd-analyze), the config errors."""

from __future__ import annotations

import base64
import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pulumi
import pytest

from conftest import PRODUCTION_SECRETS, StackRun, production_config, run_stack

from components.config import load_stack_config
from components.operations.backup import CHECK_SERVICE, ETC, RESTORE, TOOL, UNIT_DIR, service_name

CMD = "command:remote:Command"
REPO = "sftp:backup@192.0.2.40:/srv/Mock-restic-repo"
PASSWORD = "Mock-restic-password-Hh7"
KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nMOCKbackupKEYbody\n-----END OPENSSH PRIVATE KEY-----\n"
KNOWN = "192.0.2.40 ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTY="
WEBHOOK = "https://hooks.example.net/Mock-hook-token"
BACKUP = {
    "backupRepository": REPO, "backupPassword": PASSWORD, "backupSftpPrivateKey": KEY,
    "backupSftpKnownHosts": KNOWN, "backupWebhookUrl": WEBHOOK,
}  # fmt: skip


def files_of(run: StackRun, name: str) -> dict[str, tuple[int, str]]:
    r = run.named(name)
    tar = tarfile.open(fileobj=io.BytesIO(base64.b64decode(r.plain["stdin"])))
    return {"/" + m.name: (m.mode, tar.extractfile(m).read().decode()) for m in tar.getmembers()}


def load(config: dict) -> None:
    pulumi.runtime.set_all_config(
        {f"delivery:{k}": v if isinstance(v, str) else json.dumps(v) for k, v in config.items()},
        secret_keys=[f"delivery:{k}" for k in PRODUCTION_SECRETS if k in config],
    )
    load_stack_config(project="delivery", stack="production")


def error_of(config: dict) -> str:
    with pytest.raises(pulumi.RunError) as e:
        load(config)
    return str(e.value)


def test_no_repository_no_backup_units():
    run = run_stack(production_config(), secrets=PRODUCTION_SECRETS)
    assert not run.of_type("delivery:operations:Backup")
    assert not [r for r in run.of_type(CMD) if r.name.endswith("-backup-install")]


def test_each_host_with_state_gets_its_sets():
    run = run_stack(production_config(**BACKUP), secrets=PRODUCTION_SECRETS)
    services = files_of(run, "services-backup-install")
    production = files_of(run, "production-backup-install")
    assert f"{UNIT_DIR}/{service_name('gitlab')}" in services and f"{UNIT_DIR}/delivery-backup-gitlab.timer" in services
    assert f"{UNIT_DIR}/{CHECK_SERVICE}" in services, "restic check runs on the GitLab host"
    assert RESTORE in services
    assert f"{UNIT_DIR}/{service_name('edge')}" in production and f"{UNIT_DIR}/{CHECK_SERVICE}" not in production
    assert production[f"{ETC}/sets/edge"][1] == "/srv/traefik/letsencrypt\n/srv/gitlab-runner/config\n"
    assert "ExecStart=/usr/local/lib/delivery/backup.sh backup gitlab\n" in services[f"{UNIT_DIR}/delivery-backup-gitlab.service"][1]
    assert "OnCalendar=*-*-* 02:30:00\n" in services[f"{UNIT_DIR}/delivery-backup-gitlab.timer"][1]
    assert "OnFailure=delivery-backup-failed@%n.service\n" in services[f"{UNIT_DIR}/delivery-backup-gitlab.service"][1]


def test_secrets_reach_the_host_only_in_secret_stdin():
    run = run_stack(production_config(**BACKUP), secrets=PRODUCTION_SECRETS)
    r = run.named("services-backup-install")
    assert r.secret("stdin"), r.urn
    assert PASSWORD not in r.plain["create"] and REPO not in r.plain["create"] and "192.0.2.40" not in r.plain["create"], r.urn
    files = files_of(run, "services-backup-install")
    assert files[f"{ETC}/repository"] == (0o600, REPO + "\n")
    assert files[f"{ETC}/password"] == (0o600, PASSWORD + "\n")
    assert files[f"{ETC}/ssh_key"] == (0o600, KEY)
    assert files[f"{ETC}/webhook.curl"] == (0o600, f'url = "{WEBHOOK}"\n')
    ssh_config = files[f"{ETC}/ssh_config"][1]
    assert "HostName 192.0.2.40" in ssh_config and "User backup" in ssh_config and "StrictHostKeyChecking yes" in ssh_config
    assert files[TOOL][0] == 0o755


def test_s3_repository_gets_credentials_file():
    cfg = production_config(
        backupRepository="s3:https://s3.example.net/bucket/platform", backupPassword=PASSWORD,
        backupCredentials={"AWS_ACCESS_KEY_ID": "Mock-access-key", "AWS_SECRET_ACCESS_KEY": "Mock-secret-key"},
    )  # fmt: skip
    run = run_stack(cfg, secrets=PRODUCTION_SECRETS)
    files = files_of(run, "services-backup-install")
    assert files[f"{ETC}/credentials.env"] == (0o600, "AWS_ACCESS_KEY_ID=Mock-access-key\nAWS_SECRET_ACCESS_KEY=Mock-secret-key\n")
    assert f"{ETC}/ssh_config" not in files


def test_units_pass_systemd_analyze(tmp_path: Path):
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze not installed")
    run = run_stack(production_config(**BACKUP, backupGitlabSkip=["registry"]), secrets=PRODUCTION_SECRETS)
    files = files_of(run, "services-backup-install")
    assert "GITLAB_SKIP=registry\n" in files[f"{ETC}/backup.conf"][1]
    units = {Path(p).name: c for p, (_, c) in files.items() if p.startswith(UNIT_DIR)}
    for name, content in units.items():
        # the units name /usr/local/lib/delivery/backup.sh, which does not exist here: point them at bash
        (tmp_path / name).write_text(content.replace(TOOL, "/bin/bash " + TOOL))
    services = [str(tmp_path / n) for n in units if n.endswith((".service", ".timer")) and "@" not in n]
    out = subprocess.run([tool, "verify", *services], capture_output=True, text=True, timeout=60)
    problems = [line for line in out.stderr.splitlines() if "delivery-backup" in line and "backup.sh" not in line]
    assert not problems, out.stderr
    for schedule in ("*-*-* 02:30:00", "Sun *-*-* 05:00:00"):
        assert subprocess.run([tool, "calendar", schedule], capture_output=True, timeout=30).returncode == 0


def test_sftp_repository_needs_key_and_known_hosts():
    message = error_of(production_config(backupRepository=REPO, backupPassword=PASSWORD))
    assert "delivery:backupSftpPrivateKey: missing" in message
    assert "delivery:backupSftpKnownHosts: missing" in message


def test_bad_repository_url_is_refused_without_showing_it():
    message = error_of(production_config(**{**BACKUP, "backupRepository": "ftp://Mock-secret-host/x"}))
    assert "delivery:backupRepository: expected an sftp: or s3: restic repository" in message
    assert "Mock-secret-host" not in message


def test_password_without_repository_is_refused():
    message = error_of(production_config(backupPassword=PASSWORD))
    assert "delivery:backupPassword: is set, but delivery:backupRepository is not" in message


def test_repository_must_be_secret():
    cfg = production_config(**BACKUP)
    pulumi.runtime.set_all_config(
        {f"delivery:{k}": v if isinstance(v, str) else json.dumps(v) for k, v in cfg.items()},
        secret_keys=[f"delivery:{k}" for k in PRODUCTION_SECRETS if k in cfg and k != "backupRepository"],
    )
    with pytest.raises(pulumi.RunError, match="delivery:backupRepository: is a secret"):
        load_stack_config(project="delivery", stack="production")


def test_unknown_skip_is_refused():
    message = error_of(production_config(**BACKUP, backupGitlabSkip=["database"]))
    assert "delivery:backupGitlabSkip[0]: expected one of db, repositories" in message
