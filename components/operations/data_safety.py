"""Backups and safe GitLab upgrades, placed by role (docs/operations.md, "Backups", "GitLab upgrades").

`build_data_safety()` adds the backup units of every host that holds state (when
`backupRepository` is set) and, on the host with the `gitlab` role, the upgrade gate and the
pre-upgrade backup that the GitLab container waits for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import pulumi

from ..config import StackConfig
from ..host.docker_host import DockerHost
from .backup import GITLAB_CONTAINER, GITLAB_SET, Backup, build_backups, service_name
from .upgrade import VERSION_OUTPUT, GitLabUpgrade, GitLabUpgradeArgs


@dataclass
class DataSafety:
    backups: dict[str, Backup] = field(default_factory=dict)
    gitlab_before: list[pulumi.Resource] = field(default_factory=list)
    """What the GitLab container waits for (the pre-upgrade step)."""
    outputs: dict[str, Any] = field(default_factory=dict)


def build_data_safety(cfg: StackConfig, hosts: Mapping[str, DockerHost]) -> DataSafety:
    created = DataSafety(backups=build_backups(cfg, hosts))
    p = cfg.platform
    gitlab_host = p.host_with("gitlab")
    if gitlab_host is None:
        return created
    backup = created.backups.get(gitlab_host.name)
    on_host = hosts[gitlab_host.name]
    upgrade = GitLabUpgrade(
        "gitlab-upgrade",
        GitLabUpgradeArgs(
            host=gitlab_host,
            ssh_private_key=p.ssh_private_key,
            version=cfg.services.gitlab.version,
            container=GITLAB_CONTAINER,
            backup_unit=service_name(GITLAB_SET) if backup is not None else None,
            after=[on_host.setup, *([backup.install] if backup is not None else [])],
        ),
    )
    created.gitlab_before.append(upgrade.pre_upgrade)
    # what the next run's preview compares the configured version with
    created.outputs[VERSION_OUTPUT] = upgrade.checked_version
    return created
