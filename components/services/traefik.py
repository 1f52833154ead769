"""Traefik v3 on the host with the `traefik` role (Production), as two instances with one job
each (docs/services.md, "Two Traefik instances"):

* the **edge** (`EdgeTraefik`, container `traefik`): the platform's one public entry (80, 443,
  1023). Only the file provider: every route is rendered here from the stack config (GitLab,
  the registry, GitLab SSH, production apps, the dashboard), ACME certificates, and one router
  that forwards exactly the hosts `<one label>.dev.<domain>` to the review instance, with the
  wildcard certificate. It has no Docker provider: no container label anywhere can change it.
* the **review** instance (`ReviewTraefik`, components/services/review_traefik.py, container
  `traefik-review`): watches the review-app daemon (Staging) over mutual TLS with a certificate
  of the staging trust domain, has no published port, no API, no dashboard, no ACME, and
  receives only what the edge forwards, over the internal network `delivery-review`.

Edge files under /srv/traefik (installed by components/host/scripts/install-files.sh, all
rendered as data):

    traefik.yml                 static config: entrypoints, ACME resolvers, file provider, logs
    dynamic/routes.yml          routes (file provider, watched: reloaded without a restart)
    dynamic/dashboard.yml       the dashboard router and its basic auth (secret; only when set)
    certs/acme-ca.pem           the ACME CA to trust (`acmeCaCertificate`), when set
    letsencrypt/acme*.json      ACME state (mode 600, owned by Traefik, never overwritten)
    logs/access.log             access log

A change of what Traefik reads only at start (the static config, the ACME CA, the DNS
credentials) restarts the running container in place (`<name>-restart`,
components/services/in_place.py), never replaces it; the dynamic files are reloaded by the
file provider.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import pulumi
import pulumi_docker as docker
import yaml

from ..config import HostConfig
from ..config.operations import DEFAULT_IN_FLIGHT_REQUESTS, DEFAULT_RATE_LIMITS, RateLimit
from ..config.services import LETS_ENCRYPT, LETS_ENCRYPT_STAGING, AcmeSettings, Hostnames, ProductionApp, TraefikSettings
from ..host.host_files import Ensure, install_files
from ..host.remote_script import FileSpec, sha256
from .gitlab_server import GitLabUpstream
from .in_place import RESTART, apply_on_change

IMAGE = "traefik"
CONTAINER_NAME = "traefik"
REVIEW_CONTAINER_NAME = "traefik-review"

# -- entrypoints (a contract: templates/review_app_contract.py) ---------------------------
WEB = "web"
WEBSECURE = "websecure"
GITLAB_SSH = "gitlab-ssh"
PING = "ping"
ENTRYPOINTS = {WEB: ":80", WEBSECURE: ":443", GITLAB_SSH: ":1023"}
PUBLISHED_PORTS = (80, 443, 1023)
#: Health checks only, inside the container (not published).
PING_ADDRESS = "127.0.0.1:8082"
#: The review instance's one entrypoint: plain HTTP from the edge, on the internal network.
REVIEW = "review"
REVIEW_PORT = 80

# -- networks on the traefik host ----------------------------------------------------------
EDGE_NETWORK = "delivery-edge"
"""The edge's own bridge: its published ports and its way out (GitLab, the ACME CA)."""
REVIEW_NETWORK = "delivery-review"
"""Internal (no way out): the edge and the review instance only."""
REVIEW_SUBNET = "172.31.253.0/28"
"""Fixed, so that the review instance trusts X-Forwarded-* from this network only."""
REVIEW_EGRESS_NETWORK = "delivery-review-egress"
"""The review instance's way to the review-app daemon and the review apps."""

# -- names in the dynamic config -----------------------------------------------------------
SECURITY_HEADERS = "security-headers"
IN_FLIGHT = "in-flight"
"""inFlightReq on the public HTTP entrypoints (per client address)."""
GITLAB_SIGN_IN_ROUTER = "gitlab-sign-in"
GITLAB_API_ROUTER = "gitlab-api"
#: The rate-limited routes: config name -> the rateLimit middleware (docs/operations.md).
RATE_LIMIT_MIDDLEWARES = {"gitlabSignIn": "ratelimit-gitlab-sign-in", "gitlabApi": "ratelimit-gitlab-api", "registry": "ratelimit-registry"}
#: GitLab's sign-in form and OAuth password grant (rate-limited as `gitlabSignIn`).
GITLAB_SIGN_IN_PATHS = ("/users/sign_in", "/oauth/token")
DASHBOARD_AUTH = "dashboard-auth"
REVIEW_ROUTER = "review-apps"
HTTP_RESOLVER = "letsencrypt"
"""HTTP-01 resolver of the production host names (GitLab, registry, apps, dashboard)."""

