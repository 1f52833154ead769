"""Backups: restic to an off-host repository (docs/operations.md, "Backups").

Backups are opt-in: without `backupRepository` no backup unit exists anywhere (and a GitLab
upgrade keeps its pre-upgrade backup on the Services host only). Keys:

* `backupRepository` (secret): restic repository, `sftp:user@host:/path`,
  `sftp://user@host:port//path` or `s3:https://host/bucket[/prefix]`.
* `backupPassword` (secret): the repository's password (restic encrypts everything with it).
* `backupSftpPrivateKey` (secret) and `backupSftpKnownHosts`: the SSH key restic logs in with
  and the repository host's key line(s), `<host> <type> <base64>`; required with `sftp:`.
* `backupCredentials` (secret object): S3 credentials, `AWS_ACCESS_KEY_ID`,
  `AWS_SECRET_ACCESS_KEY` (required with `s3:`), `AWS_DEFAULT_REGION`, `AWS_SESSION_TOKEN`.
* `backupSchedule`, `backupCheckSchedule`: systemd `OnCalendar` expressions.
* `backupKeep`: snapshots kept per backup set and host (`restic forget --keep-last`).
* `backupGitlabSkip`: parts GitLab's backup may skip (`gitlab-backup create SKIP=...`).
* `backupWebhookUrl` (secret): called (POST, JSON) when a backup or a check fails.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Optional
from urllib.parse import urlsplit

import pulumi

from .reader import ConfigReader, check_list, check_string

#: What `gitlab-backup create SKIP=` accepts (GitLab docs, "Back up GitLab", "Excluding specific data").
GITLAB_SKIPPABLE = (
    "db", "repositories", "uploads", "builds", "artifacts", "pages", "lfs", "terraform_state",
    "registry", "packages", "ci_secure_files", "external_diffs",
)  # fmt: skip
S3_CREDENTIALS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "AWS_SESSION_TOKEN")
DEFAULT_SCHEDULE = "*-*-* 02:30:00"
DEFAULT_CHECK_SCHEDULE = "Sun *-*-* 05:00:00"
DEFAULT_KEEP = 14
#: Characters of a systemd calendar expression (systemd.time(7)); the host checks it with
#: `systemd-analyze calendar` before a unit is written.
CALENDAR = re.compile(r"^[A-Za-z0-9*:,./~ +-]{1,100}$")
KNOWN_HOSTS_LINE = re.compile(r"^(\[[^\]\s]+\]:\d+|[^\s#]+) (ssh-ed25519|ecdsa-sha2-nistp(256|384|521)|ssh-rsa) [A-Za-z0-9+/]+=*$")
SFTP_SHORT = re.compile(r"^sftp:(?:(?P<user>[a-z_][a-z0-9_.-]*)@)?(?P<host>[A-Za-z0-9.-]+|\[[0-9a-fA-F:]+\]):(?P<path>/?[^\s]+)$")
S3_URL = re.compile(r"^s3:https?://[A-Za-z0-9.-]+(:\d+)?/[A-Za-z0-9._-]+(/[A-Za-z0-9._/-]*)?$")


@dataclass(frozen=True)
class SftpTarget:
    """Where restic's SFTP connection goes (parsed from the secret repository URL)."""

    user: Optional[str]
    host: str
    port: int


@dataclass(frozen=True)
class BackupConfig:
    repository: pulumi.Output[str]
    password: pulumi.Output[str]
    kind: str
    """`sftp` or `s3`."""
    sftp: Optional[pulumi.Output[dict]] = None
    """The SFTP target (`SftpTarget` as a dict), a secret: it comes from the repository URL."""
    sftp_private_key: Optional[pulumi.Output[str]] = None
    sftp_known_hosts: str = ""
    credentials: Optional[dict[str, pulumi.Output[str]]] = None
    schedule: str = DEFAULT_SCHEDULE
    check_schedule: str = DEFAULT_CHECK_SCHEDULE
    keep: int = DEFAULT_KEEP
    gitlab_skip: tuple[str, ...] = ()
    webhook_url: Optional[pulumi.Output[str]] = None


def sftp_target(url: str) -> Optional[SftpTarget]:
    """The SFTP target of `sftp:user@host:/path` or `sftp://user@host:port//path`; None otherwise."""
    if url.startswith("sftp://"):
        parts = urlsplit(url)
        try:
            port = parts.port or 22
        except ValueError:
            return None
        if not parts.hostname or not parts.path.strip("/") or any(c.isspace() for c in url):
            return None
        return SftpTarget(parts.username, parts.hostname, port)
    m = SFTP_SHORT.fullmatch(url)
    if m is None:
        return None
    return SftpTarget(m.group("user"), m.group("host").strip("[]"), 22)


