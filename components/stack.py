"""Assembles a stack from its parsed config: the components and the outputs it exports."""

from __future__ import annotations

from typing import Any, Optional

import pulumi

from .config import StackConfig
from .config.maintenance import CaRotationConfig
from .config.platform import PlatformConfig
from .gitlab.integration import build_gitlab
from .host.docker_ca import (
    CA_CERT_OUTPUT,
    DELEGATED_SERVERS_OUTPUT,
    OPERATOR_CLIENT_OUTPUT,
    STAGING_CA_CERT_OUTPUT,
    DockerTrust,
    DockerTrustArgs,
    DockerTrustReference,
    ServerIdentity,
)
from .host.docker_host import DockerHost, DockerHostArgs
from .host.layout import directories_for
from .operations import build_edge_protection
from .operations.adoption import adoption_step
from .operations.registry_cleanup import build_registry_gc
from .operations.data_safety import build_data_safety
from .services.platform_services import build_services


def docker_trust(p: PlatformConfig, rotation: CaRotationConfig = CaRotationConfig()) -> DockerTrust:
    """The two CAs of the stack that owns the Docker PKI: review-app daemons (here or in the
    staging stack) in the staging trust domain, every other daemon in the production one."""
    production, staging = [], []
    for h in p.hosts:
        identity = ServerIdentity(h.name, [h.address], list(h.dns_names))
        (staging if h.has("review-apps") else production).append(identity)
    if p.review_apps_daemon is not None:
        d = p.review_apps_daemon
        staging.append(ServerIdentity(d.name, [d.address], list(d.dns_names)))
    return DockerTrust(
        DockerTrustArgs(
            organization=p.domain,
            production_servers=production,
            staging_servers=staging,
            operator_clients=p.tls.clients,
            ca_validity_hours=p.tls.ca_validity_hours,
            cert_validity_hours=p.tls.cert_validity_hours,
            early_renewal_hours=p.tls.early_renewal_hours,
            ca_generation=rotation.generation,
            rotation=rotation.phase,
        )
    )


def check_delegation(p: PlatformConfig, trust: DockerTrustReference) -> Optional[pulumi.Output[None]]:
    """In the staging stack: each review-app host must be the daemon the production stack
    issued the certificate for, and points its Traefik and STAGING_HOST_ADDRESS at."""
    checks = []
    for i, h in enumerate(p.hosts):
        if not h.has("review-apps"):
            continue
        ours = {"address": h.address, "port": h.docker_port, "dnsNames": list(h.dns_names)}

        def compare(theirs: Any, i: int = i, ours: dict = ours, name: str = h.name) -> None:
            if not isinstance(theirs, dict):
                return None  # a production stack from before this check: nothing to compare
            wrong = [k for k in ours if k in theirs and theirs[k] != ours[k]]
            if wrong:
                fields = {"address": "address", "port": "dockerPort", "dnsNames": "dnsNames"}
                detail = "; ".join(
                    f"delivery:hosts[{i}].{fields[k]} is {ours[k]!r} here, delivery:reviewAppsDaemon.{fields[k]} "
                    f"is {theirs[k]!r} in {trust.stack!r}"
                    for k in wrong
                )
                raise pulumi.RunError(
                    f"host {name!r} is not the review-app daemon the production stack declares: {detail}. "
                    "Make them agree, then run `pulumi up` on the production stack first."
                )
            return None

        checks.append(trust.identity(h.name).apply(compare))
    return pulumi.Output.all(*checks).apply(lambda _: None) if checks else None