# -- host paths and where the container sees them ------------------------------------------
SRV = "/srv/traefik"
STATIC_FILE = f"{SRV}/traefik.yml"
DYNAMIC_DIR = f"{SRV}/dynamic"
ROUTES_FILE = f"{DYNAMIC_DIR}/routes.yml"
DASHBOARD_FILE = f"{DYNAMIC_DIR}/dashboard.yml"
CERTS_DIR = f"{SRV}/certs"
WILDCARD_CERTS_DIR = f"{CERTS_DIR}/wildcard"
ACME_CA_FILE = f"{CERTS_DIR}/acme-ca.pem"
LETSENCRYPT_DIR = f"{SRV}/letsencrypt"
LOGS_DIR = f"{SRV}/logs"
SECRETS_DIR = f"{SRV}/secrets"
#: What the running edge last applied (components/services/in_place.py).
RESTART_STAMP = f"{SRV}/.applied-at-start"
#: Rewritten in place by whoever delivers certificate files, to make the file provider reload.
RELOAD_STAMP = f"{DYNAMIC_DIR}/wildcard-reload.stamp"
#: Where the edge kept Staging's client certificate before the review instance existed: removed.
LEGACY_STAGING_CERTS = tuple(f"{CERTS_DIR}/staging/{n}" for n in ("ca.pem", "cert.pem", "key.pem"))

IN_STATIC = "/etc/traefik/traefik.yml"
IN_DYNAMIC = "/etc/traefik/dynamic"
IN_CERTS = "/certs"
IN_ACME_CA = f"{IN_CERTS}/acme-ca.pem"
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


def review_host_regexp(hostnames: Hostnames) -> str:
    """A Go regular expression for exactly one DNS label under the review domain."""
    escaped = hostnames.wildcard_domain.replace(".", r"\.")
    return rf"^[a-z0-9]([a-z0-9-]{{0,61}}[a-z0-9])?\.{escaped}$"


def review_rule(hostnames: Hostnames) -> str:
    return f"HostRegexp(`{review_host_regexp(hostnames)}`)"


def acme_storage(server: str) -> str:
    """One ACME state file per CA, so that changing the CA starts clean (and the file Let's
    Encrypt's certificates live in stays acme.json, as in the seed)."""
    if server == LETS_ENCRYPT:
        return f"{IN_LETSENCRYPT}/acme.json"
    if server == LETS_ENCRYPT_STAGING:
        return f"{IN_LETSENCRYPT}/acme-staging.json"
    return f"{IN_LETSENCRYPT}/acme-{hashlib.sha256(server.encode()).hexdigest()[:12]}.json"


def acme_json_on_host(server: str) -> str:
    return LETSENCRYPT_DIR + acme_storage(server).removeprefix(IN_LETSENCRYPT)


def acme_resolver(email: str, acme: AcmeSettings, server: str, challenge: dict[str, Any]) -> dict[str, Any]:
    """One certificatesResolvers entry (pure)."""
    config: dict[str, Any] = {"email": email, "storage": acme_storage(server), "caServer": server, **challenge}
    if acme.ca_certificate is not None:
        config["caCertificates"] = [IN_ACME_CA]
    return {"acme": config}


@dataclass(frozen=True)
class WildcardParts:
    """What the wildcard certificate adds to the edge (built by WildcardCertificate)."""

    resolvers: dict[str, Any] = field(default_factory=dict)
    """Extra `certificatesResolvers` of the static config (the DNS-01 resolver)."""
    dynamic: dict[str, Any] = field(default_factory=dict)
    """Merged into routes.yml (tls.certificates of a delivered certificate)."""
    review_tls: dict[str, Any] = field(default_factory=dict)
    """The `tls` of the router that forwards review hosts (certResolver + domains, or {})."""
    envs: tuple[str, ...] = ()
    """Container environment (never a secret value: lego's *_FILE paths)."""
    volumes: tuple[tuple[str, str], ...] = ()
    """Read-only (host path, container path) mounts."""
    restart_trigger: Optional[pulumi.Output[Any]] = None
    """A secret value whose change restarts the edge in place (lego reads credentials at start)."""
    ready: tuple[pulumi.Resource, ...] = ()
    """Steps that must finish before the edge starts."""


