"""The whole stack configuration, parsed into typed models before any resource exists.

`load_stack_config()` reads every key of the project namespace, collects every
problem and raises a single `pulumi.RunError` that names each key as
`<project>:<key>`. Each section of the platform has its own parser module here;
this module assembles them. Settings that are valid but weaken the platform on purpose (an
unverified SSH host key, a dangerous runner override) are said in a warning on every run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi

from .backup import BackupConfig, parse_backup
from .gitlab import GitLabConfig, parse_gitlab
from .maintenance import MaintenanceConfig, parse_maintenance
from .operations import OperationsConfig, parse_operations
from .platform import (
    DOCKER_PACKAGES,
    ROLES,
    DaemonIdentity,
    DockerEngineConfig,
    DockerTlsConfig,
    HostConfig,
    PlatformConfig,
    parse_platform,
)
from .reader import ConfigReader
from .services import ServicesConfig, parse_services

__all__ = [
    "BackupConfig",
    "DOCKER_PACKAGES",
    "ROLES",
    "ConfigReader",
    "DaemonIdentity",
    "DockerEngineConfig",
    "DockerTlsConfig",
    "GitLabConfig",
    "HostConfig",
    "MaintenanceConfig",
    "OperationsConfig",
    "PlatformConfig",
    "ServicesConfig",
    "StackConfig",
    "load_stack_config",
]


@dataclass(frozen=True)
class StackConfig:
    platform: PlatformConfig
    services: ServicesConfig
    gitlab: Optional[GitLabConfig] = None
    """GitLab API connection, runners, CI variables (components/config/gitlab.py)."""
    operations: OperationsConfig = OperationsConfig()
    """Edge protection: Docker API firewall, fail2ban, log rotation (components/config/operations.py)."""
    maintenance: MaintenanceConfig = MaintenanceConfig()
    """Registry clean-up and GC, Docker CA rotation (components/config/maintenance.py)."""
    backup: Optional[BackupConfig] = None
    """Backups to an off-host restic repository; None: not configured (components/config/backup.py)."""


def load_stack_config(project: Optional[str] = None, stack: Optional[str] = None) -> StackConfig:
    """Parse and validate the current stack's config; raise one RunError listing every problem."""
    reader = ConfigReader(project or pulumi.get_project())
    platform = parse_platform(reader, stack or pulumi.get_stack())
    services = parse_services(reader, platform)
    gitlab = parse_gitlab(reader, platform, services)
    operations = parse_operations(reader)
    maintenance = parse_maintenance(reader, platform.owns_ca if platform is not None else True)
    backup = parse_backup(reader)
    reader.raise_if_errors()
    for warning in reader.warnings:
        pulumi.log.warn(warning)
    assert platform is not None and services is not None
    return StackConfig(platform=platform, services=services, gitlab=gitlab, operations=operations, maintenance=maintenance, backup=backup)
