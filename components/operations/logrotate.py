"""LogRotation: logrotate for Traefik's access log and fail2ban's log on the Traefik host
(pulumi-command).

* /etc/logrotate.d/delivery-edge: both logs, daily or sooner once larger than
  `logRotationMaxSize`, `logRotationKeep` rotations kept, compressed one rotation late
  (`delaycompress`: a line Traefik writes before it reopens its file lands in `.1`).
  After a rotation Traefik gets `USR1` (`docker kill --signal=USR1 traefik`), on which it
  reopens its log files; fail2ban gets `fail2ban-client flushlogs`.
* Debian's /etc/logrotate.d/fail2ban is diverted (`dpkg-divert`, to `fail2ban.disabled`,
  an extension logrotate skips): a log named in two configs stops every rotation.
* logrotate.timer runs hourly (a drop-in; Debian's runs daily), so `maxsize` is checked
  every hour; `daily` rotations still happen once a day.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import pulumi
import pulumi_command as command

from ..config import HostConfig
from ..host.remote_script import FileSpec, run_script, tar_base64
from .fail2ban import ACCESS_LOG, FAIL2BAN_LOG

SCRIPT = Path(__file__).parent / "scripts" / "install-logrotate.sh"

CONFIG_FILE = "/etc/logrotate.d/delivery-edge"
TIMER_DROP_IN = "/etc/systemd/system/logrotate.timer.d/delivery-hourly.conf"
#: Debian's own rotation of fail2ban's log, replaced by ours.
DIVERTED = ("/etc/logrotate.d/fail2ban", "/etc/logrotate.d/fail2ban.disabled")
TRAEFIK_CONTAINER = "traefik"
"""The edge Traefik's container name (components/services/traefik.py CONTAINER_NAME)."""

HEADER = "# Managed by Pulumi (delivery platform, components/operations/logrotate.py); do not edit.\n"

#: USR1 makes Traefik reopen its log files; nothing to do when it does not run.
TRAEFIK_REOPEN = (
    f"if [ \"$(docker inspect --format '{{{{.State.Running}}}}' {TRAEFIK_CONTAINER} 2>/dev/null)\" = true ]; "
    f"then docker kill --signal=USR1 {TRAEFIK_CONTAINER} >/dev/null; fi"
)
FAIL2BAN_REOPEN = "fail2ban-client flushlogs >/dev/null"


@dataclass(frozen=True)
class RotatedLog:
    path: str
    owner: str
    """`create` mode and owner of the new file."""
    postrotate: str


LOGS = (
    RotatedLog(ACCESS_LOG, "0640 root root", TRAEFIK_REOPEN),
    RotatedLog(FAIL2BAN_LOG, "0640 root adm", FAIL2BAN_REOPEN),
)


def logrotate_config(keep: int, max_size: str, logs: Sequence[RotatedLog] = LOGS) -> str:
    """/etc/logrotate.d/delivery-edge (pure); a list of directives per log, in logrotate's syntax."""
    blocks = []
    for log in logs:
        directives = [
            "daily",
            f"maxsize {max_size}",
            f"rotate {keep}",
            "missingok",
            "notifempty",
            "compress",
            "delaycompress",
            f"create {log.owner}",
            "postrotate",
            f"    {log.postrotate}",
            "endscript",
        ]
        blocks.append(f"{log.path} {{\n" + "".join(f"    {d}\n" for d in directives) + "}\n")
    return HEADER + "\n".join(blocks)


def timer_drop_in() -> str:
    return HEADER + "[Timer]\nOnCalendar=\nOnCalendar=hourly\nAccuracySec=1m\n"


@dataclass(frozen=True)
class LogRotationArgs:
    host: HostConfig
    """The host with the traefik role."""
    ssh_private_key: pulumi.Input[str]
    keep: int
    max_size: str
    after: Sequence[pulumi.Resource] = ()
    """Steps that must finish first (fail2ban's install, whose rotation is replaced)."""


class LogRotation(pulumi.ComponentResource):
    """logrotate of the edge's logs on the host with the traefik role."""

    install: command.remote.Command

    def __init__(self, name: str, args: LogRotationArgs, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__("delivery:operations:LogRotation", name, None, opts)
        files = [
            FileSpec(CONFIG_FILE, 0o644, logrotate_config(args.keep, args.max_size)),
            FileSpec(TIMER_DROP_IN, 0o644, timer_drop_in()),
        ]
        self.install = run_script(
            f"{name}-install",
            host=args.host,
            private_key=args.ssh_private_key,
            script=SCRIPT,
            args=(f"divert={DIVERTED[0]}:{DIVERTED[1]}",),
            stdin=tar_base64(files),
            parent=self,
            depends_on=list(args.after),
        )
        self.register_outputs({"config": CONFIG_FILE})
