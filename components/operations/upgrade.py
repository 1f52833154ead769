"""Safe GitLab upgrades (docs/operations.md, "GitLab upgrades").

A change of `gitlabVersion` is checked twice against GitLab's required upgrade stops
(data/gitlab-upgrade-stops.yml, from GitLab's config/upgrade_path.yml) and downgrades:

1. **At preview**, before anything changes: the stack reads its own previous outputs
   (a StackReference to itself: the outputs of the last successful `pulumi up`) and compares
   the `gitlabVersion` it exported then with the configured one. A refused change fails the
   program (preview and up) naming `delivery:gitlabVersion` and the next allowed version.
2. **On the host**, right before the container is replaced: `<name>-pre-upgrade`
   (scripts/gitlab-pre-upgrade.sh) reads the running container's image tag and applies the
   same rule (this covers a stack without the output yet, or a host changed by hand), then
   takes a backup: the backup unit (off-host, same tooling as the timer) when backups are
   configured, else `gitlab-backup create` plus a copy of the secrets on the host. The GitLab
   container depends on it, so it is replaced only after the backup succeeded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional, Sequence

import pulumi
import yaml

from ..config import HostConfig
from ..host.remote_script import run_script

DATA = Path(__file__).parent / "data" / "gitlab-upgrade-stops.yml"
SCRIPT = Path(__file__).parent / "scripts" / "gitlab-pre-upgrade.sh"
VERSION_OUTPUT = "gitlabVersion"
VERSION = re.compile(r"^(\d+)\.(\d+)\.(\d+)-ce\.0$")

Version = tuple[int, int, int]
Stop = tuple[int, int]


@lru_cache(maxsize=1)
def upgrade_stops() -> tuple[Stop, ...]:
    """GitLab's required upgrade stops, ascending (major, minor)."""
    data = yaml.safe_load(DATA.read_text())
    return tuple(sorted((int(s["major"]), int(s["minor"])) for s in data["stops"]))


def parse_version(tag: str) -> Version:
    m = VERSION.fullmatch(tag)
    if m is None:
        raise ValueError(f"not a gitlab-ce version: {tag!r}")
    return int(m.group(1)), int(m.group(2)), int(m.group(3))


def upgrade_refusal(current: str, target: str, stops: Sequence[Stop] = ()) -> Optional[str]:
    """Why GitLab may not go from `current` to `target` (tags `x.y.z-ce.0`), or None (pure).

    Refused: a downgrade, and an upgrade past a required stop: a stop whose minor lies strictly
    between the current minor and the target's (upgrading *to* a stop, or from it, is fine)."""
    stops = stops or upgrade_stops()
    cur, new = parse_version(current), parse_version(target)
    if new < cur:
        return (
            f"delivery:gitlabVersion: {target} is older than the running {current}: GitLab does not support "
            "downgrades (restore a backup taken before the upgrade instead; docs/operations.md, \"Restore\")"
        )
    for stop in stops:
        if cur[:2] < stop < new[:2]:
            return (
                f"delivery:gitlabVersion: upgrading GitLab from {current} to {target} skips the required upgrade "
                f"stop {stop[0]}.{stop[1]}; the next allowed version is {stop[0]}.{stop[1]}.x (the latest "
                f"{stop[0]}.{stop[1]} patch release, e.g. `pulumi config set gitlabVersion {stop[0]}.{stop[1]}.<patch>-ce.0`), "
                "then the next stop (docs/operations.md, \"GitLab upgrades\")"
            )
    return None


def stops_argument(stops: Sequence[Stop] = ()) -> str:
    return ",".join(f"{a}.{b}" for a, b in (stops or upgrade_stops()))


def check_previous(previous: Any, target: str) -> str:
    """Raise when the version the last `pulumi up` deployed may not become `target`."""
    if isinstance(previous, str) and VERSION.fullmatch(previous) and previous != target:
        refusal = upgrade_refusal(previous, target)
        if refusal is not None:
            raise pulumi.RunError(f"{refusal}. Nothing was changed.")
    return target


def own_stack_name() -> str:
    """This stack's fully qualified name (the DIY backends' organization is `organization`)."""
    return f"{pulumi.get_organization() or 'organization'}/{pulumi.get_project()}/{pulumi.get_stack()}"


@dataclass(frozen=True)
class GitLabUpgradeArgs:
    host: HostConfig
    ssh_private_key: pulumi.Input[str]
    version: str
    """The configured gitlabVersion."""
    container: str
    """The GitLab container's name."""
    backup_unit: Optional[str] = None
    """The backup service to run first; None: a backup on the host only."""
    after: Sequence[pulumi.Resource] = ()


class GitLabUpgrade(pulumi.ComponentResource):
    """The upgrade gate (at preview) and the pre-upgrade check and backup (on the host)."""

    checked_version: pulumi.Output[str]
    """The configured version, once the preview-time check passed."""
    pre_upgrade: Any
    """The remote step the GitLab container depends on."""

    def __init__(self, name: str, args: GitLabUpgradeArgs, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__("delivery:operations:GitLabUpgrade", name, None, opts)
        previous = pulumi.StackReference(f"{name}-previous", stack_name=own_stack_name(), opts=pulumi.ResourceOptions(parent=self))
        self.checked_version = previous.get_output(VERSION_OUTPUT).apply(lambda v: check_previous(v, args.version))
        script_args = (args.container, stops_argument(), *([args.backup_unit] if args.backup_unit else []))
        self.pre_upgrade = run_script(
            f"{name}-pre-upgrade",
            host=args.host,
            private_key=args.ssh_private_key,
            script=SCRIPT,
            args=script_args,
            parent=self,
            # the version arrives once the preview-time check passed: the step cannot run before
            stdin=self.checked_version.apply(lambda v: v + "\n"),
            depends_on=list(args.after),
        )
        self.register_outputs({"version": self.checked_version})
