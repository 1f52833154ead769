"""ReviewTraefik: the Traefik instance that serves review apps (container `traefik-review` on
the traefik host), the only reader of review-app labels (docs/services.md, "Two Traefik
instances"; components/services/traefik.py has the edge).

* Docker provider only, pointed at the review-app daemon (Staging) over mutual TLS with the
  `review-traefik` client certificate of the staging trust domain: that key opens Staging's
  daemon and no other;
* one plain-HTTP entrypoint `review` (:80) on the internal network `delivery-review`, where only
  the edge reaches it (it forwards `<label>.dev.<domain>` with TLS ended, and the review
  instance trusts X-Forwarded-* from that network only);
* no published port, no `api`/dashboard, no ACME, no file provider: whatever labels a review
  container carries, they define routers of this instance only, and this instance receives
  nothing but review hosts.

Files under /srv/traefik/review: traefik.yml (static config), certs/{ca,cert,key}.pem (the
client certificate; key 0400), logs/access.log. A change of any of them replaces the container
(a label carries their hash).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import pulumi
import pulumi_docker as docker

from ..config import DaemonIdentity, HostConfig
from ..host.docker_ca import TlsBundle
from ..host.host_files import install_files
from ..host.remote_script import FileSpec, sha256
from .traefik import (
    IMAGE,
    IN_LOGS,
    IN_STATIC,
    PING,
    PING_ADDRESS,
    REVIEW,
    REVIEW_CONTAINER_NAME,
    REVIEW_PORT,
    REVIEW_SUBNET,
    STATIC_HASH_LABEL,
    TraefikNetworks,
    base_static,
    to_yaml,
    traefik_healthcheck,
)

SRV = "/srv/traefik/review"
STATIC_FILE = f"{SRV}/traefik.yml"
CERTS_DIR = f"{SRV}/certs"
LOGS_DIR = f"{SRV}/logs"
IN_CERTS = "/certs"


def review_static_config(review_endpoint: str) -> dict[str, Any]:
    """The review instance's traefik.yml as data (pure)."""
    config = base_static(f"{IN_LOGS}/access.log")
    config.update(
        {
            "entryPoints": {
                REVIEW: {
                    "address": f":{REVIEW_PORT}",
                    # The edge ends TLS and sets X-Forwarded-*: trusted from its network only.
                    "forwardedHeaders": {"trustedIPs": [REVIEW_SUBNET]},
                },
                PING: {"address": PING_ADDRESS},
            },
            "ping": {"entryPoint": PING},
            "providers": {
                "docker": {
                    "endpoint": review_endpoint,
                    "tls": {
                        "ca": f"{IN_CERTS}/ca.pem",
                        "cert": f"{IN_CERTS}/cert.pem",
                        "key": f"{IN_CERTS}/key.pem",
                    },
                    "exposedByDefault": False,
                    "useBindPortIP": True,
                    "watch": True,
                }
            },
        }
    )
    return config


@dataclass(frozen=True)
class ReviewTraefikArgs:
    host: HostConfig
    """The host with the traefik role (Production)."""
    ssh_private_key: pulumi.Input[str]
    timezone: str
    version: str
    """traefik image tag (the edge's)."""
    daemon: DaemonIdentity
    """The review-app daemon it watches."""
    daemon_ca_pem: pulumi.Input[str]
    """The CA that issued that daemon's server certificate (the staging CA)."""
    client: TlsBundle
    """The `review-traefik` client certificate (staging trust domain)."""
    networks: TraefikNetworks
    after: Sequence[pulumi.Resource] = field(default_factory=tuple)


class ReviewTraefik(pulumi.ComponentResource):
    """The review instance's files and container. Pass the host's Docker provider in `opts`."""

    static: dict[str, Any]
    files: Any
    container: docker.Container

    def __init__(self, name: str, args: ReviewTraefikArgs, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__("delivery:traefik:ReviewTraefik", name, None, opts)
        self.static = review_static_config(args.daemon.docker_endpoint)
        static_yaml = to_yaml(self.static)
        client = args.client

        files = pulumi.Output.all(args.daemon_ca_pem, client.cert_pem, client.key_pem).apply(
            lambda pems: [
                FileSpec(STATIC_FILE, 0o644, static_yaml),
                FileSpec(f"{CERTS_DIR}/ca.pem", 0o444, pems[0]),
                FileSpec(f"{CERTS_DIR}/cert.pem", 0o444, pems[1]),
                FileSpec(f"{CERTS_DIR}/key.pem", 0o400, pems[2]),
            ]
        )
        self.files = install_files(
            f"{name}-files",
            host=args.host,
            private_key=args.ssh_private_key,
            files=files,
            secret=True,
            parent=self,
            depends_on=list(args.after),
        )
        # Traefik reads the static config and the certificates when it starts.
        restart_hash = pulumi.Output.all(args.daemon_ca_pem, client.cert_pem).apply(lambda pems: sha256(static_yaml, *pems))
        image = docker.RemoteImage(
            f"{name}-image", name=f"{IMAGE}:{args.version}", keep_locally=True, opts=pulumi.ResourceOptions(parent=self)
        )
        n = args.networks
        self.container = docker.Container(
            f"{name}-container",
            name=REVIEW_CONTAINER_NAME,
            image=image.image_id,
            restart="always",
            volumes=[
                docker.ContainerVolumeArgs(host_path=STATIC_FILE, container_path=IN_STATIC, read_only=True),
                docker.ContainerVolumeArgs(host_path=CERTS_DIR, container_path=IN_CERTS, read_only=True),
                docker.ContainerVolumeArgs(host_path=LOGS_DIR, container_path=IN_LOGS),
                docker.ContainerVolumeArgs(host_path="/usr/share/zoneinfo", container_path="/usr/share/zoneinfo", read_only=True),
            ],
            networks_advanced=[
                docker.ContainerNetworksAdvancedArgs(name=n.review, aliases=[REVIEW_CONTAINER_NAME]),
                docker.ContainerNetworksAdvancedArgs(name=n.review_egress),
            ],
            envs=[f"TZ={args.timezone}"],
            healthcheck=traefik_healthcheck(),
            labels=[
                docker.ContainerLabelArgs(label="delivery.managed-by", value="pulumi"),
                docker.ContainerLabelArgs(label=STATIC_HASH_LABEL, value=restart_hash),
            ],
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[self.files],
                delete_before_replace=True,
                replace_on_changes=["healthcheck"],
            ),
        )
        self.register_outputs({})
