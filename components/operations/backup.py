"""Backups: restic to an off-host repository, run by systemd timers (docs/operations.md, "Backups").

On each host that holds state (pulumi-command, scripts/install-backup.sh):

* the `gitlab` set on the host with the `gitlab` role: `gitlab-backup create` in the GitLab
  container, then GitLab's archive, `gitlab-secrets.json` and `gitlab.rb` (GitLab's archive
  holds neither) go to the repository;
* the `edge` set on the hosts with the `traefik` role or a runner role: Traefik's ACME state
  (`/srv/traefik/letsencrypt`) and the runners' config (`/srv/gitlab-runner/config`);
* `restic forget --keep-last <backupKeep> --prune` per set and host after each backup;
* `restic check` on one host (the GitLab host, else the first one) on `backupCheckSchedule`;
* a failed backup or check fails its unit, whose `OnFailure=` calls the webhook, if any.

The repository URL, its password, the SFTP key and the S3 keys reach the host only inside the
secret stdin of the install step and are read by restic from root-only files
(RESTIC_REPOSITORY_FILE, RESTIC_PASSWORD_FILE, an ssh_config): never a command line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional, Sequence

import pulumi
import pulumi_command as command

from ..config import HostConfig, StackConfig
from ..config.backup import BackupConfig, SftpTarget
from ..host.docker_host import DockerHost
from ..host.remote_script import FileSpec, run_script, tar_base64

SCRIPTS = Path(__file__).parent / "scripts"
INSTALL_SCRIPT = SCRIPTS / "install-backup.sh"
TOOL_SCRIPT = SCRIPTS / "delivery-backup.sh"
RESTORE_SCRIPT = SCRIPTS / "restore-gitlab.sh"

ETC = "/etc/delivery/backup"
LIB = "/usr/local/lib/delivery"
TOOL = f"{LIB}/backup.sh"
RESTORE = f"{LIB}/restore-gitlab.sh"
UNIT_DIR = "/etc/systemd/system"
GITLAB_SET = "gitlab"
EDGE_SET = "edge"
GITLAB_CONTAINER = "gitlab"
"""components/services/gitlab_server.py CONTAINER_NAME."""
GITLAB_DIR = "/srv/services/gitlab"
#: What the edge set holds: Traefik's ACME state, the runners' config (components/host/layout.py).
EDGE_PATHS = {
    "traefik": ("/srv/traefik/letsencrypt",),
    "production-runner": ("/srv/gitlab-runner/config",),
    "staging-runner": ("/srv/gitlab-runner/config",),
}
SSH_ALIAS = "delivery-backup-repository"
HEADER = "# Managed by Pulumi (delivery platform, components/operations/backup.py); do not edit.\n"


def service_name(set_name: str) -> str:
    return f"delivery-backup-{set_name}.service"


CHECK_SERVICE = "delivery-backup-check.service"
FAILED_SERVICE = "delivery-backup-failed@.service"


def ini(sections: Sequence[tuple[str, Sequence[tuple[str, str]]]]) -> str:
    """A systemd unit file from (section, [(key, value)]) data."""
    return HEADER + "\n".join(f"[{name}]\n" + "".join(f"{k}={v}\n" for k, v in items) for name, items in sections)


def oneshot_service(description: str, exec_start: str) -> str:
    return ini([
        ("Unit", [("Description", description), ("Wants", "network-online.target"),
                  ("After", "network-online.target docker.service"), ("OnFailure", "delivery-backup-failed@%n.service")]),
        ("Service", [("Type", "oneshot"), ("ExecStart", exec_start), ("Nice", "10"),
                     ("IOSchedulingClass", "idle"), ("TimeoutStartSec", "6h")]),
    ])  # fmt: skip


def timer(description: str, on_calendar: str) -> str:
    return ini([
        ("Unit", [("Description", description)]),
        ("Timer", [("OnCalendar", on_calendar), ("Persistent", "true"), ("RandomizedDelaySec", "5m")]),
        ("Install", [("WantedBy", "timers.target")]),
    ])  # fmt: skip


def failed_service() -> str:
    return ini([
        ("Unit", [("Description", "Report the failed backup unit %i")]),
        ("Service", [("Type", "oneshot"), ("ExecStart", f"{TOOL} notify %i")]),
    ])  # fmt: skip


@dataclass(frozen=True)
class BackupSet:
    name: str
    """`gitlab` (GitLab's own backup first) or a set of paths."""
    paths: tuple[str, ...] = ()


def sets_for(host: HostConfig) -> list[BackupSet]:
    """What a host backs up, by its roles (pure)."""
    sets = []
    if host.has("gitlab"):
        sets.append(BackupSet(GITLAB_SET))
    paths = tuple(dict.fromkeys(p for role, ps in EDGE_PATHS.items() if host.has(role) for p in ps))
    if paths:
        sets.append(BackupSet(EDGE_SET, paths))
    return sets


def ssh_config(target: SftpTarget) -> str:
    lines = [
        f"Host {SSH_ALIAS}",
        f"    HostName {target.host}",
        f"    Port {target.port}",
        *([f"    User {target.user}"] if target.user else []),
        f"    IdentityFile {ETC}/ssh_key",
        "    IdentitiesOnly yes",
        f"    UserKnownHostsFile {ETC}/known_hosts",
        "    StrictHostKeyChecking yes",
        "    BatchMode yes",
        "    ServerAliveInterval 30",
    ]
    return HEADER + "\n".join(lines) + "\n"


def curl_config(url: str) -> str:
    """curl -K file with the webhook's URL (the config parser refused quotes and backslashes)."""
    return f'url = "{url}"\n'


@dataclass(frozen=True)
class Secrets:
    """The plain values of the secrets, inside an apply."""

    repository: str
    password: str
    sftp: Optional[SftpTarget] = None
    sftp_key: Optional[str] = None
    credentials: Optional[dict[str, str]] = None
    webhook_url: Optional[str] = None


def backup_files(host: HostConfig, cfg: BackupConfig, secrets: Secrets, sets: Sequence[BackupSet], check: bool) -> list[FileSpec]:
    """Every file install-backup.sh writes on `host` (pure; holds secrets)."""
    files = [
        FileSpec(TOOL, 0o755, TOOL_SCRIPT.read_text()),
        FileSpec(f"{ETC}/repository", 0o600, secrets.repository + "\n"),
        FileSpec(f"{ETC}/password", 0o600, secrets.password + "\n"),
        FileSpec(
            f"{ETC}/backup.conf", 0o644,
            f"HOST={host.name}\nKEEP={cfg.keep}\nGITLAB_SKIP={','.join(cfg.gitlab_skip)}\n"
            f"GITLAB_CONTAINER={GITLAB_CONTAINER}\nGITLAB_DIR={GITLAB_DIR}\n",
        ),  # fmt: skip
        FileSpec(f"{UNIT_DIR}/{FAILED_SERVICE}", 0o644, failed_service()),
    ]
    if secrets.credentials:
        files.append(FileSpec(f"{ETC}/credentials.env", 0o600, "".join(f"{k}={v}\n" for k, v in sorted(secrets.credentials.items()))))
    if secrets.sftp is not None and secrets.sftp_key is not None:
        key = secrets.sftp_key if secrets.sftp_key.endswith("\n") else secrets.sftp_key + "\n"
        files += [
            FileSpec(f"{ETC}/ssh_key", 0o600, key),
            FileSpec(f"{ETC}/known_hosts", 0o644, cfg.sftp_known_hosts.strip() + "\n"),
            FileSpec(f"{ETC}/ssh_config", 0o644, ssh_config(secrets.sftp)),
        ]
    if secrets.webhook_url:
        files.append(FileSpec(f"{ETC}/webhook.curl", 0o600, curl_config(secrets.webhook_url)))
    for s in sets:
        service = service_name(s.name)
        files += [
            FileSpec(f"{UNIT_DIR}/{service}", 0o644, oneshot_service(f"Back up {s.name} to the off-host repository", f"{TOOL} backup {s.name}")),
            FileSpec(f"{UNIT_DIR}/{service.removesuffix('.service')}.timer", 0o644, timer(f"Back up {s.name}", cfg.schedule)),
        ]
        if s.paths:
            files.append(FileSpec(f"{ETC}/sets/{s.name}", 0o644, "".join(f"{p}\n" for p in s.paths)))
        if s.name == GITLAB_SET:
            files.append(FileSpec(RESTORE, 0o755, RESTORE_SCRIPT.read_text()))
    if check:
        files += [
            FileSpec(f"{UNIT_DIR}/{CHECK_SERVICE}", 0o644, oneshot_service("Check the off-host backup repository", f"{TOOL} check")),
            FileSpec(f"{UNIT_DIR}/delivery-backup-check.timer", 0o644, timer("Check the off-host backup repository", cfg.check_schedule)),
        ]
    return files


def secret_values(cfg: BackupConfig) -> pulumi.Output[Secrets]:
    credentials = pulumi.Output.all(**(cfg.credentials or {})) if cfg.credentials else pulumi.Output.from_input(None)
    return pulumi.Output.all(
        repository=cfg.repository,
        password=cfg.password,
        sftp=cfg.sftp if cfg.sftp is not None else None,
        sftp_key=cfg.sftp_private_key if cfg.sftp_private_key is not None else None,
        credentials=credentials,
        webhook_url=cfg.webhook_url if cfg.webhook_url is not None else None,
    ).apply(lambda v: Secrets(**{**v, "sftp": SftpTarget(**v["sftp"]) if v["sftp"] else None}))


@dataclass(frozen=True)
class BackupArgs:
    host: HostConfig
    ssh_private_key: pulumi.Input[str]
    config: BackupConfig
    sets: Sequence[BackupSet]
    check: bool = False
    """This host runs `restic check` on `backupCheckSchedule` (one host per stack)."""
    after: Sequence[pulumi.Resource] = ()


class Backup(pulumi.ComponentResource):
    """restic, the backup tool, its settings and timers on one host."""

    install: command.remote.Command

    def __init__(self, name: str, args: BackupArgs, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__("delivery:operations:Backup", name, None, opts)
        files = secret_values(args.config).apply(
            lambda s: tar_base64(backup_files(args.host, args.config, s, args.sets, args.check))
        )
        self.install = run_script(
            f"{name}-install",
            host=args.host,
            private_key=args.ssh_private_key,
            script=INSTALL_SCRIPT,
            stdin=pulumi.Output.secret(files),
            parent=self,
            depends_on=list(args.after),
        )
        self.register_outputs({"sets": [s.name for s in args.sets]})


def build_backups(cfg: StackConfig, hosts: Mapping[str, DockerHost]) -> dict[str, Backup]:
    """A Backup on each host with something to back up; none without `backupRepository`."""
    if cfg.backup is None:
        return {}
    p = cfg.platform
    placed = [(h, sets_for(h)) for h in p.hosts]
    placed = [(h, sets) for h, sets in placed if sets]
    checker = next((h.name for h, _ in placed if h.has("gitlab")), placed[0][0].name if placed else None)
    return {
        h.name: Backup(
            f"{h.name}-backup",
            BackupArgs(
                host=h,
                ssh_private_key=p.ssh_private_key,
                config=cfg.backup,
                sets=sets,
                check=h.name == checker,
                # after Docker's install: both run apt-get
                after=[hosts[h.name].setup, hosts[h.name].engine],
            ),
        )
        for h, sets in placed
    }
