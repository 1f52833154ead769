"""WildcardCertificate: *.dev.<domain> for review apps, by ACME DNS-01, in Traefik's store.

Two methods, chosen by `delivery:wildcardMethod`:

* `traefik`: the edge Traefik's own DNS-01 resolver (lego). The credentials are written as
  files under /srv/traefik/secrets/dns (mode 400, through secret stdin) and Traefik gets
  `<NAME>_FILE=/secrets/dns/<NAME>` variables, which lego reads; no secret is in the
  container's environment or labels. With `dnsProvider: exec`, lego runs the user's script
  (`dnsExecScript`, installed there as exec.sh, mode 500; `EXEC_PATH` points at it). The edge's
  review-apps router requests `dev.<domain>` + `*.dev.<domain>` from the resolver; Traefik
  renews it itself. A change of the credentials replaces the edge (lego reads them at start).
* `dnsrobocert`: the dnsrobocert container (the renamed letsencrypt-dns of the seed) with
  its config.yml rendered from config (secret, mode 600; dnsrobocert re-reads it on
  change). Its deploy hook copies each new certificate into /srv/traefik/certs/wildcard
  and rewrites Traefik's reload stamp, so Traefik's file provider reloads and serves the
  renewed certificate (`tls.certificates`) without a restart and without manual copying.

Either way the certificate is in Traefik's default store, so a review-app router only
needs `tls=true`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import pulumi
import pulumi_docker as docker
import yaml

from ..config import HostConfig
from ..config.services import EXEC_PROVIDER, LETS_ENCRYPT, AcmeSettings, Hostnames, WildcardSettings
from ..host.host_files import Ensure, install_files
from ..host.remote_script import FileSpec
from .traefik import (
    IN_CERTS,
    IN_SECRETS,
    RELOAD_STAMP,
    SECRETS_DIR,
    WILDCARD_CERTS_DIR,
    WildcardParts,
    acme_resolver,
)

DNS_RESOLVER = "letsencrypt-dns"

# -- method traefik ------------------------------------------------------------------------
DNS_SECRETS_DIR = f"{SECRETS_DIR}/dns"
IN_DNS_SECRETS = f"{IN_SECRETS}/dns"
EXEC_SCRIPT = "exec.sh"

# -- method dnsrobocert --------------------------------------------------------------------
DNSROBOCERT_IMAGE = "adferrand/dnsrobocert"
DNSROBOCERT_CONTAINER = "dnsrobocert"
DNSROBOCERT_SRV = "/srv/letsencrypt-dns"
DNSROBOCERT_CONFIG_DIR = f"{DNSROBOCERT_SRV}/config"
DNSROBOCERT_CONFIG = f"{DNSROBOCERT_CONFIG_DIR}/config.yml"
DNSROBOCERT_HOOK = f"{DNSROBOCERT_CONFIG_DIR}/deploy-to-traefik.sh"
DNSROBOCERT_ACME_CA = f"{DNSROBOCERT_CONFIG_DIR}/acme-ca.pem"
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


def lineage(hostnames: Hostnames, acme: AcmeSettings) -> str:
    """certbot's certificate name: a certificate of another CA never stands in for this one."""
    server = acme.wildcard_server
    if server == LETS_ENCRYPT:
        return hostnames.wildcard_domain
    if acme.staging_wildcard:
        return f"{hostnames.wildcard_domain}-staging"
    return f"{hostnames.wildcard_domain}-{hashlib.sha256(server.encode()).hexdigest()[:12]}"


def traefik_resolvers(settings: WildcardSettings, acme_email: str, acme: AcmeSettings) -> dict[str, Any]:
    """The DNS-01 resolver of the edge's static config (method traefik; pure)."""
    challenge: dict[str, Any] = {"provider": settings.dns_provider}
    if settings.resolvers:
        challenge["resolvers"] = list(settings.resolvers)
    propagation: dict[str, Any] = {}
    if settings.propagation_seconds is not None:
        propagation["delayBeforeChecks"] = f"{settings.propagation_seconds}s"
    if not settings.propagation_check:
        propagation["disableChecks"] = True
    if propagation:
        challenge["propagation"] = propagation
    return {DNS_RESOLVER: acme_resolver(acme_email, acme, acme.wildcard_server, {"dnsChallenge": challenge})}


