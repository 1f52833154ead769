"""WildcardCertificate: *.dev.<domain> for review apps, by ACME DNS-01, in Traefik's store.

Two methods, chosen by `delivery:wildcardMethod`:

* `traefik`: Traefik's own DNS-01 resolver (lego). The credentials are written as files
  under /srv/traefik/secrets/dns (mode 400, through secret stdin) and Traefik gets
  `<NAME>_FILE=/secrets/dns/<NAME>` variables, which lego reads; no secret is in the
  container's environment or labels. A router in the file provider requests
  `dev.<domain>` + `*.dev.<domain>` from the resolver; Traefik renews it itself. A change
  of the credentials replaces Traefik (lego reads them when Traefik starts).
* `dnsrobocert`: the dnsrobocert container (the renamed letsencrypt-dns of the seed) with
  its config.yml rendered from config (secret, mode 600; dnsrobocert re-reads it on
  change). Its deploy hook copies each new certificate into /srv/traefik/certs/wildcard
  and rewrites Traefik's reload stamp, so Traefik's file provider reloads and serves the
  renewed certificate (`tls.certificates`) without a restart and without manual copying.

Either way the certificate is in Traefik's default store, so a review-app router only
needs `tls=true`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import pulumi
import pulumi_docker as docker
import yaml

from ..config import HostConfig
from ..config.services import Hostnames, WildcardSettings
from ..host.host_files import Ensure, install_files
from ..host.remote_script import FileSpec
from .traefik import (
    IN_CERTS,
    IN_SECRETS,
    RELOAD_STAMP,
    SECRETS_DIR,
    SECURITY_HEADERS,
    WEBSECURE,
    WILDCARD_CERTS_DIR,
    WildcardParts,
    acme_storage,
    ca_server,
    host_rule,
)

DNS_RESOLVER = "letsencrypt-dns"
ROUTER = "wildcard-certificate"

# -- method traefik ------------------------------------------------------------------------
DNS_SECRETS_DIR = f"{SECRETS_DIR}/dns"
IN_DNS_SECRETS = f"{IN_SECRETS}/dns"

# -- method dnsrobocert --------------------------------------------------------------------
DNSROBOCERT_IMAGE = "adferrand/dnsrobocert"
DNSROBOCERT_CONTAINER = "dnsrobocert"
DNSROBOCERT_SRV = "/srv/letsencrypt-dns"
DNSROBOCERT_CONFIG_DIR = f"{DNSROBOCERT_SRV}/config"
DNSROBOCERT_CONFIG = f"{DNSROBOCERT_CONFIG_DIR}/config.yml"
DNSROBOCERT_HOOK = f"{DNSROBOCERT_CONFIG_DIR}/deploy-to-traefik.sh"
DNSROBOCERT_STATE = f"{DNSROBOCERT_SRV}/letsencrypt"
IN_DNSROBOCERT_CONFIG = "/etc/dnsrobocert"
IN_DNSROBOCERT_STATE = "/etc/letsencrypt"
IN_DNSROBOCERT_DELIVERY = "/traefik/certs"
IN_DNSROBOCERT_STAMP = "/traefik/reload.stamp"
DNS_PROFILE = "dns"
HOOK_SCRIPT = Path(__file__).parent / "scripts" / "dnsrobocert-deploy-hook.sh"
#: Where Traefik reads the delivered certificate (its /srv/traefik/certs mount).
TRAEFIK_CERT_FILE = f"{IN_CERTS}/wildcard/fullchain.pem"
TRAEFIK_KEY_FILE = f"{IN_CERTS}/wildcard/privkey.pem"


def lineage(hostnames: Hostnames, staging: bool) -> str:
    """certbot's certificate name: a staging certificate never stands in for a real one."""
    return f"{hostnames.wildcard_domain}-staging" if staging else hostnames.wildcard_domain


def traefik_resolvers(settings: WildcardSettings, acme_email: str, acme_staging: bool) -> dict[str, Any]:
    """The DNS-01 resolver of the static config (method traefik; pure)."""
    challenge: dict[str, Any] = {"provider": settings.dns_provider}
    if settings.propagation_seconds is not None:
        challenge["propagation"] = {"delayBeforeChecks": f"{settings.propagation_seconds}s"}
    return {
        DNS_RESOLVER: {
            "acme": {
                "email": acme_email,
                "storage": acme_storage(acme_staging),
                "caServer": ca_server(acme_staging),
                "dnsChallenge": challenge,
            }
        }
    }


def traefik_dynamic(hostnames: Hostnames) -> dict[str, Any]:
    """The router that makes Traefik request the wildcard certificate (method traefik; pure)."""
    return {
        "http": {
            "routers": {
                ROUTER: {
                    "entryPoints": [WEBSECURE],
                    "rule": host_rule(hostnames.wildcard_domain),
                    "service": "noop@internal",
                    "middlewares": [SECURITY_HEADERS],
                    "tls": {
                        "certResolver": DNS_RESOLVER,
                        "domains": [{"main": hostnames.wildcard_domain, "sans": [hostnames.wildcard]}],
                    },
                }
            }
        }
    }


def dnsrobocert_dynamic() -> dict[str, Any]:
    """The delivered certificate in Traefik's default store (method dnsrobocert; pure)."""
    return {"tls": {"certificates": [{"certFile": TRAEFIK_CERT_FILE, "keyFile": TRAEFIK_KEY_FILE, "stores": ["default"]}]}}


def lego_file_envs(names: Sequence[str]) -> tuple[str, ...]:
    """lego reads <NAME> from the file named by <NAME>_FILE."""
    return tuple(f"{n}_FILE={IN_DNS_SECRETS}/{n}" for n in sorted(names))


