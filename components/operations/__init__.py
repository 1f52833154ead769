"""Day-two operations around the platform's services, placed by role (docs/operations.md).

`build_edge_protection()` adds, from the parsed config:

* on every host, the Docker API firewall (`firewall.DockerApiFirewall`);
* on the host with the `traefik` role, fail2ban on Traefik's access log (`fail2ban.Fail2ban`)
  and the rotation of that log and fail2ban's (`logrotate.LogRotation`).

Trusted hosts, always allowed to the Docker API and never banned: the hosts of this stack
that run no untrusted code (every role but `review-apps` and `staging-runner`, whose jobs and
review apps run whatever a branch pushes) and, in a stack with `productionStack`, the hosts
of the production stack (its `dockerEndpoints` output): Traefik and the CI runner that runs
`pulumi up` live there.
"""

from __future__ import annotations

from typing import Mapping, Union
from urllib.parse import urlsplit

import pulumi

from ..config import StackConfig
from ..config.platform import PlatformConfig
from ..host.docker_ca import DockerTrust, DockerTrustReference
from ..host.docker_host import DockerHost
from .fail2ban import Fail2ban, Fail2banArgs
from .firewall import DockerApiFirewall, DockerApiFirewallArgs
from .logrotate import LogRotation, LogRotationArgs

#: Roles whose host runs code anyone who pushes a branch controls.
UNTRUSTED_ROLES = ("review-apps", "staging-runner")
LOOPBACK = ("127.0.0.0/8", "::1/128")
DOCKER_ENDPOINTS_OUTPUT = "dockerEndpoints"


def network_of(address: str) -> str:
    return f"{address}/128" if ":" in address else f"{address}/32"


def trusted_hosts(p: PlatformConfig) -> list[str]:
    """Networks of this stack's hosts that run no untrusted code (pure)."""
    return [network_of(h.address) for h in p.hosts if not any(h.has(r) for r in UNTRUSTED_ROLES)]


def endpoint_hosts(endpoints: Mapping[str, str]) -> list[str]:
    """Networks of the hosts of `tcp://host:port` Docker endpoints (another stack's output)."""
    return [network_of(urlsplit(e).hostname or "") for e in endpoints.values() if urlsplit(e).hostname]


def build_edge_protection(
    cfg: StackConfig, hosts: Mapping[str, DockerHost], trust: Union[DockerTrust, DockerTrustReference]
) -> None:
    """Create the firewall on every host, fail2ban and log rotation on the traefik host."""
    p, ops = cfg.platform, cfg.operations
    trusted: pulumi.Output[list[str]] = pulumi.Output.from_input(trusted_hosts(p))
    if isinstance(trust, DockerTrustReference):
        production = trust.require(DOCKER_ENDPOINTS_OUTPUT).apply(endpoint_hosts)
        trusted = pulumi.Output.all(trusted, production).apply(lambda t: [*t[0], *t[1]])
    allowed = trusted.apply(lambda t: list(dict.fromkeys([*t, *ops.docker_api_allowed_sources])))

    firewalls = {}
    for h in p.hosts:
        # after Docker's install: both may run apt-get, which takes its locks without waiting
        firewalls[h.name] = DockerApiFirewall(
            f"{h.name}-firewall",
            DockerApiFirewallArgs(
                host=h,
                ssh_private_key=p.ssh_private_key,
                allowed_sources=allowed,
                after=[hosts[h.name].engine],
            ),
        )

    traefik_host = p.host_with("traefik")
    if traefik_host is None:
        return
    # The traefik role only runs in the stack that owns the CA: its trusted hosts are plain data.
    ignore = list(dict.fromkeys([*LOOPBACK, *trusted_hosts(p), *ops.fail2ban_ignore_ips]))
    fail2ban = Fail2ban(
        "fail2ban",
        Fail2banArgs(
            host=traefik_host,
            ssh_private_key=p.ssh_private_key,
            jails=ops.jails,
            ignore_ips=ignore,
            # after the firewall, which runs after Docker's install (apt-get, one at a time)
            after=[hosts[traefik_host.name].setup, firewalls[traefik_host.name].install],
        ),
    )
    LogRotation(
        "edge-logrotate",
        LogRotationArgs(
            host=traefik_host,
            ssh_private_key=p.ssh_private_key,
            keep=ops.log_keep,
            max_size=ops.log_max_size,
            after=[fail2ban.install],
        ),
    )
