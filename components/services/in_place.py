"""Changes applied to a running container in place (docs/operations.md, "What a change
restarts"): a container that reads some of its files only when it starts (Traefik's static
config, the DNS credentials lego reads) is restarted in place, and GitLab runs `gitlab-ctl
reconfigure`, instead of replacing the container (a new ID, a moment without the container
and its published ports; for GitLab, minutes down).

`apply_on_change()` is one step (scripts/apply-on-change.sh) per container. It runs again when
the fingerprint of what the container must apply changes, or when the container is replaced;
a new container only records the fingerprint (it read the files when it started), the same
container applies the change. The container's ID and the fingerprint go through stdin (the
fingerprint may be the hash of a secret); the step's trigger carries only their hash.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pulumi
import pulumi_command as command
import pulumi_docker as docker

from ..config import HostConfig
from ..host.remote_script import run_script

SCRIPT = Path(__file__).parent / "scripts" / "apply-on-change.sh"
RESTART = "restart"
RECONFIGURE = "reconfigure"


def apply_on_change(
    resource_name: str,
    *,
    host: HostConfig,
    private_key: pulumi.Input[str],
    container: docker.Container,
    container_name: str,
    stamp: str,
    action: str,
    fingerprint: pulumi.Input[str],
    parent: pulumi.Resource,
    after: Sequence[pulumi.Resource] = (),
) -> command.remote.Command:
    """The step that makes `container` apply a new `fingerprint` with `action` (RESTART or
    RECONFIGURE); it runs after `container` and `after` (the files it reads, a readiness gate)."""
    if action not in (RESTART, RECONFIGURE):
        raise ValueError(f"unknown action {action!r}")
    line = pulumi.Output.all(container.id, fingerprint).apply(lambda v: f"{v[0]} {v[1]}\n")
    return run_script(
        resource_name,
        host=host,
        private_key=private_key,
        script=SCRIPT,
        args=(stamp, container_name, action),
        stdin=line,
        parent=parent,
        depends_on=[container, *after],
    )