def dnsrobocert_config(
    hostnames: Hostnames,
    settings: WildcardSettings,
    acme_email: str,
    acme_staging: bool,
    provider_options: dict[str, str],
) -> dict[str, Any]:
    """dnsrobocert's config.yml as data (pure); `provider_options` are the secret credentials."""
    profile: dict[str, Any] = {"name": DNS_PROFILE, "provider": settings.dns_provider, "provider_options": dict(provider_options)}
    if settings.propagation_seconds is not None:
        profile["sleep_time"] = settings.propagation_seconds
    return {
        "draft": False,
        "acme": {"email_account": acme_email, "staging": acme_staging, "api_version": 2},
        "profiles": [profile],
        "certificates": [
            {
                "name": lineage(hostnames, acme_staging),
                "domains": [hostnames.wildcard, hostnames.wildcard_domain],
                "profile": DNS_PROFILE,
                "deploy_hook": f"bash {IN_DNSROBOCERT_CONFIG}/{Path(DNSROBOCERT_HOOK).name}",
            }
        ],
    }


@dataclass(frozen=True)
class WildcardCertificateArgs:
    host: HostConfig
    """The host with the traefik role."""
    ssh_private_key: pulumi.Input[str]
    hostnames: Hostnames
    timezone: str
    settings: WildcardSettings
    """Method, DNS provider, credentials (secret), propagation wait, dnsrobocert version."""
    acme_email: str
    acme_staging: bool = False
    after: Sequence[pulumi.Resource] = field(default_factory=tuple)


class WildcardCertificate(pulumi.ComponentResource):
    """*.dev.<domain> by DNS-01. Build it before Traefik and give Traefik its `traefik` parts.
    Pass the Traefik host's Docker provider in `opts` (the dnsrobocert container runs there)."""

    domain: pulumi.Output[str]
    method: str
    traefik: WildcardParts
    files: Any
    container: Optional[docker.Container]

    def __init__(self, name: str, args: WildcardCertificateArgs, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__("delivery:traefik:WildcardCertificate", name, None, opts)
        s = args.settings
        if s.dns_provider is None or not s.dns_credentials:
            raise ValueError("WildcardCertificate needs delivery:dnsProvider and delivery:dnsCredentials")
        self.method = s.method
        self.container = None
        names = sorted(s.dns_credentials)
        credentials = pulumi.Output.secret(pulumi.Output.all(**{n: s.dns_credentials[n] for n in names}))

        if s.method == "traefik":
            self.files = install_files(
                f"{name}-credentials",
                host=args.host,
                private_key=args.ssh_private_key,
                files=credentials.apply(lambda c: [FileSpec(f"{DNS_SECRETS_DIR}/{n}", 0o400, c[n]) for n in names]),
                secret=True,
                prune=[DNS_SECRETS_DIR, DNSROBOCERT_CONFIG_DIR, WILDCARD_CERTS_DIR],
                parent=self,
                depends_on=list(args.after),
            )
            self.traefik = WildcardParts(
                resolvers=traefik_resolvers(s, args.acme_email, args.acme_staging),
                dynamic=traefik_dynamic(args.hostnames),
                envs=lego_file_envs(names),
                volumes=((DNS_SECRETS_DIR, IN_DNS_SECRETS),),
                restart_trigger=credentials,
                ready=(self.files,),
            )
        else:
            hook = HOOK_SCRIPT.read_text()
            self.files = install_files(
                f"{name}-files",
                host=args.host,
                private_key=args.ssh_private_key,
                files=credentials.apply(
                    lambda c: [
                        FileSpec(
                            DNSROBOCERT_CONFIG,
                            0o600,
                            yaml.safe_dump(dnsrobocert_config(args.hostnames, s, args.acme_email, args.acme_staging, c), sort_keys=False),
                        ),
                        FileSpec(DNSROBOCERT_HOOK, 0o755, hook),
                    ]
                ),
                secret=True,
                ensure=[Ensure(RELOAD_STAMP, 0o644)],
                prune=[DNSROBOCERT_CONFIG_DIR, DNS_SECRETS_DIR],
                parent=self,
                depends_on=list(args.after),
            )
            image = docker.RemoteImage(
                f"{name}-image",
                name=f"{DNSROBOCERT_IMAGE}:{s.dnsrobocert_version}",
                keep_locally=True,
                opts=pulumi.ResourceOptions(parent=self),
            )
            self.container = docker.Container(
                f"{name}-container",
                name=DNSROBOCERT_CONTAINER,
                image=image.image_id,
                restart="always",
                envs=[f"TZ={args.timezone}"],
                volumes=[
                    docker.ContainerVolumeArgs(host_path=DNSROBOCERT_CONFIG_DIR, container_path=IN_DNSROBOCERT_CONFIG, read_only=True),
                    docker.ContainerVolumeArgs(host_path=DNSROBOCERT_STATE, container_path=IN_DNSROBOCERT_STATE),
                    docker.ContainerVolumeArgs(host_path=WILDCARD_CERTS_DIR, container_path=IN_DNSROBOCERT_DELIVERY),
                    docker.ContainerVolumeArgs(host_path=RELOAD_STAMP, container_path=IN_DNSROBOCERT_STAMP),
                ],
                labels=[docker.ContainerLabelArgs(label="delivery.managed-by", value="pulumi")],
                opts=pulumi.ResourceOptions(parent=self, depends_on=[self.files], delete_before_replace=True),
            )
            self.traefik = WildcardParts(dynamic=dnsrobocert_dynamic(), ready=(self.files,))

        self.domain = pulumi.Output.from_input(args.hostnames.wildcard_domain)
        self.register_outputs({"domain": self.domain, "method": self.method})
