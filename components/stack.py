"""Assembles a stack from its parsed config: the components and the outputs it exports."""

from __future__ import annotations

from typing import Any, Union

import pulumi

from .config import StackConfig
from .host.docker_ca import (
    CA_CERT_OUTPUT,
    DELEGATED_SERVERS_OUTPUT,
    OPERATOR_CLIENT_OUTPUT,
    DockerCa,
    DockerCaArgs,
    DockerCaReference,
    ServerIdentity,
)
from .host.docker_host import DockerHost, DockerHostArgs
from .gitlab.integration import build_gitlab
from .host.layout import directories_for
from .operations import build_edge_protection
from .services.platform_services import build_services


def build(cfg: StackConfig) -> dict[str, Any]:
    """Create every resource of the stack; return the stack outputs by name."""
    p = cfg.platform

    trust: Union[DockerCa, DockerCaReference]
    if p.owns_ca:
        servers = [ServerIdentity(h.name, [h.address], list(h.dns_names)) for h in p.hosts]
        if p.review_apps_daemon is not None:
            d = p.review_apps_daemon
            servers.append(ServerIdentity(d.name, [d.address], list(d.dns_names)))
        trust = DockerCa(
            "docker-ca",
            DockerCaArgs(
                organization=p.domain,
                servers=servers,
                clients=p.tls.clients,
                ca_validity_hours=p.tls.ca_validity_hours,
                cert_validity_hours=p.tls.cert_validity_hours,
                early_renewal_hours=p.tls.early_renewal_hours,
            ),
        )
    else:
        assert p.production_stack is not None
        trust = DockerCaReference("docker-ca", p.production_stack)

    operator = trust.client("operator")
    hosts = {
        h.name: DockerHost(
            h.name,
            DockerHostArgs(
                host=h,
                ssh_private_key=p.ssh_private_key,
                engine=p.docker,
                timezone=p.timezone,
                ca_cert_pem=trust.ca_cert_pem,
                server=trust.server(h.name),
                client=operator,
                directories=directories_for(h),
            ),
        )
        for h in p.hosts
    }

    outputs: dict[str, Any] = {
        "dockerEndpoints": {name: host.endpoint for name, host in hosts.items()},
        CA_CERT_OUTPUT: trust.ca_cert_pem,
        OPERATOR_CLIENT_OUTPUT: pulumi.Output.secret(
            {"caPem": trust.ca_cert_pem, "certPem": operator.cert_pem, "keyPem": operator.key_pem}
        ),
    }
    if isinstance(trust, DockerCa) and p.review_apps_daemon is not None:
        bundle = trust.server(p.review_apps_daemon.name)
        outputs[DELEGATED_SERVERS_OUTPUT] = pulumi.Output.secret(
            {p.review_apps_daemon.name: {"certPem": bundle.cert_pem, "keyPem": bundle.key_pem}}
        )
    review_host = p.host_with("review-apps")
    if review_host is not None:
        outputs["reviewAppsDockerEndpoint"] = hosts[review_host.name].endpoint
    elif p.review_apps_daemon is not None:
        outputs["reviewAppsDockerEndpoint"] = p.review_apps_daemon.docker_endpoint

    # -- Platform services: GitLab, wildcard certificate, Traefik, by role (docs/services.md) --
    services = build_services(cfg, hosts, trust)
    outputs.update(services.outputs)

    # -- GitLab integration: runners, CI variables, cross-stack outputs (docs/gitlab.md) --
    if review_host is not None:
        outputs.setdefault("wildcardDomain", cfg.services.hostnames.wildcard_domain)
    if cfg.gitlab is not None:
        gitlab_host = p.host_with("gitlab")
        # The GitLab API is asked nothing (project lookups) before GitLab's host is set up:
        # on a fresh stack the preview leaves the lookups unknown instead of failing.
        # (Add the GitLabServer component here once build() creates it.)
        gitlab_ready = [hosts[gitlab_host.name]] if gitlab_host is not None else []
        gitlab_outputs = build_gitlab(
            p,
            cfg.gitlab,
            hosts,
            production=trust if isinstance(trust, DockerCaReference) else None,
            gitlab_ready=gitlab_ready,
        )
        for name, value in gitlab_outputs.items():
            outputs.setdefault(name, value)  # gitlabUrl may already come from the GitLab server

    # -- Edge protection: Docker API firewall, fail2ban, log rotation (docs/operations.md) --
    build_edge_protection(cfg, hosts, trust)
    return outputs