def build(cfg: StackConfig) -> dict[str, Any]:
    """Create every resource of the stack; return the stack outputs by name."""
    p = cfg.platform

    owned: Optional[DockerTrust] = None
    reference: Optional[DockerTrustReference] = None
    if p.owns_ca:
        owned = docker_trust(p, cfg.maintenance.ca_rotation)
    else:
        assert p.production_stack is not None
        reference = DockerTrustReference("docker-ca", p.production_stack)
    trust = owned if owned is not None else reference
    assert trust is not None
    consistent = check_delegation(p, reference) if reference is not None else None

    hosts = {}
    for h in p.hosts:
        hosts[h.name] = DockerHost(
            h.name,
            DockerHostArgs(
                host=h,
                ssh_private_key=p.ssh_private_key,
                engine=p.docker,
                timezone=p.timezone,
                tls=trust.daemon(h.name),
                directories=directories_for(h),
                ready=consistent,
                first=adoption_step(cfg, h),
            ),
        )

    outputs: dict[str, Any] = {"dockerEndpoints": {name: host.endpoint for name, host in hosts.items()}}
    if owned is not None:
        outputs[CA_CERT_OUTPUT] = owned.production_trust_pem
        outputs[STAGING_CA_CERT_OUTPUT] = owned.staging_trust_pem
        operator = owned.operator
        outputs[OPERATOR_CLIENT_OUTPUT] = pulumi.Output.secret(
            {"caPem": owned.operator_ca_pem, "certPem": operator.cert_pem, "keyPem": operator.key_pem}
        )
        if p.review_apps_daemon is not None:
            outputs[DELEGATED_SERVERS_OUTPUT] = pulumi.Output.secret(
                {p.review_apps_daemon.name: owned.delegated(p.review_apps_daemon)}
            )
    else:
        assert reference is not None
        # The staging stack holds keys of the staging trust domain only: what it exports
        # opens its own daemon(s), never Production's or Services'.
        first = next((h for h in p.hosts if h.has("review-apps")), p.hosts[0])
        tls = reference.daemon(first.name)
        outputs[CA_CERT_OUTPUT] = tls.server_ca_pem
        outputs[OPERATOR_CLIENT_OUTPUT] = pulumi.Output.secret(
            {"caPem": tls.server_ca_pem, "certPem": tls.client.cert_pem, "keyPem": tls.client.key_pem}
        )
    review_host = p.host_with("review-apps")
    if review_host is not None:
        outputs["reviewAppsDockerEndpoint"] = hosts[review_host.name].endpoint
    elif p.review_apps_daemon is not None:
        outputs["reviewAppsDockerEndpoint"] = p.review_apps_daemon.docker_endpoint

    # -- Platform services: GitLab, wildcard certificate, Traefik, by role (docs/services.md) --
    # -- Backups and the GitLab upgrade gate (docs/operations.md, "Backups", "GitLab upgrades") --
    data_safety = build_data_safety(cfg, hosts)
    services = build_services(cfg, hosts, owned, gitlab_before=data_safety.gitlab_before)
    outputs.update(data_safety.outputs)
    outputs.update(services.outputs)

    # -- GitLab integration: runners, CI variables, cross-stack outputs (docs/gitlab.md) --
    if review_host is not None:
        outputs.setdefault("wildcardDomain", cfg.services.hostnames.wildcard_domain)
    if cfg.gitlab is not None:
        # Nothing asks GitLab's API anything (project look-ups included) before GitLab on its
        # host answers its readiness probe; in the staging stack GitLab runs elsewhere.
        gitlab_ready = [services.gitlab.ready] if services.gitlab is not None else []
        gitlab_outputs = build_gitlab(
            p,
            cfg.gitlab,
            hosts,
            production=reference,
            gitlab_ready=gitlab_ready,
            acme_ca_pem=cfg.services.traefik.acme.ca_certificate,
            registry_cleanup=cfg.maintenance.registry_cleanup,
        )
        for name, value in gitlab_outputs.items():
            outputs.setdefault(name, value)  # gitlabUrl may already come from the GitLab server

    # -- Edge protection: Docker API firewall, fail2ban, log rotation (docs/operations.md) --
    build_edge_protection(cfg, hosts, trust)
    # -- Registry garbage collection on the GitLab host (docs/operations.md, "Registry clean-up") --
    build_registry_gc(cfg, hosts)
    return outputs
