"""The platform's services placed by role: GitLab on the `gitlab` host, the wildcard
certificate and the two Traefik instances (edge, review) on the `traefik` host
(docs/services.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence, Union

import pulumi
import pulumi_docker as docker

from ..config import StackConfig
from ..config import HostConfig
from ..host.docker_ca import DockerTrust
from ..host.docker_host import DockerHost
from .gitlab_server import GitLabServer, GitLabServerArgs, GitLabUpstream
from .review_traefik import ReviewTraefik, ReviewTraefikArgs
from .traefik import (
    EDGE_NETWORK,
    REVIEW_EGRESS_NETWORK,
    REVIEW_NETWORK,
    REVIEW_SUBNET,
    EdgeTraefik,
    EdgeTraefikArgs,
    TraefikNetworks,
)
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
#: (the edge listens on 80 and 1023 there itself).
SERVICES_NETWORK = "delivery-services"
SERVICES_SUBNET = "172.31.254.0/24"


@dataclass
class PlatformServices:
    """What build_services created (None where this stack does not run the role)."""

    outputs: dict[str, Any] = field(default_factory=dict)
    gitlab: Optional[GitLabServer] = None
    wildcard: Optional[WildcardCertificate] = None
    traefik: Optional[EdgeTraefik] = None
    review: Optional[ReviewTraefik] = None


def _network(name: str, docker_name: str, provider: docker.Provider, **kwargs: Any) -> docker.Network:
    return docker.Network(
        name,
        name=docker_name,
        driver="bridge",
        labels=[docker.NetworkLabelArgs(label="delivery.managed-by", value="pulumi")],
        opts=pulumi.ResourceOptions(provider=provider),
        **kwargs,
    )


def gitlab_trusted_proxies(hosts: Sequence[HostConfig]) -> list[str]:
    """Whose X-Forwarded-For GitLab trusts: the services network when Traefik shares GitLab's
    host, else the Traefik host(s)."""
    gitlab_host = next((h for h in hosts if h.has("gitlab")), None)
    traefik = [h for h in hosts if h.has("traefik")]
    if gitlab_host is not None and traefik and gitlab_host.name == traefik[0].name:
        return [SERVICES_SUBNET]
    return [h.address for h in traefik]


def build_services(
    cfg: StackConfig,
    hosts: Mapping[str, DockerHost],
    trust: Optional[DockerTrust],
    gitlab_before: Sequence[pulumi.Resource] = (),
) -> PlatformServices:
    """Create the services of the roles this stack runs, and the outputs they add.
    `gitlab_before`: steps that finish before the GitLab container is created or replaced
    (the pre-upgrade check and backup, components/operations/upgrade.py)."""
    p, s = cfg.platform, cfg.services
    created = PlatformServices()
    outputs = created.outputs
    gitlab_host = p.host_with("gitlab")
    traefik_host = p.host_with("traefik")
    shared = gitlab_host is not None and traefik_host is not None and gitlab_host.name == traefik_host.name
    services_network: Optional[docker.Network] = None
    if shared:
        assert gitlab_host is not None
        services_network = _network(
            "services-network", SERVICES_NETWORK, hosts[gitlab_host.name].provider,
            ipam_configs=[docker.NetworkIpamConfigArgs(subnet=SERVICES_SUBNET)],
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
                trusted_proxies=gitlab_trusted_proxies(p.hosts),
                after=[on_host.setup],
                network=services_network.name if services_network is not None else None,
                before_container=list(gitlab_before),
            ),
            opts=pulumi.ResourceOptions(provider=on_host.provider),
        )
        outputs[GITLAB_URL_OUTPUT] = gitlab.url
        outputs[REGISTRY_URL_OUTPUT] = gitlab.registry_url
        outputs[GITLAB_SSH_URL_OUTPUT] = gitlab.ssh_url

    if traefik_host is not None:
        # The traefik role only runs in the stack that owns the Docker CAs (config checks it).
        assert trust is not None
        assert s.traefik.acme_email is not None
        on_host = hosts[traefik_host.name]
        provider = pulumi.ResourceOptions(provider=on_host.provider)
        networks = TraefikNetworks(
            edge=_network("edge-network", EDGE_NETWORK, on_host.provider).name,
            review=_network(
                "review-network", REVIEW_NETWORK, on_host.provider,
                internal=True, ipam_configs=[docker.NetworkIpamConfigArgs(subnet=REVIEW_SUBNET)],
            ).name,
            review_egress=_network("review-egress-network", REVIEW_EGRESS_NETWORK, on_host.provider).name,
            services=services_network.name if services_network is not None else None,
        )
        wildcard = created.wildcard = WildcardCertificate(
            "wildcard-certificate",
            WildcardCertificateArgs(
                host=traefik_host,
                ssh_private_key=p.ssh_private_key,
                hostnames=s.hostnames,
                timezone=p.timezone,
                settings=s.wildcard,
                acme_email=s.traefik.acme_email,
                acme=s.traefik.acme,
                after=[on_host.setup],
            ),
            opts=provider,
        )
        review_daemon = p.review_daemon
        if review_daemon is not None:
            created.review = ReviewTraefik(
                "traefik-review",
                ReviewTraefikArgs(
                    host=traefik_host,
                    ssh_private_key=p.ssh_private_key,
                    timezone=p.timezone,
                    version=s.traefik.version,
                    daemon=review_daemon,
                    daemon_ca_pem=trust.staging_trust_pem,
                    client=trust.review_client,
                    networks=networks,
                    after=[on_host.setup],
                ),
                opts=provider,
            )
        traefik = created.traefik = EdgeTraefik(
            "traefik",
            EdgeTraefikArgs(
                host=traefik_host,
                ssh_private_key=p.ssh_private_key,
                hostnames=s.hostnames,
                timezone=p.timezone,
                settings=s.traefik,
                networks=networks,
                gitlab=(
                    None
                    if gitlab_host is None
                    else GitLabUpstream.on_network() if shared else GitLabUpstream.published(gitlab_host.address)
                ),
                review_apps=review_daemon is not None,
                wildcard=wildcard.traefik,
                after=[on_host.setup],
                rate_limits=cfg.operations.rate_limits,
                in_flight_requests=cfg.operations.in_flight_requests,
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
