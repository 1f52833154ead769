"""Adoption of a host set up by hand with the procedure this program replaces (docs/adopt.md).

A host with `hosts[i].adopt: true` gets one more step, `<host>-adopt` (scripts/adopt-host.sh),
that runs before anything else on the host (before the Docker install step and before
configure-docker.sh restarts Docker). It finds what the procedure left there and takes it over
without losing data: the hand-made docker.service drop-in moved aside, live-restore turned on
by a reload so that the one restart configure-docker.sh then does keeps containers running, the
hand-made `gitlab`, `traefik` and `gitlab-runner` containers stopped and renamed (their data are
bind mounts under /srv, which the program's containers mount again), the old runners
unregistered after their jobs finished (bounded), each file the program replaces kept as a
timestamped copy next to it. On a host with nothing hand-made it prints `unchanged`.

The same script, in its read-only `check` mode, is what `make adopt-check` runs over SSH
(scripts/adopt_check.py): what it found, what the first `up` will do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from ..config import HostConfig, StackConfig
from ..config.services import Hostnames
from ..host.docker_host import ScriptStep
from ..services.gitlab_server import IMAGE as GITLAB_IMAGE
from ..services.gitlab_server import gitlab_settings, render_gitlab_rb
from ..services.platform_services import gitlab_trusted_proxies

SCRIPT = Path(__file__).parent / "scripts" / "adopt-host.sh"
#: How long the adoption waits for CI jobs of a hand-made runner before it gives up (and
#: changes nothing; the next run tries again).
JOB_WAIT_SECONDS = 1800


RUNNER_ROLES = ("production-runner", "staging-runner")


def adoption_args(mode: str, host: HostConfig, gitlab_version: str, hostnames: Hostnames, runners: bool) -> tuple[str, ...]:
    """adopt-host.sh's arguments for `host` (none of them secret). `runners`: the program runs
    its runners here (the GitLab integration is enabled); without them a hand-made runner is
    left running (replacing it with nothing would stop the host's CI)."""
    gitlab_image = f"{GITLAB_IMAGE}:{gitlab_version}" if host.has("gitlab") else "-"
    roles = [r for r in host.roles if runners or r not in RUNNER_ROLES]
    return (mode, ",".join(roles), gitlab_image, str(JOB_WAIT_SECONDS), hostnames.wildcard_domain)


def adoption_stdin(host: HostConfig, hosts: Sequence[HostConfig], hostnames: Hostnames, timezone: str) -> str:
    """The gitlab.rb the program installs on a gitlab host (no secret in it), for the printed
    differences; empty elsewhere."""
    if not host.has("gitlab"):
        return ""
    return render_gitlab_rb(gitlab_settings(hostnames, timezone, gitlab_trusted_proxies(hosts)))


def adoption_step(cfg: StackConfig, host: HostConfig) -> Optional[ScriptStep]:
    """The step DockerHost runs first on a host to adopt; None when `adopt` is off."""
    if not host.adopt:
        return None
    p, s = cfg.platform, cfg.services
    return ScriptStep(
        SCRIPT,
        adoption_args("apply", host, s.gitlab.version, s.hostnames, runners=cfg.gitlab is not None and cfg.gitlab.enabled),
        adoption_stdin(host, p.hosts, s.hostnames, p.timezone),
    )
