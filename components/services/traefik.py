"""Traefik v3 on the host with the `traefik` role: the platform's one public entry (pulumi-docker).

Files under /srv/traefik (installed by scripts/install-files.sh, all rendered as data):

    traefik.yml                 static config: entrypoints, ACME, providers, logs
    dynamic/routes.yml          dynamic config (file provider, watched): GitLab, registry,
                                GitLab SSH (TCP), production apps, TLS options, middlewares
    dynamic/dashboard.yml       the dashboard router and its basic auth (secret; only when set)
    certs/staging/*.pem         Traefik's client certificate for Staging's Docker daemon (mTLS)
    letsencrypt/acme*.json      ACME state (mode 600, owned by Traefik, never overwritten)
    logs/access.log             access log

A change of the static config (or of the client certificate) changes a label of the
container, which replaces it; the dynamic files are reloaded by the file provider without
a restart. The Docker provider watches only Staging's daemon (review apps by label);
everything on Production and Services is routed by the file provider.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import pulumi
import pulumi_docker as docker
import yaml

from ..config import DaemonIdentity, HostConfig
from ..config.services import Hostnames, ProductionApp, TraefikSettings
from ..host.docker_ca import TlsBundle
from .gitlab_server import GitLabUpstream
from ..host.host_files import Ensure, install_files
from ..host.remote_script import FileSpec, sha256

IMAGE = "traefik"
CONTAINER_NAME = "traefik"

# -- entrypoints (a contract: templates/review_app_contract.py) ---------------------------
WEB = "web"
WEBSECURE = "websecure"
GITLAB_SSH = "gitlab-ssh"
PING = "ping"
ENTRYPOINTS = {WEB: ":80", WEBSECURE: ":443", GITLAB_SSH: ":1023"}
PUBLISHED_PORTS = (80, 443, 1023)
#: Health checks only, inside the container (not published; nothing listens on 8080).
PING_ADDRESS = "127.0.0.1:8082"

# -- names in the dynamic config -----------------------------------------------------------
SECURITY_HEADERS = "security-headers"
DASHBOARD_AUTH = "dashboard-auth"
HTTP_RESOLVER = "letsencrypt"
"""HTTP-01 resolver of the production host names (GitLab, registry, apps, dashboard)."""

LETS_ENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"
LETS_ENCRYPT_STAGING = "https://acme-staging-v02.api.letsencrypt.org/directory"

# -- host paths and where the container sees them ------------------------------------------
SRV = "/srv/traefik"
STATIC_FILE = f"{SRV}/traefik.yml"
DYNAMIC_DIR = f"{SRV}/dynamic"
ROUTES_FILE = f"{DYNAMIC_DIR}/routes.yml"
DASHBOARD_FILE = f"{DYNAMIC_DIR}/dashboard.yml"
CERTS_DIR = f"{SRV}/certs"
STAGING_CERTS_DIR = f"{CERTS_DIR}/staging"
WILDCARD_CERTS_DIR = f"{CERTS_DIR}/wildcard"
LETSENCRYPT_DIR = f"{SRV}/letsencrypt"
LOGS_DIR = f"{SRV}/logs"
SECRETS_DIR = f"{SRV}/secrets"
#: Rewritten in place by whoever delivers certificate files, to make the file provider reload.
RELOAD_STAMP = f"{DYNAMIC_DIR}/wildcard-reload.stamp"

IN_STATIC = "/etc/traefik/traefik.yml"
IN_DYNAMIC = "/etc/traefik/dynamic"
IN_CERTS = "/certs"
IN_LETSENCRYPT = "/letsencrypt"
IN_LOGS = "/logs"
IN_SECRETS = "/secrets"

STATIC_HASH_LABEL = "delivery.static-config-sha256"

#: Mozilla's "intermediate" TLS 1.2 cipher suites (ssl-config.mozilla.org, Go names);
#: TLS 1.3 suites are not configurable in Go and all are safe.
MOZILLA_INTERMEDIATE_CIPHERS = (
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
)

#: Top-level keys of a v3 static config (traefik-v3.json does not police them).
STATIC_TOP_LEVEL_KEYS = frozenset(
    {
        "accessLog", "api", "certificatesResolvers", "core", "entryPoints", "experimental", "global",
        "hostResolver", "log", "metrics", "ping", "providers", "serversTransport", "spiffe",
        "tcpServersTransport", "tracing",
    }
)


def host_rule(host: str) -> str:
    """A v3 rule matching one host (v3 has no multi-host Host())."""
    return f"Host(`{host}`)"


def acme_storage(staging: bool) -> str:
    """One ACME state file per CA, so that leaving the staging CA starts clean."""
    return f"{IN_LETSENCRYPT}/acme-staging.json" if staging else f"{IN_LETSENCRYPT}/acme.json"


def acme_json_on_host(staging: bool) -> str:
    return LETSENCRYPT_DIR + acme_storage(staging).removeprefix(IN_LETSENCRYPT)


def ca_server(staging: bool) -> str:
    return LETS_ENCRYPT_STAGING if staging else LETS_ENCRYPT


@dataclass(frozen=True)
class WildcardParts:
    """What the wildcard certificate adds to Traefik (built by WildcardCertificate)."""

    resolvers: dict[str, Any] = field(default_factory=dict)
    """Extra `certificatesResolvers` of the static config (the DNS-01 resolver)."""
    dynamic: dict[str, Any] = field(default_factory=dict)
    """Merged into routes.yml: the router that requests the certificate, or tls.certificates."""
    envs: tuple[str, ...] = ()
    """Container environment (never a secret value: lego's *_FILE paths)."""
    volumes: tuple[tuple[str, str], ...] = ()
    """Read-only (host path, container path) mounts."""
    restart_trigger: Optional[pulumi.Output[Any]] = None
    """A secret value whose change replaces Traefik (lego reads credentials at start)."""
    ready: tuple[pulumi.Resource, ...] = ()
    """Steps that must finish before Traefik starts."""


@dataclass(frozen=True)
class TraefikSpec:
    """Everything the config renderers need, as plain data (no Outputs)."""

    hostnames: Hostnames
    acme_email: str
    acme_staging: bool = False
    review_endpoint: Optional[str] = None
    """tcp://<Staging>:2376, the Docker daemon of review apps."""
    gitlab: Optional[GitLabUpstream] = None
    """Where GitLab is reached; None leaves the GitLab routes out."""
    production_apps: tuple[ProductionApp, ...] = ()
    dashboard: bool = False
    wildcard: WildcardParts = field(default_factory=WildcardParts)


def static_config(spec: TraefikSpec) -> dict[str, Any]:
    """traefik.yml as data (pure)."""
    providers: dict[str, Any] = {"file": {"directory": IN_DYNAMIC, "watch": True}}
    if spec.review_endpoint is not None:
        providers["docker"] = {
            "endpoint": spec.review_endpoint,
            "tls": {
                "ca": f"{IN_CERTS}/staging/ca.pem",
                "cert": f"{IN_CERTS}/staging/cert.pem",
                "key": f"{IN_CERTS}/staging/key.pem",
            },
            "exposedByDefault": False,
            "useBindPortIP": True,
            "watch": True,
        }
    config: dict[str, Any] = {
        "global": {"checkNewVersion": False, "sendAnonymousUsage": False},
        "log": {"level": "INFO"},
        "accessLog": {
            "filePath": f"{IN_LOGS}/access.log",
            "format": "common",
            "bufferingSize": 100,
            # Edge protection (components/operations/fail2ban.py): without it Traefik does not
            # log requests of internal services, so the dashboard's (api@internal) 401s never
            # reach fail2ban.
            "addInternals": True,
        },
        "entryPoints": {
            # The ACME HTTP-01 challenge router has the highest priority, so the
            # challenge is answered on :80 although everything else is redirected.
            WEB: {
                "address": ENTRYPOINTS[WEB],
                "http": {"redirections": {"entryPoint": {"to": WEBSECURE, "scheme": "https", "permanent": True}}},
            },
            WEBSECURE: {
                "address": ENTRYPOINTS[WEBSECURE],
                "asDefault": True,
                # v3 defaults to 60 s, too short for large registry pushes and git clones.
                "transport": {"respondingTimeouts": {"readTimeout": "1800s"}},
            },
            GITLAB_SSH: {"address": ENTRYPOINTS[GITLAB_SSH]},
            PING: {"address": PING_ADDRESS},
        },
        "ping": {"entryPoint": PING},
        "certificatesResolvers": {
            HTTP_RESOLVER: {
                "acme": {
                    "email": spec.acme_email,
                    "storage": acme_storage(spec.acme_staging),
                    "caServer": ca_server(spec.acme_staging),
                    "httpChallenge": {"entryPoint": WEB},
                }
            },
            **copy.deepcopy(spec.wildcard.resolvers),
        },
        "providers": providers,
    }
    if spec.dashboard:
        config["api"] = {"dashboard": True, "insecure": False}
    return config


def security_headers() -> dict[str, Any]:
    return {
        "headers": {
            "stsSeconds": 31536000,
            "stsIncludeSubdomains": False,
            "forceSTSHeader": True,
            "contentTypeNosniff": True,
            "customFrameOptionsValue": "SAMEORIGIN",
            "referrerPolicy": "strict-origin-when-cross-origin",
            "customResponseHeaders": {"X-Powered-By": "", "Server": ""},
        }
    }


def _https_router(host: str, service: str, resolver: str = HTTP_RESOLVER) -> dict[str, Any]:
    return {
        "entryPoints": [WEBSECURE],
        "rule": host_rule(host),
        "service": service,
        "middlewares": [SECURITY_HEADERS],
        "tls": {"certResolver": resolver},
    }


def _service(url: str) -> dict[str, Any]:
    return {"loadBalancer": {"servers": [{"url": url}]}}


def deep_merge(base: dict[str, Any], extra: dict[str, Any], path: str = "") -> dict[str, Any]:
    """`base` with `extra` merged in; lists are concatenated; a clash of values is an error."""
    out = copy.deepcopy(base)
    for key, value in extra.items():
        where = f"{path}.{key}" if path else key
        if key not in out:
            out[key] = copy.deepcopy(value)
        elif isinstance(out[key], dict) and isinstance(value, dict):
            out[key] = deep_merge(out[key], value, where)
        elif isinstance(out[key], list) and isinstance(value, list):
            out[key] = out[key] + copy.deepcopy(value)
        else:
            raise ValueError(f"dynamic config: {where} is defined twice")
    return out


def dynamic_config(spec: TraefikSpec) -> dict[str, Any]:
    """dynamic/routes.yml as data (pure)."""
    routers: dict[str, Any] = {}
    services: dict[str, Any] = {}
    tcp: dict[str, Any] = {}
    h = spec.hostnames
    g = spec.gitlab
    if g is not None:
        routers["gitlab"] = _https_router(h.gitlab, "gitlab")
        services["gitlab"] = _service(f"http://{g.host}:{g.http_port}")
        routers["registry"] = _https_router(h.registry, "registry")
        services["registry"] = _service(f"http://{g.host}:{g.registry_port}")
        tcp = {
            "routers": {GITLAB_SSH: {"entryPoints": [GITLAB_SSH], "rule": "HostSNI(`*`)", "service": GITLAB_SSH}},
            "services": {GITLAB_SSH: {"loadBalancer": {"servers": [{"address": f"{g.host}:{g.ssh_port}"}]}}},
        }
    for app in spec.production_apps:
        routers[f"app-{app.name}"] = _https_router(app.host, f"app-{app.name}")
        services[f"app-{app.name}"] = _service(app.url)
    config: dict[str, Any] = {
        "http": {"routers": routers, "services": services, "middlewares": {SECURITY_HEADERS: security_headers()}},
        "tls": {
            "options": {
                "default": {
                    "minVersion": "VersionTLS12",
                    "cipherSuites": list(MOZILLA_INTERMEDIATE_CIPHERS),
                    "curvePreferences": ["X25519", "CurveP256", "CurveP384"],
                }
            }
        },
    }
    if tcp:
        config["tcp"] = tcp
    return deep_merge(config, spec.wildcard.dynamic)


def dashboard_config(spec: TraefikSpec, users: Sequence[str]) -> dict[str, Any]:
    """dynamic/dashboard.yml as data (pure): api@internal on websecure behind basic auth."""
    rule = f"{host_rule(spec.hostnames.dashboard)} && (PathPrefix(`/api`) || PathPrefix(`/dashboard`))"
    return {
        "http": {
            "routers": {
                "dashboard": {
                    "entryPoints": [WEBSECURE],
                    "rule": rule,
                    "service": "api@internal",
                    "middlewares": [DASHBOARD_AUTH, SECURITY_HEADERS],
                    "tls": {"certResolver": HTTP_RESOLVER},
                }
            },
            "middlewares": {DASHBOARD_AUTH: {"basicAuth": {"users": list(users), "removeHeader": True}}},
        }
    }


def dashboard_users(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def to_yaml(data: dict[str, Any]) -> str:
    return "# Managed by Pulumi (delivery platform, components/services/traefik.py); do not edit.\n" + yaml.safe_dump(
        data, sort_keys=False, default_flow_style=False
    )


@dataclass(frozen=True)
class TraefikArgs:
    host: HostConfig
    """The host with the traefik role (Production)."""
    ssh_private_key: pulumi.Input[str]
    hostnames: Hostnames
    timezone: str
    settings: TraefikSettings
    """Version, ACME, dashboard users (secret), production apps."""
    docker_ca_cert_pem: pulumi.Input[str]
    """The Docker CA: Traefik verifies Staging's daemon with it."""
    docker_client: TlsBundle
    """Traefik's client certificate for Staging's daemon (DockerCa.client("traefik"))."""
    review_daemon: Optional[DaemonIdentity] = None
    """Staging's daemon, watched for review apps (None: no Docker provider)."""
    gitlab: Optional[GitLabUpstream] = None
    """Where GitLab is reached (GitLabUpstream.published/on_network); None: no GitLab routes."""
    network: Optional[pulumi.Input[str]] = None
    """A Docker network shared with GitLab when both run on this host."""
    wildcard: WildcardParts = field(default_factory=WildcardParts)
    after: Sequence[pulumi.Resource] = field(default_factory=tuple)
    """Steps that must finish first (the host's /srv layout)."""


class Traefik(pulumi.ComponentResource):
    """Traefik's files and container. Pass the host's Docker provider in `opts`."""

    spec: TraefikSpec
    static: dict[str, Any]
    dynamic: dict[str, Any]
    files: Any
    container: docker.Container
    entrypoints: dict[str, str]
    dashboard_url: Optional[pulumi.Output[str]]

    def __init__(self, name: str, args: TraefikArgs, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__("delivery:traefik:Traefik", name, None, opts)
        s = args.settings
        if s.acme_email is None:
            raise ValueError("Traefik needs the ACME account e-mail (delivery:acmeEmail)")
        self.spec = spec = TraefikSpec(
            hostnames=args.hostnames,
            acme_email=s.acme_email,
            acme_staging=s.acme_staging,
            review_endpoint=args.review_daemon.docker_endpoint if args.review_daemon else None,
            gitlab=args.gitlab,
            production_apps=s.production_apps,
            dashboard=s.dashboard_users is not None,
            wildcard=args.wildcard,
        )
        self.static = static_config(spec)
        self.dynamic = dynamic_config(spec)
        static_yaml = to_yaml(self.static)
        routes_yaml = to_yaml(self.dynamic)
        client = args.docker_client

        users = pulumi.Output.secret(s.dashboard_users) if s.dashboard_users is not None else None

        def bundle(values: list[Any]) -> list[FileSpec]:
            ca, cert, key, users_text = values
            files = [
                FileSpec(STATIC_FILE, 0o644, static_yaml),
                FileSpec(ROUTES_FILE, 0o644, routes_yaml),
                FileSpec(f"{STAGING_CERTS_DIR}/ca.pem", 0o444, ca),
                FileSpec(f"{STAGING_CERTS_DIR}/cert.pem", 0o444, cert),
                FileSpec(f"{STAGING_CERTS_DIR}/key.pem", 0o400, key),
            ]
            if users_text is not None:
                files.append(FileSpec(DASHBOARD_FILE, 0o600, to_yaml(dashboard_config(spec, dashboard_users(users_text)))))
            return files

        files = pulumi.Output.all(args.docker_ca_cert_pem, client.cert_pem, client.key_pem, users).apply(bundle)
        self.files = install_files(
            f"{name}-files",
            host=args.host,
            private_key=args.ssh_private_key,
            files=files,
            secret=True,
            ensure=[Ensure(acme_json_on_host(spec.acme_staging), 0o600)],
            remove=[] if spec.dashboard else [DASHBOARD_FILE],
            parent=self,
            depends_on=list(args.after),
        )

        # What only a restart applies: the static config and the client certificate files.
        restart_hash = pulumi.Output.all(args.docker_ca_cert_pem, client.cert_pem).apply(
            lambda pems: sha256(static_yaml, *pems)
        )
        image = docker.RemoteImage(
            f"{name}-image", name=f"{IMAGE}:{s.version}", keep_locally=True, opts=pulumi.ResourceOptions(parent=self)
        )
        mounts = [
            (STATIC_FILE, IN_STATIC, True),
            (DYNAMIC_DIR, IN_DYNAMIC, True),
            (CERTS_DIR, IN_CERTS, True),
            (LETSENCRYPT_DIR, IN_LETSENCRYPT, False),
            (LOGS_DIR, IN_LOGS, False),
            ("/usr/share/zoneinfo", "/usr/share/zoneinfo", True),
            *((h, c, True) for h, c in args.wildcard.volumes),
        ]
        self.container = docker.Container(
            f"{name}-container",
            name=CONTAINER_NAME,
            image=image.image_id,
            restart="always",
            ports=[docker.ContainerPortArgs(internal=p, external=p, protocol="tcp") for p in PUBLISHED_PORTS],
            volumes=[
                docker.ContainerVolumeArgs(host_path=h, container_path=c, read_only=ro) for h, c, ro in mounts
            ],
            networks_advanced=(
                [docker.ContainerNetworksAdvancedArgs(name=args.network)] if args.network is not None else None
            ),
            envs=[f"TZ={args.timezone}", *args.wildcard.envs],
            healthcheck=docker.ContainerHealthcheckArgs(
                tests=["CMD", "traefik", "healthcheck", "--ping"],
                interval="30s",
                timeout="5s",
                retries=3,
                start_period="20s",
            ),
            labels=[
                docker.ContainerLabelArgs(label="delivery.managed-by", value="pulumi"),
                docker.ContainerLabelArgs(label=STATIC_HASH_LABEL, value=restart_hash),
            ],
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[self.files, *args.wildcard.ready],
                delete_before_replace=True,
                replace_on_changes=["healthcheck"],
                replacement_trigger=args.wildcard.restart_trigger,
            ),
        )

        self.entrypoints = dict(ENTRYPOINTS)
        self.dashboard_url = (
            pulumi.Output.from_input(f"https://{args.hostnames.dashboard}/dashboard/") if spec.dashboard else None
        )
        self.register_outputs({"entrypoints": self.entrypoints})