def review_tls(hostnames: Hostnames) -> dict[str, Any]:
    """The review-apps router's tls (method traefik): it makes the edge request the wildcard."""
    return {"certResolver": DNS_RESOLVER, "domains": [{"main": hostnames.wildcard_domain, "sans": [hostnames.wildcard]}]}


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
    acme: AcmeSettings,
    provider_options: dict[str, str],
) -> dict[str, Any]:
    """dnsrobocert's config.yml as data (pure); `provider_options` are the secret credentials."""
    profile: dict[str, Any] = {"name": DNS_PROFILE, "provider": settings.dns_provider, "provider_options": dict(provider_options)}
    if settings.propagation_seconds is not None:
        profile["sleep_time"] = settings.propagation_seconds
    account: dict[str, Any] = {"email_account": acme_email, "api_version": 2}
    if acme.wildcard_server == LETS_ENCRYPT or acme.staging_wildcard:
        account["staging"] = acme.staging_wildcard
    else:
        account["directory_url"] = acme.wildcard_server
    return {
        "draft": False,
        "acme": account,
        "profiles": [profile],
        "certificates": [
            {
                "name": lineage(hostnames, acme),
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
    acme: AcmeSettings = AcmeSettings()
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
        uses_exec = s.method == "traefik" and s.dns_provider == EXEC_PROVIDER
        if s.dns_provider is None or not (s.dns_credentials or uses_exec):
            raise ValueError("WildcardCertificate needs delivery:dnsProvider and delivery:dnsCredentials")
        if uses_exec and s.exec_script is None:
            raise ValueError("dnsProvider exec needs delivery:dnsExecScript")
        self.method = s.method
        self.container = None
        creds = dict(s.dns_credentials or {})
        names = sorted(creds)
        credentials = pulumi.Output.secret(pulumi.Output.all(**{n: creds[n] for n in names}))
        acme_ca = args.acme.ca_certificate

        if s.method == "traefik":
            script = pulumi.Output.secret(s.exec_script) if s.exec_script is not None else None

            def secret_files(values: list[Any]) -> list[FileSpec]:
                c, exec_text = values
                files = [FileSpec(f"{DNS_SECRETS_DIR}/{n}", 0o400, c[n]) for n in names]
                if exec_text is not None:
                    files.append(FileSpec(f"{DNS_SECRETS_DIR}/{EXEC_SCRIPT}", 0o500, exec_text))
                return files

            self.files = install_files(
                f"{name}-credentials",
                host=args.host,
                private_key=args.ssh_private_key,
                files=pulumi.Output.all(credentials, script).apply(secret_files),
                secret=True,
                prune=[DNS_SECRETS_DIR, DNSROBOCERT_CONFIG_DIR, WILDCARD_CERTS_DIR],
                parent=self,
                depends_on=list(args.after),
            )
            envs = lego_file_envs(names) + ((f"EXEC_PATH={IN_DNS_SECRETS}/{EXEC_SCRIPT}",) if uses_exec else ())
            self.traefik = WildcardParts(
                resolvers=traefik_resolvers(s, args.acme_email, args.acme),
                review_tls=review_tls(args.hostnames),
                envs=envs,
                volumes=((DNS_SECRETS_DIR, IN_DNS_SECRETS),),
                restart_trigger=pulumi.Output.secret(pulumi.Output.all(credentials, script)),
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
                            yaml.safe_dump(dnsrobocert_config(args.hostnames, s, args.acme_email, args.acme, c), sort_keys=False),
                        ),
                        FileSpec(DNSROBOCERT_HOOK, 0o755, hook),
                        *([FileSpec(DNSROBOCERT_ACME_CA, 0o444, acme_ca)] if acme_ca is not None else []),
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
            volumes = [
                docker.ContainerVolumeArgs(host_path=DNSROBOCERT_CONFIG_DIR, container_path=IN_DNSROBOCERT_CONFIG, read_only=True),
                docker.ContainerVolumeArgs(host_path=DNSROBOCERT_STATE, container_path=IN_DNSROBOCERT_STATE),
                docker.ContainerVolumeArgs(host_path=WILDCARD_CERTS_DIR, container_path=IN_DNSROBOCERT_DELIVERY),
                docker.ContainerVolumeArgs(host_path=RELOAD_STAMP, container_path=IN_DNSROBOCERT_STAMP),
            ]
            envs = [f"TZ={args.timezone}"]
            if acme_ca is not None:
                # certbot talks to the ACME server through requests, which trusts this bundle.
                envs.append(f"REQUESTS_CA_BUNDLE={IN_DNSROBOCERT_CONFIG}/{Path(DNSROBOCERT_ACME_CA).name}")
            self.container = docker.Container(
                f"{name}-container",
                name=DNSROBOCERT_CONTAINER,
                image=image.image_id,
                restart="always",
                envs=envs,
                volumes=volumes,
                labels=[docker.ContainerLabelArgs(label="delivery.managed-by", value="pulumi")],
                opts=pulumi.ResourceOptions(parent=self, depends_on=[self.files], delete_before_replace=True),
            )
            self.traefik = WildcardParts(dynamic=dnsrobocert_dynamic(), review_tls={}, ready=(self.files,))

        self.domain = pulumi.Output.from_input(args.hostnames.wildcard_domain)
        self.register_outputs({"domain": self.domain, "method": self.method})