def parse_backup(r: ConfigReader) -> Optional[BackupConfig]:
    """The backup keys; None when no repository is configured (backups are opt-in)."""
    schedule = r.string("backupSchedule", default=DEFAULT_SCHEDULE, pattern=CALENDAR, expected="a systemd OnCalendar expression such as '*-*-* 02:30:00'")
    check = r.string("backupCheckSchedule", default=DEFAULT_CHECK_SCHEDULE, pattern=CALENDAR, expected="a systemd OnCalendar expression such as 'Sun *-*-* 05:00:00'")
    keep = r.integer("backupKeep", default=DEFAULT_KEEP, minimum=1, maximum=1000)
    raw_skip = r.structured("backupGitlabSkip", expected=f"a list of parts GitLab's backup may skip ({', '.join(GITLAB_SKIPPABLE)})")
    skip = check_list(r, "backupGitlabSkip", raw_skip, lambda p, v: check_string(r, p, v, choices=GITLAB_SKIPPABLE)) if raw_skip is not None else ()
    known_hosts = r.plain("backupSftpKnownHosts") or ""
    for i, line in enumerate(known_hosts.split("\n") if known_hosts else []):
        if not KNOWN_HOSTS_LINE.fullmatch(line):
            r.error("backupSftpKnownHosts", f"line {i + 1}: expected '<host> <key type> <base64>' as `ssh-keyscan` prints it, got {line!r}")

    repository = r.secret_string("backupRepository")
    raw_url = r.raw("backupRepository") or ""
    others = ("backupPassword", "backupSftpPrivateKey", "backupCredentials", "backupWebhookUrl")
    if repository is None:
        for key in others:
            if r.raw(key):
                r.error(key, "is set, but delivery:backupRepository is not: set the repository too (or unset this key)")
        return None

    password = r.secret_string("backupPassword", required=True)
    if password is not None and "\n" in (r.raw("backupPassword") or ""):
        r.error("backupPassword", "expected one line (restic reads the password file's first line; the value is not shown)")
    webhook = r.secret_string("backupWebhookUrl")
    raw_webhook = r.raw("backupWebhookUrl") or ""
    if webhook is not None and not re.fullmatch(r"https?://[^\s'\"\\]+", raw_webhook):
        r.error("backupWebhookUrl", "expected an http:// or https:// URL on one line (the value is not shown)")
    key = r.secret_string("backupSftpPrivateKey")
    credentials = r.secret_map("backupCredentials")
    raw_credentials = r.structured("backupCredentials", expected="an object", secret_ok=True) if credentials else None
    for name in credentials or {}:
        if name not in S3_CREDENTIALS:
            r.error(f"backupCredentials.{name}", f"unknown; expected one of {', '.join(S3_CREDENTIALS)}")
        elif not re.fullmatch(r"[!-~]+", raw_credentials.get(name, "") if isinstance(raw_credentials, dict) else ""):
            r.error(f"backupCredentials.{name}", "expected one word of printable characters (the value is not shown)")

    kind = ""
    target = None
    if raw_url.startswith("sftp:"):
        kind = "sftp"
        target = sftp_target(raw_url)
        if target is None:
            r.error("backupRepository", "expected sftp:user@host:/path or sftp://user@host:port//path (the value is not shown)")
        if key is None:
            r.error("backupSftpPrivateKey", "missing: an sftp: repository needs the SSH key restic logs in with")
        if not known_hosts:
            r.error("backupSftpKnownHosts", "missing: an sftp: repository needs its host key (`ssh-keyscan <host>` output, checked)")
    elif raw_url.startswith("s3:"):
        kind = "s3"
        if not S3_URL.fullmatch(raw_url):
            r.error("backupRepository", "expected s3:https://<host>/<bucket>[/<prefix>] (the value is not shown)")
        missing = [n for n in S3_CREDENTIALS[:2] if n not in (credentials or {})]
        if missing:
            r.error("backupCredentials", f"an s3: repository needs {' and '.join(missing)}")
    else:
        r.error("backupRepository", "expected an sftp: or s3: restic repository (the value is not shown)")

    if password is None or kind == "":
        return None
    return BackupConfig(
        repository=repository,
        password=password,
        kind=kind,
        # the target is derived from a secret: it stays one
        sftp=pulumi.Output.secret(asdict(target)) if target is not None else None,
        sftp_private_key=key,
        sftp_known_hosts=known_hosts,
        credentials=credentials,
        schedule=schedule or DEFAULT_SCHEDULE,
        check_schedule=check or DEFAULT_CHECK_SCHEDULE,
        keep=keep if keep is not None else DEFAULT_KEEP,
        gitlab_skip=tuple(dict.fromkeys(skip or ())),
        webhook_url=webhook,
    )
