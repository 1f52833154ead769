"""The platform's services placed by role: GitLab on the `gitlab` host, the wildcard
certificate and Traefik on the `traefik` host (docs/services.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Union

import pulumi
import pulumi_docker as docker

from ..config import StackConfig
from ..host.docker_ca import DockerCa, DockerCaReference
from ..host.docker_host import DockerHost
from .gitlab_server import GitLabServer, GitLabServerArgs, GitLabUpstream
from .traefik import Traefik, TraefikArgs
from .wildcard_certificate import WildcardCertificate, WildcardCertificateArgs

#: Stack outputs of the services (a contract; docs/services.md).
GITLAB_URL_OUTPUT = "gitlabUrl"
REGISTRY_URL_OUTPUT = "registryUrl"
GITLAB_SSH_URL_OUTPUT = "gitlabSshUrl"
TRAEFIK_ENTRYPOINTS_OUTPUT = "traefikEntrypoints"
WILDCARD_DOMAIN_OUTPUT = "wildcardDomain"
WILDCARD_METHOD_OUTPUT = "wildcardMethod"
DASHBOARD_URL_OUTPUT = "traefikDashboardUrl"
PRODUCTION_APP_URLS_OUTPUT = "productionAppUrls"

#: When GitLab and Traefik share a host, they share this network instead of published ports
#: (Traefik listens on 80 and 1023 there; the default bridge has icc disabled).
SERVICES_NETWORK = "delivery-services"
SERVICES_SUBNET = "172.31.254.0/24"


@dataclass
class PlatformServices:
    """What build_services created (None where this stack does not run the role)."""

    outputs: dict[str, Any] = field(default_factory=dict)
    gitlab: Optional[GitLabServer] = None
    wildcard: Optional[WildcardCertificate] = None
    traefik: Optional[Traefik] = None


def build_services(
    cfg: StackConfig, hosts: Mapping[str, DockerHost], trust: Union[DockerCa, DockerCaReference]
) -> PlatformServices:
    """Create the services of the roles this stack runs, and the outputs they add."""
    p, s = cfg.platform, cfg.services
    created = PlatformServices()
    outputs = created.outputs
    gitlab_host = p.host_with("gitlab")
    traefik_host = p.host_with("traefik")
    shared = gitlab_host is not None and traefik_host is not None and gitlab_host.name == traefik_host.name
    network: Optional[docker.Network] = None
    if shared:
        assert gitlab_host is not None
        network = docker.Network(
            "services-network",
            name=SERVICES_NETWORK,
            driver="bridge",
            ipam_configs=[docker.NetworkIpamConfigArgs(subnet=SERVICES_SUBNET)],
            opts=pulumi.ResourceOptions(provider=hosts[gitlab_host.name].provider),
        )

    if gitlab_host is not None:
        on_host = hosts[gitlab_host.name]
        gitlab = created.gitlab = GitLabServer(
            "gitlab-server",
            GitLabServerArgs(
                host=gitlab_host,
                ssh_private_key=p.ssh_private_key,
                hostnames=s.hostnames,
                timezone=p.timezone,
                settings=s.gitlab,
                trusted_proxies=[SERVICES_SUBNET] if shared else [h.address for h in p.hosts_with("traefik")],
                after=[on_host.setup],
                network=network.name if network is not None else None,
            ),
            opts=pulumi.ResourceOptions(provider=on_host.provider),
        )
        outputs[GITLAB_URL_OUTPUT] = gitlab.url
        outputs[REGISTRY_URL_OUTPUT] = gitlab.registry_url
        outputs[GITLAB_SSH_URL_OUTPUT] = gitlab.ssh_url

    if traefik_host is not None:
        # The traefik role only runs in the stack that owns the Docker CA (config checks it).
        assert isinstance(trust, DockerCa)
        assert s.traefik.acme_email is not None
        on_host = hosts[traefik_host.name]
        provider = pulumi.ResourceOptions(provider=on_host.provider)
        wildcard = created.wildcard = WildcardCertificate(
            "wildcard-certificate",
            WildcardCertificateArgs(
                host=traefik_host,
                ssh_private_key=p.ssh_private_key,
                hostnames=s.hostnames,
                timezone=p.timezone,
                settings=s.wildcard,
                acme_email=s.traefik.acme_email,
                acme_staging=s.traefik.acme_staging,
                after=[on_host.setup],
            ),
            opts=provider,
        )
        traefik = created.traefik = Traefik(
            "traefik",
            TraefikArgs(
                host=traefik_host,
                ssh_private_key=p.ssh_private_key,
                hostnames=s.hostnames,
                timezone=p.timezone,
                settings=s.traefik,
                docker_ca_cert_pem=trust.ca_cert_pem,
                docker_client=trust.client("traefik"),
                review_daemon=p.review_daemon,
                gitlab=(
                    None
                    if gitlab_host is None
                    else GitLabUpstream.on_network() if shared else GitLabUpstream.published(gitlab_host.address)
                ),
                network=network.name if network is not None else None,
                wildcard=wildcard.traefik,
                after=[on_host.setup],
            ),
            opts=provider,
        )
        outputs[TRAEFIK_ENTRYPOINTS_OUTPUT] = traefik.entrypoints
        outputs[WILDCARD_DOMAIN_OUTPUT] = wildcard.domain
        outputs[WILDCARD_METHOD_OUTPUT] = wildcard.method
        outputs[PRODUCTION_APP_URLS_OUTPUT] = {a.name: f"https://{a.host}" for a in s.traefik.production_apps}
        if traefik.dashboard_url is not None:
            outputs[DASHBOARD_URL_OUTPUT] = traefik.dashboard_url
    return created
