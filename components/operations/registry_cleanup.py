"""Registry clean-up (docs/operations.md, "Registry clean-up"), in two halves:

* `RegistryExpirationPolicy` (pulumi-gitlab): GitLab's container expiration policy ("cleanup
  policy") on each application project: tags matching `registryCleanupDeleteRegex` (the
  review-app template's `<ref-slug>-<short-sha>`) older than `registryCleanupOlderThanDays`
  are deleted, except the `registryCleanupKeepN` newest per image and every tag matching
  `registryCleanupKeepRegex` (main/master, releases). The pinned provider has no separate
  resource for it: it is `gitlab.Project.container_expiration_policy`, so the existing project
  is adopted (`import_` by its path; `retain_on_delete`, so that removing the policy from the
  program, or a `pulumi destroy`, never deletes the project) with its own name read from GitLab.
  Deleting a tag only unlinks it: the space comes back with the garbage collection below.
* `RegistryGarbageCollection` (pulumi-command): a systemd timer on the `gitlab` host that runs
  `gitlab-ctl registry-garbage-collect [-m]` in the GitLab container at `registryGcSchedule`.
  GitLab stops the registry while it collects: pushes and pulls fail for that time (minutes on
  a small registry), so the schedule is the maintenance window.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional, Sequence

import pulumi
import pulumi_command as command
import pulumi_gitlab as gitlab

from ..config import HostConfig, StackConfig
from ..config.maintenance import RegistryCleanupConfig, RegistryGcConfig
from ..host.docker_host import DockerHost
from ..host.remote_script import FileSpec, run_script, tar_base64

SCRIPT = Path(__file__).parent / "scripts" / "install-systemd-timer.sh"
GC_UNIT = "delivery-registry-gc"
GITLAB_CONTAINER = "gitlab"
"""The GitLab container's name (components/services/gitlab_server.py CONTAINER_NAME)."""
DOCKER = "/usr/bin/docker"
"""The docker CLI of both packages (docker-ce and Debian's docker.io)."""
HEADER = "# Managed by Pulumi (delivery platform, components/operations/registry_cleanup.py); do not edit.\n"


def policy_args(c: RegistryCleanupConfig) -> gitlab.ProjectContainerExpirationPolicyArgs:
    return gitlab.ProjectContainerExpirationPolicyArgs(
        enabled=True,
        cadence=c.cadence,
        older_than=f"{c.older_than_days}d",
        keep_n=c.keep_n,
        name_regex_delete=c.delete_regex,
        name_regex_keep=c.keep_regex,
    )


def resource_suffix(path: str) -> str:
    """`group/sub/app` -> `group-sub-app` (resource names; the path stays the identity)."""
    return re.sub(r"[^a-z0-9-]+", "-", path.lower()).strip("-")


@dataclass(frozen=True)
class RegistryExpirationPolicyArgs:
    cleanup: RegistryCleanupConfig
    gitlab_ready: Sequence[pulumi.Resource] = ()
    """GitLab answers its API (the readiness gate) before any project is read."""


class RegistryExpirationPolicy(pulumi.ComponentResource):
    """The container expiration policy of each application project. Pass the GitLab provider
    in `opts` (`providers={"gitlab": ...}`)."""

    projects: dict[str, gitlab.Project]

    def __init__(self, name: str, args: RegistryExpirationPolicyArgs, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__("delivery:gitlab:RegistryExpirationPolicy", name, None, opts)
        lookup = pulumi.InvokeOutputOptions(parent=self, depends_on=list(args.gitlab_ready))
        self.projects = {}
        for path in args.cleanup.projects:
            existing = gitlab.get_project_output(path_with_namespace=path, opts=lookup)
            self.projects[path] = gitlab.Project(
                f"{name}-{resource_suffix(path)}",
                # GitLab's own name: the provider would otherwise rename the project.
                name=existing.name,
                container_expiration_policy=policy_args(args.cleanup),
                opts=pulumi.ResourceOptions(
                    parent=self,
                    import_=path,
                    retain_on_delete=True,
                    depends_on=list(args.gitlab_ready),
                ),
            )
        self.register_outputs({"projects": list(args.cleanup.projects)})


def gc_service(settings: RegistryGcConfig, container: str = GITLAB_CONTAINER) -> str:
    """The oneshot unit that runs the collection (pure)."""
    cmd = [DOCKER, "exec", container, "gitlab-ctl", "registry-garbage-collect"]
    if settings.delete_untagged:
        cmd.append("-m")
    return HEADER + (
        "[Unit]\n"
        "Description=GitLab container registry garbage collection (the registry is stopped while it runs)\n"
        "Documentation=https://docs.gitlab.com/administration/packages/container_registry/#container-registry-garbage-collection\n"
        "Requires=docker.service\n"
        "After=docker.service\n"
        "\n"
        "[Service]\n"
        "Type=oneshot\n"
        f"ExecStart={shlex.join(cmd)}\n"
        "TimeoutStartSec=4h\n"
        "Nice=10\n"
        "IOSchedulingClass=idle\n"
    )


def gc_timer(settings: RegistryGcConfig) -> str:
    """The timer (pure). Not Persistent: a window missed while the host was down waits for the
    next window rather than stopping the registry at boot."""
    return HEADER + (
        "[Unit]\n"
        "Description=Scheduled GitLab registry garbage collection (delivery platform)\n"
        "\n"
        "[Timer]\n"
        f"OnCalendar={settings.schedule}\n"
        "AccuracySec=1m\n"
        "Persistent=false\n"
        "\n"
        "[Install]\n"
        "WantedBy=timers.target\n"
    )


@dataclass(frozen=True)
class RegistryGarbageCollectionArgs:
    host: HostConfig
    """The host with the gitlab role."""
    ssh_private_key: pulumi.Input[str]
    settings: RegistryGcConfig
    after: Sequence[pulumi.Resource] = ()
    """Docker's install on that host (the unit runs `docker exec`)."""


class RegistryGarbageCollection(pulumi.ComponentResource):
    """The systemd timer that runs the registry's garbage collection in the GitLab container."""

    install: command.remote.Command

    def __init__(self, name: str, args: RegistryGarbageCollectionArgs, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__("delivery:operations:RegistryGarbageCollection", name, None, opts)
        files = [
            FileSpec(f"/etc/systemd/system/{GC_UNIT}.service", 0o644, gc_service(args.settings)),
            FileSpec(f"/etc/systemd/system/{GC_UNIT}.timer", 0o644, gc_timer(args.settings)),
        ]
        self.install = run_script(
            f"{name}-install",
            host=args.host,
            private_key=args.ssh_private_key,
            script=SCRIPT,
            args=(GC_UNIT,),
            stdin=tar_base64(files),
            parent=self,
            depends_on=list(args.after),
        )
        self.register_outputs({"unit": f"{GC_UNIT}.timer", "schedule": args.settings.schedule})


def build_registry_gc(cfg: StackConfig, hosts: Mapping[str, DockerHost]) -> Optional[RegistryGarbageCollection]:
    """The garbage collection timer on the host with the gitlab role, when there is one."""
    settings = cfg.maintenance.registry_gc
    gitlab_host = cfg.platform.host_with("gitlab")
    if settings is None or gitlab_host is None:
        return None
    return RegistryGarbageCollection(
        "registry-gc",
        RegistryGarbageCollectionArgs(
            host=gitlab_host,
            ssh_private_key=cfg.platform.ssh_private_key,
            settings=settings,
            after=[hosts[gitlab_host.name].engine, hosts[gitlab_host.name].setup],
        ),
    )