@dataclass(frozen=True)
class EdgeSpec:
    """Everything the edge's config renderers need, as plain data (no Outputs)."""

    hostnames: Hostnames
    acme_email: str
    acme: AcmeSettings = AcmeSettings()
    gitlab: Optional[GitLabUpstream] = None
    """Where GitLab is reached; None leaves the GitLab routes out."""
    production_apps: tuple[ProductionApp, ...] = ()
    dashboard: bool = False
    review_upstream: Optional[str] = None
    """http://traefik-review:80 when review apps are forwarded; None leaves the router out."""
    wildcard: WildcardParts = field(default_factory=WildcardParts)
    rate_limits: dict[str, RateLimit] = field(default_factory=lambda: dict(DEFAULT_RATE_LIMITS))
    """rateLimit per route (`traefikRateLimits`)."""
    in_flight_requests: int = DEFAULT_IN_FLIGHT_REQUESTS
    """inFlightReq amount per client address (`traefikInFlightRequests`)."""


#: Group requests by the client's own address (the edge is the first proxy): X-Forwarded-For
#: from the client is not believed. Not `ipStrategy: {}`: Traefik rejects the whole file
#: ("ipStrategy cannot be a standalone element"), which the JSON schema accepts; and
#: inFlightReq without a criterion groups by the Host header.
BY_CLIENT_ADDRESS = {"ipStrategy": {"depth": 0}}


def rate_limit_middleware(limit: RateLimit) -> dict[str, Any]:
    return {
        "rateLimit": {
            "average": limit.average,
            "period": f"{limit.period}s",
            "burst": limit.burst,
            "sourceCriterion": copy.deepcopy(BY_CLIENT_ADDRESS),
        }
    }


def base_static(access_log: str, *, internals: bool = False) -> dict[str, Any]:
    """What both instances' static configs start with (pure). `internals` logs the requests of
    Traefik's internal services too (the edge: fail2ban needs the dashboard's 401s,
    components/operations/fail2ban.py)."""
    log: dict[str, Any] = {"filePath": access_log, "format": "common", "bufferingSize": 100}
    if internals:
        log["addInternals"] = True
    return {
        "global": {"checkNewVersion": False, "sendAnonymousUsage": False},
        "log": {"level": "INFO"},
        "accessLog": log,
    }


def edge_static_config(spec: EdgeSpec) -> dict[str, Any]:
    """The edge's traefik.yml as data (pure)."""
    config = base_static(f"{IN_LOGS}/access.log", internals=True)
    config.update(
        {
            "entryPoints": {
                # The ACME HTTP-01 challenge router has the highest priority, so the
                # challenge is answered on :80 although everything else is redirected.
                WEB: {
                    "address": ENTRYPOINTS[WEB],
                    "http": {
                        "redirections": {"entryPoint": {"to": WEBSECURE, "scheme": "https", "permanent": True}},
                        "middlewares": [f"{IN_FLIGHT}@file"],
                    },
                },
                WEBSECURE: {
                    "address": ENTRYPOINTS[WEBSECURE],
                    "asDefault": True,
                    # Every router of the entrypoint (review apps included) gets it first.
                    "http": {"middlewares": [f"{IN_FLIGHT}@file"]},
                    # v3 defaults to 60 s, too short for large registry pushes and git clones.
                    "transport": {"respondingTimeouts": {"readTimeout": "1800s"}},
                },
                GITLAB_SSH: {"address": ENTRYPOINTS[GITLAB_SSH]},
                PING: {"address": PING_ADDRESS},
            },
            "ping": {"entryPoint": PING},
            "certificatesResolvers": {
                HTTP_RESOLVER: acme_resolver(spec.acme_email, spec.acme, spec.acme.server, {"httpChallenge": {"entryPoint": WEB}}),
                **copy.deepcopy(spec.wildcard.resolvers),
            },
            "providers": {"file": {"directory": IN_DYNAMIC, "watch": True}},
        }
    )
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


def edge_dynamic_config(spec: EdgeSpec) -> dict[str, Any]:
    """The edge's dynamic/routes.yml as data (pure)."""
    routers: dict[str, Any] = {}
    services: dict[str, Any] = {}
    tcp: dict[str, Any] = {}
    h = spec.hostnames
    g = spec.gitlab
    limits = spec.rate_limits
    middlewares: dict[str, Any] = {
        SECURITY_HEADERS: security_headers(),
        IN_FLIGHT: {"inFlightReq": {"amount": spec.in_flight_requests, "sourceCriterion": copy.deepcopy(BY_CLIENT_ADDRESS)}},
    }
    if g is not None:
        for key in RATE_LIMIT_MIDDLEWARES:
            middlewares[RATE_LIMIT_MIDDLEWARES[key]] = rate_limit_middleware(limits[key])
        routers["gitlab"] = _https_router(h.gitlab, "gitlab")
        # Longer rules than Host() alone: Traefik's default priority (the rule's length) picks them first.
        sign_in = " || ".join(f"Path(`{p}`)" for p in GITLAB_SIGN_IN_PATHS)
        routers[GITLAB_SIGN_IN_ROUTER] = {
            **_https_router(h.gitlab, "gitlab"),
            "rule": f"{host_rule(h.gitlab)} && ({sign_in})",
            "middlewares": [RATE_LIMIT_MIDDLEWARES["gitlabSignIn"], SECURITY_HEADERS],
        }
        routers[GITLAB_API_ROUTER] = {
            **_https_router(h.gitlab, "gitlab"),
            "rule": f"{host_rule(h.gitlab)} && PathPrefix(`/api/`)",
            "middlewares": [RATE_LIMIT_MIDDLEWARES["gitlabApi"], SECURITY_HEADERS],
        }
        services["gitlab"] = _service(f"http://{g.host}:{g.http_port}")
        routers["registry"] = {
            **_https_router(h.registry, "registry"),
            "middlewares": [RATE_LIMIT_MIDDLEWARES["registry"], SECURITY_HEADERS],
        }
        services["registry"] = _service(f"http://{g.host}:{g.registry_port}")
        tcp = {
            "routers": {GITLAB_SSH: {"entryPoints": [GITLAB_SSH], "rule": "HostSNI(`*`)", "service": GITLAB_SSH}},
            "services": {GITLAB_SSH: {"loadBalancer": {"servers": [{"address": f"{g.host}:{g.ssh_port}"}]}}},
        }
    for app in spec.production_apps:
        routers[f"app-{app.name}"] = _https_router(app.host, f"app-{app.name}")
        services[f"app-{app.name}"] = _service(app.url)
    if spec.review_upstream is not None:
        # Exactly one label under the review domain; nothing else reaches the review instance.
        routers[REVIEW_ROUTER] = {
            "entryPoints": [WEBSECURE],
            "rule": review_rule(h),
            "service": REVIEW_ROUTER,
            "middlewares": [SECURITY_HEADERS],
            "tls": copy.deepcopy(spec.wildcard.review_tls),
        }
        services[REVIEW_ROUTER] = {"loadBalancer": {"servers": [{"url": spec.review_upstream}], "passHostHeader": True}}
    config: dict[str, Any] = {
        "http": {"routers": routers, "services": services, "middlewares": middlewares},
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


def dashboard_config(spec: EdgeSpec, users: Sequence[str]) -> dict[str, Any]:
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


def traefik_healthcheck() -> docker.ContainerHealthcheckArgs:
    return docker.ContainerHealthcheckArgs(
        tests=["CMD", "traefik", "healthcheck", "--ping"],
        interval="30s",
        timeout="5s",
        retries=3,
        start_period="20s",
    )


@dataclass(frozen=True)
class TraefikNetworks:
    """The Docker networks of the traefik host (see the module docstring)."""

    edge: pulumi.Input[str]
    review: pulumi.Input[str]
    review_egress: pulumi.Input[str]
    services: Optional[pulumi.Input[str]] = None
    """Shared with GitLab when both run on this host."""


@dataclass(frozen=True)
class EdgeTraefikArgs:
    host: HostConfig
    """The host with the traefik role (Production)."""
    ssh_private_key: pulumi.Input[str]
    hostnames: Hostnames
    timezone: str
    settings: TraefikSettings
    """Version, ACME, dashboard users (secret), production apps."""
    networks: TraefikNetworks
    gitlab: Optional[GitLabUpstream] = None
    """Where GitLab is reached (GitLabUpstream.published/on_network); None: no GitLab routes."""
    review_apps: bool = True
    """Forward <label>.dev.<domain> to the review instance."""
    wildcard: WildcardParts = field(default_factory=WildcardParts)
    after: Sequence[pulumi.Resource] = field(default_factory=tuple)
    """Steps that must finish first (the host's /srv layout)."""
    rate_limits: dict[str, RateLimit] = field(default_factory=lambda: dict(DEFAULT_RATE_LIMITS))
    """rateLimit per route (`traefikRateLimits`)."""
    in_flight_requests: int = DEFAULT_IN_FLIGHT_REQUESTS
    """inFlightReq amount per client address (`traefikInFlightRequests`)."""


class EdgeTraefik(pulumi.ComponentResource):
    """The edge's files and container. Pass the host's Docker provider in `opts`."""

    spec: EdgeSpec
    static: dict[str, Any]
    dynamic: dict[str, Any]
    files: Any
    container: docker.Container
    restart: Any
    """The step that restarts the container in place when what it reads at start changes."""
    entrypoints: dict[str, str]
    dashboard_url: Optional[pulumi.Output[str]]

    def __init__(self, name: str, args: EdgeTraefikArgs, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        # The component was `delivery:traefik:Traefik` before the review instance existed.
        alias = pulumi.ResourceOptions(aliases=[pulumi.Alias(type_="delivery:traefik:Traefik")])
        super().__init__("delivery:traefik:EdgeTraefik", name, None, pulumi.ResourceOptions.merge(opts, alias))
        s = args.settings
        if s.acme_email is None:
            raise ValueError("Traefik needs the ACME account e-mail (delivery:acmeEmail)")
        self.spec = spec = EdgeSpec(
            hostnames=args.hostnames,
            acme_email=s.acme_email,
            acme=s.acme,
            gitlab=args.gitlab,
            production_apps=s.production_apps,
            dashboard=s.dashboard_users is not None,
            review_upstream=f"http://{REVIEW_CONTAINER_NAME}:{REVIEW_PORT}" if args.review_apps else None,
            wildcard=args.wildcard,
            rate_limits=dict(args.rate_limits),
            in_flight_requests=args.in_flight_requests,
        )
        self.static = edge_static_config(spec)
        self.dynamic = edge_dynamic_config(spec)
        static_yaml = to_yaml(self.static)
        routes_yaml = to_yaml(self.dynamic)
        acme_ca = s.acme.ca_certificate

        users = pulumi.Output.secret(s.dashboard_users) if s.dashboard_users is not None else None

        def bundle(users_text: Optional[str]) -> list[FileSpec]:
            files = [FileSpec(STATIC_FILE, 0o644, static_yaml), FileSpec(ROUTES_FILE, 0o644, routes_yaml)]
            if acme_ca is not None:
                files.append(FileSpec(ACME_CA_FILE, 0o444, acme_ca))
            if users_text is not None:
                files.append(FileSpec(DASHBOARD_FILE, 0o600, to_yaml(dashboard_config(spec, dashboard_users(users_text)))))
            return files

        files = pulumi.Output.from_input(users).apply(bundle) if users is not None else pulumi.Output.from_input(bundle(None))
        removed = [*LEGACY_STAGING_CERTS, *([] if spec.dashboard else [DASHBOARD_FILE]), *([] if acme_ca else [ACME_CA_FILE])]
        self.files = install_files(
            f"{name}-files",
            host=args.host,
            private_key=args.ssh_private_key,
            files=files,
            secret=users is not None,
            ensure=[
                Ensure(acme_json_on_host(server), 0o600)
                for server in sorted({s.acme.server, s.acme.wildcard_server})
            ],
            remove=removed,
            parent=self,
            depends_on=list(args.after),
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
        n = args.networks
        networks = [
            docker.ContainerNetworksAdvancedArgs(name=n.edge),
            docker.ContainerNetworksAdvancedArgs(name=n.review),
            *([docker.ContainerNetworksAdvancedArgs(name=n.services)] if n.services is not None else []),
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
            networks_advanced=networks,
            envs=[f"TZ={args.timezone}", *args.wildcard.envs],
            healthcheck=traefik_healthcheck(),
            labels=[
                docker.ContainerLabelArgs(label="delivery.managed-by", value="pulumi"),
            ],
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[self.files, *args.wildcard.ready],
                delete_before_replace=True,
                replace_on_changes=["healthcheck"],
            ),
        )
        # What Traefik reads only when it starts: the static config (ACME e-mail and CA,
        # entrypoints), the CA it trusts, the DNS credentials lego reads (secret: their hash).
        # A change restarts the running container in place; it is never replaced for it.
        restart_on = pulumi.Output.all(sha256(static_yaml, acme_ca or ""), args.wildcard.restart_trigger)
        self.restart = apply_on_change(
            f"{name}-restart",
            host=args.host,
            private_key=args.ssh_private_key,
            container=self.container,
            container_name=CONTAINER_NAME,
            stamp=RESTART_STAMP,
            action=RESTART,
            fingerprint=restart_on.apply(lambda v: sha256(json.dumps(v, sort_keys=True))),
            parent=self,
            after=[self.files, *args.wildcard.ready],
        )

        self.entrypoints = dict(ENTRYPOINTS)
        self.dashboard_url = (
            pulumi.Output.from_input(f"https://{args.hostnames.dashboard}/dashboard/") if spec.dashboard else None
        )
        self.register_outputs({"entrypoints": self.entrypoints})
